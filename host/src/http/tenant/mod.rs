//! A tenant as it is served ([`LiveTenant`]): made from its limits, its
//! component (loaded, or loaded on demand: [`on_demand`]) and what every
//! tenant of the server shares ([`ServerParts`]), handing on to its
//! replacement what it still holds ([`CarryOver`]); and one request served:
//! admitted, handed to its WebSocket handler, the library's upgrade hook or
//! its guest, every failure answered by the host.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::{HeaderValue, Request, Version, header};
use http_body_util::BodyExt;

use super::access::Recorder;
use super::admission::{Admission, Permits};
use super::body::IncomingBody;
use super::conn::ConnInfo;
use super::guest::{self, Admitted, GuestTasks, Reporter};
use super::service::conn_info;
use super::upgrade::hook::{UpgradeHook, Upgrades};
use super::upgrade::{Dispatched, UpgradeTo, upgrade_goes_to};
use super::websocket::{self, WebSockets};
use super::{ErrorHandler, HostError, ResponseBody};
use crate::account::Account;
use crate::config::TenantLimits;
use crate::ids::RequestId;
use crate::lifecycle::Stop;
use crate::metrics::Metrics;
use crate::net::PerClient;
use crate::wasm::{
    CallInfo, ComponentFile, CpuShare, GuestPre, InstanceCap, Instances, InternalCall, Sandbox,
    Sockets,
};

mod on_demand;

pub(crate) use on_demand::Loader;

/// What every tenant of one server is made live with.
#[derive(Clone)]
pub(crate) struct ServerParts {
    pub(crate) stop: Stop,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) errors: Arc<dyn ErrorHandler>,
    /// The library's upgrade hook, for the tenants allowed to upgrade.
    pub(crate) upgrade: Option<Arc<dyn UpgradeHook>>,
    /// Where guests (and WebSocket handlers) run, for a stop to wait on.
    pub(crate) tasks: GuestTasks,
    /// Whether requests, upgraded connections and sockets get access lines.
    pub(crate) access_log: bool,
    /// How long a WebSocket message may wait for a client that does not
    /// take it (the server's `write_timeout`).
    pub(crate) write_timeout: Duration,
    /// The process's account of host memory: every tenant's is under it.
    pub(crate) account: Arc<Account>,
}

/// What a live tenant hands on to the tenant that replaces it (the one of
/// the same name in a new table): its permits, so that what it still runs
/// counts against the new limits (when their number is unchanged), and its
/// CPU share.
#[derive(Clone, Default)]
pub(crate) struct CarryOver {
    requests: Option<Permits>,
    websockets: Option<Permits>,
    websocket_clients: Option<Arc<PerClient>>,
    websocket_shed: Option<Arc<tokio::sync::watch::Sender<u64>>>,
    upgrades: Option<Permits>,
    /// Its guests' share of the workers, when the server shares them out.
    pub(crate) cpu: Option<CpuShare>,
    /// Its instances alive, which count against the new cap (when it is
    /// the same).
    pub(crate) instance_cap: Option<InstanceCap>,
    /// Its account of host memory, still charged for what its sockets and
    /// instances hold (kept when its limit is the same).
    pub(crate) account: Option<Arc<Account>>,
    /// Its on-demand component, for a new version of the same file.
    slot: Option<Arc<on_demand::Slot>>,
}

/// A tenant's component, as [`LiveTenant::new`] takes it.
pub(crate) enum GuestSource {
    /// Loaded: served with at once.
    Loaded(GuestPre),
    /// Loaded by `loader` when the first request comes.
    OnDemand {
        file: ComponentFile,
        loader: Arc<Loader>,
    },
}

/// What a tenant's requests are served with, made from its loaded
/// component.
pub(crate) struct Served {
    instances: Instances,
    /// Its WebSocket handler, when its component exports one and it
    /// accepts WebSockets.
    websockets: Option<WebSockets>,
}

/// Where a tenant's component is.
enum Guest {
    Loaded(Served),
    OnDemand(Arc<on_demand::Slot>),
}

/// What a tenant's WebSocket handler is served with besides its instances:
/// made when the tenant is, kept while its component is loaded and
/// unloaded.
#[derive(Clone)]
struct SocketSide {
    stop: Stop,
    metrics: Arc<Metrics>,
    access_log: bool,
    open: Permits,
    clients: Arc<PerClient>,
    shed: Arc<tokio::sync::watch::Sender<u64>>,
    idle_timeout: Duration,
    write_timeout: Duration,
}

impl SocketSide {
    fn serve(&self, sockets: Sockets) -> WebSockets {
        WebSockets {
            sockets,
            stop: self.stop.clone(),
            metrics: self.metrics.clone(),
            access_log: self.access_log,
            open: self.open.clone(),
            clients: self.clients.clone(),
            shed: self.shed.clone(),
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
        }
    }
}

