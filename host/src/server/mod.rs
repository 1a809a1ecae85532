//! The server: [`Builder`] for its settings, [`Tenant`]s to serve, and
//! [`Server`], which accepts connections, serves them, and stops gracefully
//! when its [`Stop`] switches. Tenant code lives here: the model
//! (`tenant.rs`), loading a config file's tenants ([`load`]); reloading is
//! the binary's (`cmd/reload.rs`).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::Error;
use crate::http::{ConnBuilder, Dispatch, GuestTasks};
use crate::lifecycle::{Ready, ReadyLatch, Stop};
use crate::metrics::Metrics;
use crate::net::{self, Listener, Tls};
use crate::routing::DuplicateRoute;

mod builder;
mod connection;
pub mod load;
mod per_core;
mod quic;
mod tenant;

pub use builder::{Builder, DEFAULT_TENANT};
pub use per_core::EVENT_INTERVAL;
pub use tenant::{Tenant, TenantComponent};

/// A server of one component, or of tenants routed by host and path. Cheap
/// to clone: clones are the same server.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    dispatch: Arc<Dispatch>,
    /// Its settings, and what tenants given to [`Server::replace_tenants`]
    /// are made with.
    builder: Builder,
    tasks: GuestTasks,
    conn: ConnBuilder,
    /// One permit per open connection.
    connections: Arc<Semaphore>,
    /// The open connections of each client, capped.
    clients: Arc<crate::net::PerClient>,
    /// The process's account of host memory (`--max-host-memory`): every
    /// tenant's is under it; past its limit new connections are closed.
    account: Arc<crate::account::Account>,
    /// Loads and unloads the on-demand tenants' components, across reloads.
    loader: Arc<crate::http::Loader>,
    /// The tenants as their guests' internal calls find them.
    internal: crate::http::InternalTenants,
    /// `Alt-Svc` of TLS responses once HTTP/3 is served: `h3=":PORT"`.
    alt_svc: std::sync::OnceLock<http::HeaderValue>,
    /// When the overload guard last shed a tenant's sockets.
    shed_at: std::sync::Mutex<Option<std::time::Instant>>,
    ready: ReadyLatch,
}

impl Inner {
    /// At the host memory limit: closes the WebSockets of the tenant whose
    /// account holds the most, at most once a second (what it held takes
    /// a moment to be given back).
    fn shed(&self) {
        let mut shed_at = self.shed_at.lock().unwrap_or_else(|p| p.into_inner());
        if shed_at.is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(1)) {
            return;
        }
        *shed_at = Some(std::time::Instant::now());
        if let Some((tenant, held)) = self.dispatch.shed_largest() {
            tracing::warn!(
                tenant,
                held,
                limit = self.account.limit(),
                "the host holds its most memory (--max-host-memory): the WebSockets of the \
                 tenant holding the most are closed with 1013"
            );
        }
    }
}

/// What a TLS server's connections are accepted with.
#[derive(Clone)]
pub(crate) struct TlsSide {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    /// The certificates chosen by SNI, when they are.
    pub(crate) sni: Option<crate::net::SniCerts>,
}

/// What a server is doing at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Connections open.
    pub connections: usize,
    /// Requests whose guest is still running.
    pub requests: usize,
}

impl Server {
    /// Settings for a new server.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Resolves with the bound address once the server accepts connections.
    pub fn ready(&self) -> Ready {
        self.inner.ready.subscribe()
    }

