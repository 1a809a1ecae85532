//! The hyper service: one request in, routed to its tenant, admitted (its
//! tenant's permits, its body size), handed to the tenant's guest (or its
//! WebSocket handler), one response out, and beside it what runs on the
//! connection when the response accepts an upgrade; every failure answered
//! by the host.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, Version, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

use super::access::Recorder;
use super::body::{BodyLimit, IncomingBody, LimitedBody};
use super::conn::ConnInfo;
use super::guest::{self, Admitted, GuestTasks, Reporter};
use super::upgrade::hook::Upgrades;
use super::upgrade::{Dispatched, UpgradeTo, upgrade_goes_to};
use super::websocket::{self, WebSockets};
use super::{ErrorHandler, HostError, ResponseBody};
use crate::ids::RequestId;
use crate::routing::Routes;
use crate::wasm::{CallInfo, Instances};

/// What every connection of a server shares: the tenants and their routes,
/// swapped whole when they are replaced.
pub(crate) struct Dispatch {
    table: ArcSwap<TenantTable>,
    /// Records requests that match no route.
    unrouted: Arc<Recorder>,
    errors: Arc<dyn ErrorHandler>,
}

/// The tenants of a server at one moment, and how requests find them.
pub(crate) struct TenantTable {
    pub(crate) routes: Routes,
    pub(crate) tenants: Vec<Arc<LiveTenant>>,
}

impl Dispatch {
    pub(crate) fn new(
        table: TenantTable,
        unrouted: Recorder,
        errors: Arc<dyn ErrorHandler>,
    ) -> Self {
        Self {
            table: ArcSwap::from_pointee(table),
            unrouted: Arc::new(unrouted),
            errors,
        }
    }

    /// Replaces the tenants: requests already routed finish with the old
    /// ones, every request routed from now on gets the new ones.
    pub(crate) fn replace(&self, table: TenantTable) {
        self.table.store(Arc::new(table));
    }

    /// The tenants now.
    pub(crate) fn current(&self) -> Arc<TenantTable> {
        self.table.load_full()
    }

    /// Serves one request with the tenant its host and path route to, or
    /// 404 when none does: the response, and what runs on the connection
    /// when it accepts an upgrade.
    pub(crate) async fn serve(&self, req: Request<IncomingBody>) -> Dispatched {
        let host = match super::host::request_host(&req) {
            Ok(host) => host,
            Err(error) => return Dispatched::response(self.refuse(&req, error)),
        };
        if conn_info(&req).misdirected(host) {
            return Dispatched::response(self.refuse(&req, HostError::Misdirected));
        }
        let tenant = {
            let table = self.table.load();
            table
                .routes
                .route(Some(host), req.uri().path())
                .map(|i| table.tenants[i].clone())
        };
        match tenant {
            // The request holds its tenant: a replaced one serves the
            // requests it already has.
            Some(tenant) => tenant.serve(req).await,
            None => Dispatched::response(self.refuse(&req, HostError::NoRoute)),
        }
    }

    /// The host's own answer to a request no tenant gets.
    fn refuse(&self, req: &Request<IncomingBody>, error: HostError) -> Response<ResponseBody> {
        let id = RequestId::next();
        let exchange = self.unrouted.start(id, req, conn_info(req).peer);
        error.log(id, &self.unrouted.tenant, "-", false);
        let response = self.errors.respond(&error, id).map(ResponseBody::host);
        let status = response.status();
        response.map(|body| body.recorded(exchange, status))
    }
}

/// The connection facts the connection put in the request.
fn conn_info<B>(req: &Request<B>) -> ConnInfo {
    req.extensions()
        .get::<ConnInfo>()
        .expect("every request of a connection carries its ConnInfo")
        .clone()
}

/// How one tenant's requests are admitted: how many run at once, how large
/// a body may be.
#[derive(Clone, Debug)]
pub(crate) struct Admission {
    /// One permit per request running, held until its guest ends.
    pub(crate) requests: Arc<Semaphore>,
    /// The number of permits.
    pub(crate) max_concurrent_requests: usize,
    /// Requests admitted per second, when limited.
    pub(crate) rate: Option<Arc<RateLimit>>,
    /// Whether the tenant is out of service.
    pub(crate) out_of_service: bool,
    /// The largest request body, in bytes.
    pub(crate) max_body_size: u64,
}

/// A tenant as it is served: its instances, its admission, and how its
/// requests are recorded and answered when they fail.
pub(crate) struct LiveTenant {
    pub(crate) instances: Instances,
    pub(crate) admission: Admission,
    reporter: Arc<Reporter>,
    tasks: GuestTasks,
    errors: Arc<dyn ErrorHandler>,
    /// Where its guests' accepted upgrades go, when it may upgrade.
    upgrades: Option<Upgrades>,
    /// Its WebSocket handler, when its component exports one and it
    /// accepts WebSockets.
    websockets: Option<WebSockets>,
}

impl LiveTenant {
    pub(crate) fn new(
        instances: Instances,
        component: &str,
        admission: Admission,
        recorder: Recorder,
        tasks: GuestTasks,
        errors: Arc<dyn ErrorHandler>,
        upgrades: Option<Upgrades>,
    ) -> Self {
        Self {
            instances,
            admission,
            reporter: Arc::new(Reporter {
                recorder: Arc::new(recorder),
                component: component.into(),
            }),
            tasks,
            errors,
            upgrades,
            websockets: None,
        }
    }