/// A tenant as it is served: its instances, its admission, where its
/// upgrades go, and how its requests are recorded and answered when they
/// fail.
pub(crate) struct LiveTenant {
    guest: Guest,
    sandbox: Sandbox,
    admission: Admission,
    reporter: Arc<Reporter>,
    tasks: GuestTasks,
    errors: Arc<dyn ErrorHandler>,
    /// Where its guests' accepted upgrades go, when it may upgrade.
    upgrades: Option<Upgrades>,
    /// Its WebSocket side, when it accepts WebSockets.
    sockets: Option<SocketSide>,
}

impl LiveTenant {
    /// The tenant `name` (of the component `component`), with `limits`,
    /// serving its requests with instances of `source` in `sandbox` (and its
    /// WebSockets with its component's handler, when it exports one);
    /// `before` is what the tenant it replaces hands on.
    pub(crate) fn new(
        name: Arc<str>,
        component: &str,
        limits: &TenantLimits,
        source: GuestSource,
        sandbox: Sandbox,
        server: &ServerParts,
        before: CarryOver,
    ) -> Self {
        let sockets = limits.websockets.then(|| SocketSide {
            stop: server.stop.clone(),
            metrics: server.metrics.clone(),
            access_log: server.access_log,
            open: Permits::carried(before.websockets.as_ref(), limits.max_websockets),
            clients: match &before.websocket_clients {
                Some(clients) if clients.max() == limits.max_websockets_per_client => {
                    clients.clone()
                }
                _ => PerClient::new(limits.max_websockets_per_client),
            },
            shed: before
                .websocket_shed
                .clone()
                .unwrap_or_else(|| Arc::new(tokio::sync::watch::Sender::new(0))),
            idle_timeout: limits.websocket_idle_timeout,
            write_timeout: server.write_timeout,
        });
        let serve = {
            let (sandbox, sockets) = (sandbox.clone(), sockets.clone());
            let (socket_limits, socket_tasks) =
                (limits.socket_limits(), server.tasks.websockets().clone());
            // `required`: a component that exports no WebSocket handler
            // fails to load (a config file's tenant with `websockets =
            // true`; elsewhere a handler is served when there is one).
            move |pre: &GuestPre, required: bool| -> Result<Served, crate::Error> {
                let handler =
                    Sockets::new(pre, sandbox.clone(), socket_limits, socket_tasks.clone());
                let websockets = match (&sockets, handler) {
                    (Some(side), Some(handler)) => Some(side.serve(handler)),
                    (Some(_), None) if required => {
                        return Err(crate::Error::WebSocketHandler {
                            name: pre.name().into(),
                            reason: "its tenant has `websockets = true`, and it exports no \
                                     catshost:websocket/handler@0.1.0"
                                .into(),
                        });
                    }
                    _ => None,
                };
                Ok(Served {
                    instances: Instances::new(pre, sandbox.clone()),
                    websockets,
                })
            }
        };
        let guest = match source {
            GuestSource::Loaded(pre) => {
                Guest::Loaded(serve(&pre, false).expect("a handler is required only on demand"))
            }
            GuestSource::OnDemand { file, loader } => {
                let handed_on = before.slot.as_ref().and_then(|slot| slot.hand_on(&file));
                let required = file.requires_websocket_handler;
                Guest::OnDemand(on_demand::Slot::new(
                    name.clone(),
                    file,
                    Box::new(move |pre| serve(pre, required)),
                    &loader,
                    handed_on,
                ))
            }
        };
        // Only a tenant allowed to upgrade reaches the hook.
        let upgrades = server
            .upgrade
            .clone()
            .filter(|_| limits.allow_upgrade)
            .map(|hook| Upgrades {
                hook,
                stop: server.stop.clone(),
                metrics: server.metrics.clone(),
                access_log: server.access_log,
                open: Permits::carried(before.upgrades.as_ref(), limits.max_upgrades),
            });
        let log_budget = sandbox.log_budget.clone();
        Self {
            guest,
            sandbox,
            admission: Admission::new(limits, before.requests.as_ref()),
            reporter: Arc::new(Reporter {
                recorder: Arc::new(Recorder::new(
                    name,
                    server.metrics.clone(),
                    server.access_log,
                )),
                component: component.into(),
                log_budget,
            }),
            tasks: server.tasks.clone(),
            errors: server.errors.clone(),
            upgrades,
            sockets,
        }
    }

    /// What this tenant hands on to the one that replaces it.
    pub(crate) fn carry_over(&self) -> CarryOver {
        CarryOver {
            requests: Some(self.admission.requests().clone()),
            websockets: self.sockets.as_ref().map(|w| w.open.clone()),
            websocket_clients: self.sockets.as_ref().map(|w| w.clients.clone()),
            websocket_shed: self.sockets.as_ref().map(|w| w.shed.clone()),
            upgrades: self.upgrades.as_ref().map(|u| u.open.clone()),
            cpu: self.sandbox.cpu.clone(),
            instance_cap: Some(self.sandbox.instance_cap.clone()),
            account: Some(self.sandbox.account.clone()),
            slot: match &self.guest {
                Guest::OnDemand(slot) => Some(slot.clone()),
                Guest::Loaded(_) => None,
            },
        }
    }