    /// Whether the server accepts connections now: ready, and not stopped.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.is_open() && !self.stop().is_switched()
    }

    /// The switch that stops this server.
    pub fn stop(&self) -> &Stop {
        &self.inner.builder.stop
    }

    /// What this server has counted.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.builder.metrics
    }

    /// What the server is doing now.
    pub fn in_flight(&self) -> InFlight {
        let max = self.inner.builder.settings.max_connections;
        InFlight {
            connections: max - self.inner.connections.available_permits(),
            requests: self.inner.tasks.len(),
        }
    }

    /// A slot in the per-client cap for one more connection from `ip`, held
    /// until it is dropped; `None` when the client has its most open. The
    /// admin listener's connections take theirs here too: one cap per
    /// client over both listeners.
    pub(crate) fn admit_client(&self, ip: std::net::IpAddr) -> Option<crate::net::ClientSlot> {
        self.inner.clients.admit(ip)
    }

    /// How this server's connections are served: the admin listener's are
    /// served the same way, under the same timeouts.
    pub(crate) fn conn(&self) -> &ConnBuilder {
        &self.inner.conn
    }

    /// Replaces every tenant at once: requests already routed finish with
    /// the tenants they were routed to, requests routed from now on get the
    /// new ones. A tenant whose name and `max_concurrent_requests` stay
    /// keeps its permits, so the requests it is still running count against
    /// its limits. Nothing changes when two tenants give the same route.
    pub fn replace_tenants(&self, tenants: Vec<Tenant>) -> Result<(), DuplicateRoute> {
        let inner = &*self.inner;
        let before = inner.dispatch.current();
        let table = tenant::tenant_table(
            &inner.builder,
            tenants,
            &inner.tasks,
            &inner.account,
            &inner.loader,
            &inner.internal,
            Some(&before),
        )?;
        inner.dispatch.replace(table);
        Ok(())
    }

    /// Binds `addr` and serves plaintext HTTP/1.1 and h2c (HTTP/2 by prior
    /// knowledge) on it until the stop switch is switched and in-flight
    /// requests are done.
    pub async fn serve_clear(&self, addr: SocketAddr) -> Result<(), Error> {
        let listener = self.bind(addr)?;
        self.serve(listener, None).await
    }

    /// Binds `addr` and serves HTTPS on it: HTTP/1.1 and HTTP/2 chosen by
    /// ALPN.
    pub async fn serve_tls(&self, addr: SocketAddr, tls: Tls) -> Result<(), Error> {
        let listener = self.bind(addr)?;
        self.serve(listener, Some(tls)).await
    }

    /// Serves on a listener the caller bound: plaintext, or TLS when `tls`
    /// is given. The listener is closed when serving ends.
    pub async fn serve_listener(
        &self,
        listener: std::net::TcpListener,
        tls: Option<Tls>,
    ) -> Result<(), Error> {
        let listener = Listener::new(listener).map_err(|e| {
            self.inner.ready.fail();
            Error::Listener(e)
        })?;
        self.serve(listener, tls).await
    }

    fn bind(&self, addr: SocketAddr) -> Result<Listener, Error> {
        net::bind(addr, self.inner.builder.settings.backlog, false)
            .and_then(Listener::new)
            .map_err(|source| {
                self.inner.ready.fail();
                Error::Bind { addr, source }
            })
    }

    async fn serve(&self, listener: Listener, tls: Option<Tls>) -> Result<(), Error> {
        let inner = &*self.inner;
        let addr = listener.local_addr().map_err(Error::Listener)?;
        // HTTP/3 on the same port number, bound before the server is
        // ready: readiness counts the UDP socket too.
        let quic = match (&tls, inner.builder.settings.http.http3) {
            (_, false) => None,
            (None, true) => {
                inner.ready.fail();
                return Err(Error::Http3("HTTP/3 needs TLS: give a certificate"));
            }
            (Some(tls), true) => match inner.bind_quic(addr, tls) {
                Ok(endpoint) => Some((endpoint, tls.sni.clone())),
                Err(error) => {
                    inner.ready.fail();
                    return Err(error);
                }
            },
        };
        let acceptor = tls.map(|tls| TlsSide {
            acceptor: tokio_rustls::TlsAcceptor::from(tls.config),
            sni: tls.sni,
        });
        inner.ready.open(addr);
        let tcp = async {
            let served = self.serve_tcp(listener, acceptor).await;
            if served.is_err() {
                // The QUIC side must not serve on alone.
                self.stop().switch();
            }
            served
        };
        let (tcp, ()) = tokio::join!(tcp, async {
            if let Some((endpoint, sni)) = quic {
                self.inner.serve_quic(endpoint, sni).await;
            }
        });
        tcp
    }

    /// Accepts and serves TCP connections until the stop switch, then
    /// drains them.
    async fn serve_tcp(&self, listener: Listener, acceptor: Option<TlsSide>) -> Result<(), Error> {
        let inner = &*self.inner;

        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let result = loop {
            tokio::select! {
                biased;
                () = self.stop().switched() => break Ok(()),
                // At the connection limit, stop accepting: connections wait
                // in the listen backlog.
                accepted = async {
                    let permit = inner.connections.clone().acquire_owned().await;
                    (permit, listener.accept().await)
                } => match accepted {
                    (Ok(permit), Ok(accepted)) => {
                        if inner.account.held() >= inner.account.limit() {
                            // The tenants hold all the host memory they may:
                            // no new client until they hold less, and the
                            // tenant holding the most sheds its sockets.
                            tracing::debug!(peer = %accepted.peer, "connection refused: the host holds its most memory (--max-host-memory)");
                            inner.builder.metrics.connection_closed("host_memory");
                            inner.shed();
                            continue;
                        }
                        // A connection of a trusted proxy takes its
                        // client's slot in its task, once its PROXY header
                        // says who the client is; others here, in the order
                        // they came.
                        let slot = match inner.builder.settings.trusted_proxies.trusts(accepted.peer.ip()) {
                            true => None,
                            false => match inner.admit(accepted.peer) {
                                Some(slot) => Some(slot),
                                None => continue,
                            },
                        };
                        let server = self.inner.clone();
                        let watcher = graceful.watcher();
                        let acceptor = acceptor.clone();
                        connections.spawn(async move {
                            server.connection(accepted, slot, acceptor, watcher).await;
                            drop(permit);
                        });
                    }
                    (_, Err(error)) => break Err(Error::Listener(error)),
                    (Err(_closed), _) => unreachable!("the connection semaphore is never closed"),
                },
                // Reap finished connections so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        };
        // New connections are refused from here on.
        drop(listener);
        self.drain(graceful, connections).await;
        result
    }

    /// Lets connections and guests finish, up to the shutdown timeout, then
    /// cancels what is left.
    async fn drain(&self, graceful: GracefulShutdown, mut connections: JoinSet<()>) {
        let inner = &*self.inner;
        let timeout = inner.builder.settings.shutdown_timeout;
        let in_flight = graceful.count();
        if in_flight > 0 {
            tracing::info!(
                connections = in_flight,
                ?timeout,
                "waiting for in-flight requests"
            );
        }
        inner.tasks.close();
        let finished = tokio::time::timeout(timeout, async {
            // Asks HTTP/1 connections to close after their current response
            // and sends HTTP/2 GOAWAY, then waits for them to end.
            graceful.shutdown().await;
            inner.tasks.wait().await;
            // Upgraded connections were told by the stop switch.
            let upgraded = inner.conn.upgraded();
            upgraded.close();
            upgraded.wait().await;
            // Then the WebSocket handlers hear of their sockets' close.
            inner.tasks.websockets().close();
            inner.tasks.websockets().wait().await;
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                ?timeout,
                "shutdown timeout reached: cancelling the requests still running"
            );
            inner.tasks.cancel();
        }
        // What is left serves no request: connections still in their TLS
        // handshake or silent (or, past the timeout, cut short).
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        inner.tasks.wait().await;
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::path::Path;

    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::Server;
    use crate::http::{ConnInfo, IncomingBody};

    /// A request as HTTP/3 or a call from inside the host will bring it:
    /// not from a hyper connection.
    fn request(body: IncomingBody) -> http::Request<IncomingBody> {
        let mut request = http::Request::post("http://localhost/")
            .body(body)
            .expect("a valid request");
        request.extensions_mut().insert(ConnInfo {
            peer: "127.0.0.1:9".parse().expect("an address"),
            tls: false,
            sni: None,
        });
        request
    }

    #[tokio::test]
    async fn a_request_whose_body_is_not_hyper_s_goes_through_the_same_dispatch_and_limits() {
        let echo = catshost_wat::Wit::workspace()
            .and_then(|wit| {
                wit.component_from_wat_file(
                    &Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/echo.wat"),
                )
            })
            .expect("the echo fixture builds");
        let component = crate::Engine::new()
            .and_then(|engine| engine.load_bytes("echo", &echo))
            .expect("the echo fixture loads");
        let server = Server::builder().max_body_size(16).build(component);
        let dispatch = &server.inner.dispatch;

        // Within the limit: the guest echoes it.
        let response = dispatch
            .serve(request(IncomingBody::new(Full::new(Bytes::from("hello")))))
            .await
            .response;
        assert_eq!(response.status(), 200);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the whole echo");
        assert_eq!(body.to_bytes(), "hello");

        // A declared length past the limit: 413 before the guest runs.
        let response = dispatch
            .serve(request(IncomingBody::new(Full::new(Bytes::from(vec![
                b'x';
                17
            ])))))
            .await
            .response;
        assert_eq!(response.status(), 413);

        // A body of no declared length is counted as it streams and cut at
        // the limit: the echo never ends whole.
        let chunks = (0..3).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 10]))));
        let streamed = StreamBody::new(futures_util::stream::iter(chunks));
        let response = dispatch
            .serve(request(IncomingBody::new(streamed)))
            .await
            .response;
        let cut = response.status() == 413 || response.into_body().collect().await.is_err();
        assert!(cut, "a streamed body past the limit was echoed whole");
    }
}