    /// The same tenant, its WebSocket upgrades going to `websockets`.
    pub(crate) fn with_websockets(mut self, websockets: Option<WebSockets>) -> Self {
        self.websockets = websockets;
        self
    }

    /// The permits of its open WebSockets and their number, when it
    /// accepts them.
    pub(crate) fn websocket_permits(&self) -> Option<(&Arc<Semaphore>, usize)> {
        self.websockets.as_ref().map(|w| (&w.open, w.max_open))
    }

    /// Its WebSocket handler's sockets, when it accepts WebSockets.
    pub(crate) fn sockets(&self) -> Option<&crate::wasm::Sockets> {
        self.websockets.as_ref().map(|w| &w.sockets)
    }

    /// The permits of its open upgraded connections and their number,
    /// when it may upgrade.
    pub(crate) fn upgrade_permits(&self) -> Option<(&Arc<Semaphore>, usize)> {
        self.upgrades.as_ref().map(|u| (&u.open, u.max_open))
    }

    /// The tenant's name.
    pub(crate) fn name(&self) -> &str {
        &self.reporter.recorder.tenant
    }

    /// Serves one request; every failure becomes a host-made response.
    pub(crate) async fn serve(&self, req: Request<IncomingBody>) -> Dispatched {
        let id = RequestId::next();
        let conn = conn_info(&req);
        let recorder = &self.reporter.recorder;
        // Dropped with the response body, or with this future if the client
        // goes away first: either way the request is recorded once.
        let exchange = recorder.start(id, &req, conn.peer);
        let bytes_in = exchange.bytes_in();
        let Dispatched { response, upgrade } = match self.call_guest(req, id, conn, bytes_in).await
        {
            Ok(dispatched) => dispatched,
            Err(error) => {
                error.log(id, &recorder.tenant, &self.reporter.component, false);
                if let Some(counted) = error.kind().counted() {
                    recorder.metrics.count(&recorder.tenant, counted);
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
        id: RequestId,
        conn: ConnInfo,
        bytes_in: Option<Arc<AtomicU64>>,
    ) -> Result<Dispatched, HostError> {
        let admission = &self.admission;
        if admission.out_of_service {
            return Err(HostError::OutOfService);
        }
        if let Some(rate) = &admission.rate
            && !rate.admit()
        {
            return Err(HostError::RateLimited);
        }
        let permit = admission
            .requests
            .clone()
            .try_acquire_owned()
            .map_err(|_| HostError::Overloaded)?;

        let tenant = &self.reporter.recorder.tenant;
        let upgrade = match upgrade_goes_to(&req, self.websockets.as_ref(), self.upgrades.as_ref())
        {
            // The WebSocket handler holds the request permit only while its
            // `open` runs.
            Some(UpgradeTo::WebSocketHandler(ws)) => {
                let opened = websocket::open(ws, req, tenant.clone(), conn.peer).await;
                drop(permit);
                return opened;
            }
            Some(UpgradeTo::Hook(upgrades)) => {
                upgrades.accepting(&mut req, tenant.clone(), conn.peer)?
            }
            None => None,
        };
        let (mut parts, body) = req.into_parts();
        let limit = admission.max_body_size;
        let (body, body_limit) = match body.size_hint().exact() {
            Some(declared) if declared > limit => return Err(HostError::BodyTooLarge { limit }),
            Some(_) => (LimitedBody::declared(body), None),
            None => {
                let body_limit = Arc::new(BodyLimit::new(limit));
                (
                    LimitedBody::counted(body, body_limit.clone()),
                    Some(body_limit),
                )
            }
        };
        // Like any gateway, record the protocol the request came in by
        // (RFC 9110, section 7.6.3): the guest can see it.
        parts.headers.append(header::VIA, via(parts.version));
        let admitted = Admitted {
            // A connection that multiplexes requests sends whatever of its
            // streams' responses is ready at once: a guest of its own task.
            own_task: parts.version >= Version::HTTP_2,
            request: Request::from_parts(parts, body.counting_into(bytes_in).boxed_unsync()),
            info: CallInfo {
                id,
                https: conn.tls,
            },
            permit,
            body_limit,
            upgrade,
        };
        guest::call(&self.instances, &self.tasks, &self.reporter, admitted).await
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

/// A token bucket: `per_second` tokens a second, at most a second's worth
/// held.
#[derive(Debug)]
pub(crate) struct RateLimit {
    per_second: f64,
    bucket: std::sync::Mutex<(f64, tokio::time::Instant)>,
}

impl RateLimit {
    pub(crate) fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self {
            per_second,
            bucket: std::sync::Mutex::new((per_second, tokio::time::Instant::now())),
        }
    }

    /// Takes a token if there is one.
    pub(crate) fn admit(&self) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        let (tokens, last) = &mut *bucket;
        let refill = now.duration_since(*last).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.per_second);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimit;

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_admits_a_burst_then_its_rate() {
        let limit = RateLimit::new(10);
        assert_eq!((0..20).filter(|_| limit.admit()).count(), 10);
        tokio::time::advance(std::time::Duration::from_millis(500)).await;
        assert_eq!((0..20).filter(|_| limit.admit()).count(), 5);
    }
}