    /// The bytes its account of host memory holds.
    pub(crate) fn host_memory(&self) -> usize {
        self.sandbox.account.held()
    }

    /// Closes every open WebSocket of the tenant with 1013 (the overload
    /// guard's shedding); whether it had a WebSocket handler.
    pub(crate) fn shed_websockets(&self) -> bool {
        match self.sockets.as_ref().filter(|_| self.serves_websockets()) {
            Some(ws) => {
                ws.shed.send_modify(|n| *n = n.wrapping_add(1));
                true
            }
            None => false,
        }
    }

    /// Whether it takes WebSockets (with its handler).
    pub(crate) fn serves_websockets(&self) -> bool {
        match &self.guest {
            Guest::Loaded(served) => served.websockets.is_some(),
            // Its component is checked for a handler when it loads.
            Guest::OnDemand(_) => self.sockets.is_some(),
        }
    }

    /// The tenant's name.
    pub(crate) fn name(&self) -> &str {
        &self.reporter.recorder.tenant
    }

    /// Serves one request; every failure becomes a host-made response.
    pub(crate) async fn serve(&self, req: Request<IncomingBody>) -> Dispatched {
        // Another tenant's guest calling: its request's id, one call deeper.
        let internal = req.extensions().get::<InternalCall>().copied();
        let id = internal.map_or_else(RequestId::next, |call| call.request_id);
        let depth = internal.map_or(0, |call| call.depth);
        let conn = conn_info(&req);
        let recorder = &self.reporter.recorder;
        // Dropped with the response body, or with this future if the client
        // goes away first: either way the request is recorded once.
        let exchange = recorder.start(id, &req, conn.peer);
        let bytes_in = exchange.bytes_in();
        let called = self.call_guest(
            req,
            CallInfo {
                id,
                https: conn.tls,
                depth,
            },
            conn,
            bytes_in,
        );
        let Dispatched { response, upgrade } = match called.await {
            Ok(dispatched) => dispatched,
            Err(error) => {
                error.log(
                    id,
                    &recorder.tenant,
                    &self.reporter.component,
                    false,
                    Some(&self.reporter.log_budget),
                );
                if let Some(counted) = error.kind().counted() {
                    recorder.metrics.count(recorder.label(), counted);
                }
                Dispatched::response(self.errors.respond(&error, id).map(ResponseBody::host))
            }
        };
        let status = response.status();
        Dispatched {
            response: response.map(|body| body.recorded(exchange, status)),
            upgrade,
        }
    }

    async fn call_guest(
        &self,
        mut req: Request<IncomingBody>,
        info: CallInfo,
        conn: ConnInfo,
        bytes_in: Option<Arc<AtomicU64>>,
    ) -> Result<Dispatched, HostError> {
        let permit = self.admission.admit()?;
        let tenant = &self.reporter.recorder.tenant;
        let loaded;
        let served = match &self.guest {
            Guest::Loaded(served) => served,
            Guest::OnDemand(slot) => {
                loaded = Box::pin(slot.get()).await?;
                &*loaded
            }
        };
        let upgrade =
            match upgrade_goes_to(&req, served.websockets.as_ref(), self.upgrades.as_ref()) {
                // The WebSocket handler holds the request permit only while its
                // `open` runs.
                Some(UpgradeTo::WebSocketHandler(ws)) => {
                    return Box::pin(websocket::open(ws, req, tenant.clone(), conn.peer, permit))
                        .await;
                }
                Some(UpgradeTo::Hook(upgrades)) => {
                    upgrades.accepting(&mut req, tenant.clone(), conn.peer)?
                }
                None => None,
            };
        let (mut parts, body) = req.into_parts();
        let (body, body_limit) = self.admission.limit_body(body)?;
        // Like any gateway, record the protocol the request came in by
        // (RFC 9110, section 7.6.3): the guest can see it.
        parts.headers.append(header::VIA, via(parts.version));
        let admitted = Admitted {
            // A connection that multiplexes requests sends whatever of its
            // streams' responses is ready at once: a guest of its own task.
            own_task: parts.version >= Version::HTTP_2,
            request: Request::from_parts(parts, body.counting_into(bytes_in).boxed_unsync()),
            info,
            permit,
            body_limit,
            upgrade,
        };
        // Boxed: the answer's future is most of a request's state, and each
        // future above it (this one, the dispatch's, hyper's service future)
        // is moved whole at least once per request; without the box they
        // held it too, and a reused request moved ~24 KB (a third of the
        // CPU catshost spent beyond `wasmtime serve` per request).
        let answered = guest::call(&served.instances, &self.tasks, &self.reporter, admitted)?;
        Box::pin(answered).await
    }
}

fn via(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_2 => "HTTP/2 catshost",
        Version::HTTP_3 => "HTTP/3 catshost",
        Version::HTTP_10 => "HTTP/1.0 catshost",
        _ => "HTTP/1.1 catshost",
    })
}
