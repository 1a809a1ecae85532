//! The server: a [`Builder`] for its settings, and [`Server`], which accepts
//! connections, serves them, and stops gracefully when its [`Stop`] switches.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::Error;
use crate::http::{
    ConnBuilder, DefaultErrorHandler, Dispatch, ErrorHandler, HttpSettings, HttpVersions, Policy,
    Protocol, Recorder, Service, Site,
};
use crate::lifecycle::{Ready, ReadyLatch, Stop};
use crate::metrics::Metrics;
use crate::net::{self, Listener, Tls};
use crate::routing::{DuplicateRoute, Route, Routes};
use crate::wasm::{GuestTasks, Handler, InstanceLimits, Outbound, Preopen, WasiAccess};

/// How long a stop waits for in-flight requests by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// The listen queue length by default.
pub const DEFAULT_BACKLOG: u32 = 1024;
/// The most requests running at once by default.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1024;
/// The most open connections by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The largest request body by default: 10 MiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 10 << 20;
/// How long a TLS handshake may take by default.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings for a [`Server`].
#[derive(Clone)]
pub struct Builder {
    shutdown_timeout: Duration,
    backlog: u32,
    stop: Stop,
    errors: Arc<dyn ErrorHandler>,
    http: HttpSettings,
    max_connections: usize,
    tls_handshake_timeout: Duration,
    access_log: bool,
    metrics: Arc<Metrics>,
    max_tenant_workers: Option<usize>,
    /// The tenant of [`Builder::build`].
    tenant: Arc<str>,
    limits: TenantLimits,
}

/// The tenant name of a server built without one.
pub const DEFAULT_TENANT: &str = "default";

/// What one tenant's requests may use: its limits and its guests' access.
/// [`Builder`]'s setters set them for the one tenant of [`Builder::build`].
#[derive(Clone, Debug)]
pub struct TenantLimits {
    /// Time and memory of each instance.
    pub instance: InstanceLimits,
    /// The largest request body, in bytes. Default is 10 MiB.
    pub max_body_size: u64,
    /// The most of the tenant's requests running at once; more get 503.
    /// Default is 1024.
    pub max_concurrent_requests: usize,
    /// Environment, directories and outbound HTTP origins. Default is none.
    pub access: WasiAccess,
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            instance: InstanceLimits::default(),
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            access: WasiAccess::default(),
        }
    }
}

/// One tenant of a server: a component, the routes that lead to it, and
/// what its requests may use.
#[derive(Clone, Debug)]
pub struct Tenant {
    /// Names the tenant in logs and metrics.
    pub name: String,
    /// Its component.
    pub handler: Handler,
    /// Where its requests come from.
    pub routes: Vec<Route>,
    /// What its requests may use.
    pub limits: TenantLimits,
}

impl Builder {
    /// Settings with every default.
    pub fn new() -> Self {
        Self {
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            backlog: DEFAULT_BACKLOG,
            stop: Stop::new(),
            errors: Arc::new(DefaultErrorHandler),
            http: HttpSettings::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            access_log: true,
            metrics: Arc::new(Metrics::new()),
            max_tenant_workers: None,
            tenant: DEFAULT_TENANT.into(),
            limits: TenantLimits::default(),
        }
    }

    /// Gives guests an environment variable. The host's own environment is
    /// never inherited.
    ///
    /// Default is none.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.limits.access.env.push((key.into(), value.into()));
        self
    }

    /// Gives guests a host directory (read-only unless `writable`). The
    /// directory is opened for each request: one that is gone fails its
    /// requests (500), not the server.
    ///
    /// Default is none.
    pub fn preopen(&mut self, dir: Preopen) -> &mut Self {
        self.limits.access.dirs.push(dir);
        self
    }

    /// Lets guests send HTTP requests to these origins (see [`Outbound`]).
    ///
    /// Default is none: every outgoing request is denied.
    pub fn outbound(&mut self, outbound: Outbound) -> &mut Self {
        self.limits.access.outbound = outbound;
        self
    }

    /// The most worker threads one tenant's guests may run on at once, so
    /// that a tenant whose guests compute (or loop) cannot take every core
    /// from the others. Each guest gives its worker up at every epoch tick.
    ///
    /// Default is no limit.
    pub fn max_tenant_workers(&mut self, workers: Option<usize>) -> &mut Self {
        self.max_tenant_workers = workers;
        self
    }

    /// The tenant this server's requests are logged and counted under.
    ///
    /// Default is `default`.
    pub fn tenant(&mut self, name: &str) -> &mut Self {
        self.tenant = name.into();
        self
    }

    /// Whether every request gets an access log line (an `info` event of
    /// target `catshost::access`, written when its response ends).
    ///
    /// Default is on.
    pub fn access_log(&mut self, on: bool) -> &mut Self {
        self.access_log = on;
        self
    }

    /// Where the server counts what it does. Give several servers one
    /// `Metrics` to count them together.
    ///
    /// Default is new metrics of the server's own, see [`Server::metrics`].
    pub fn metrics(&mut self, metrics: Arc<Metrics>) -> &mut Self {
        self.metrics = metrics;
        self
    }

    /// Every HTTP setting at once (versions, timeouts, HTTP/1 and HTTP/2
    /// tunables); see [`HttpSettings`] for each one's default.
    pub fn http(&mut self, settings: HttpSettings) -> &mut Self {
        self.http = settings;
        self
    }

    /// The HTTP settings so far.
    pub fn http_settings(&self) -> &HttpSettings {
        &self.http
    }

    /// The HTTP versions served: over TLS they are the ALPN list.
    ///
    /// Default is [`HttpVersions::Both`].
    pub fn http_versions(&mut self, versions: HttpVersions) -> &mut Self {
        self.http.versions = versions;
        self
    }

    /// How long a TLS handshake may take; past it the connection is closed.
    /// The handshake runs in the connection's own task, never in the accept
    /// loop.
    ///
    /// Default is 10 seconds.
    pub fn tls_handshake_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.tls_handshake_timeout = timeout;
        self
    }

    /// How long a guest may run for one request, response body included.
    /// Past it the request gets 504 (or, once the response head is sent, a
    /// cut response) and the instance is dropped.
    ///
    /// Default is 30 seconds.
    pub fn request_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.limits.instance.request_timeout = timeout;
        self
    }

    /// The largest linear memory an instance may grow to, in bytes; a guest
    /// that grows past it traps (500).
    ///
    /// Default is 128 MiB.
    pub fn max_memory(&mut self, bytes: usize) -> &mut Self {
        self.limits.instance.max_memory = bytes;
        self
    }

    /// The largest request body, in bytes: a larger `content-length` gets 413
    /// before the guest runs; a body without one is counted as it streams
    /// and stops the guest when it goes past (413, or a cut response once
    /// the guest has answered).
    ///
    /// Default is 10 MiB.
    pub fn max_body_size(&mut self, bytes: u64) -> &mut Self {
        self.limits.max_body_size = bytes;
        self
    }

    /// The most requests running at once; more get 503 with `Retry-After`.
    ///
    /// Default is 1024.
    pub fn max_concurrent_requests(&mut self, max: usize) -> &mut Self {
        self.limits.max_concurrent_requests = max;
        self
    }

    /// The most connections open at once; more wait in the listen backlog.
    ///
    /// Default is 10,000.
    pub fn max_connections(&mut self, max: usize) -> &mut Self {
        self.max_connections = max;
        self
    }

    /// How long a client may take to send a request head, and to send the
    /// first byte of a connection; also how long an idle HTTP/1 keep-alive
    /// connection stays open.
    ///
    /// Default is 30 seconds.
    pub fn header_read_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.http.header_read_timeout = timeout;
        self
    }

    /// The largest request head (HTTP/1) or header list (HTTP/2), in bytes;
    /// larger ones get 431.
    ///
    /// Default is 64 KiB.
    pub fn max_header_size(&mut self, bytes: usize) -> &mut Self {
        self.http.max_header_size = bytes;
        self
    }

    /// How long a stop waits for in-flight requests before cancelling them.
    ///
    /// Default is 30 seconds.
    pub fn shutdown_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The listen queue length of listeners the server binds itself.
    ///
    /// Default is 1024.
    pub fn backlog(&mut self, backlog: u32) -> &mut Self {
        self.backlog = backlog;
        self
    }

    /// The listen queue length set so far.
    pub fn backlog_len(&self) -> u32 {
        self.backlog
    }

    /// The switch that stops the server. Give several servers clones of one
    /// `Stop` to stop them together.
    ///
    /// Default is a new switch of the server's own, see [`Server::stop`].
    pub fn stop(&mut self, stop: Stop) -> &mut Self {
        self.stop = stop;
        self
    }

    /// Makes the responses the host sends itself (400, 500, 503, ...).
    ///
    /// Default is [`DefaultErrorHandler`].
    pub fn error_handler(&mut self, handler: impl ErrorHandler) -> &mut Self {
        self.errors = Arc::new(handler);
        self
    }

    /// The limits of the tenant of [`Builder::build`] so far: a start for
    /// the limits of [`Tenant`]s.
    pub fn tenant_limits(&self) -> &TenantLimits {
        &self.limits
    }

    /// A server that serves every request with `handler`.
    pub fn build(&self, handler: Handler) -> Server {
        let tasks = GuestTasks::default();
        let tenant = Tenant {
            name: self.tenant.to_string(),
            handler,
            routes: Vec::new(),
            limits: self.limits.clone(),
        };
        let site = Site {
            routes: Routes::everything(),
            tenants: vec![self.service(tenant, &tasks, None)],
        };
        self.server(site, tasks)
    }

    /// A server of several tenants, each request served by the tenant whose
    /// route matches it best (see [`crate::routing`]); a request no route
    /// matches gets 404. Fails when two tenants give the same route.
    pub fn build_tenants(&self, tenants: Vec<Tenant>) -> Result<Server, DuplicateRoute> {
        let tasks = GuestTasks::default();
        let site = self.site(tenants, &tasks, None)?;
        Ok(self.server(site, tasks))
    }

    /// The tenants' site; a tenant of `before` with the same name keeps its
    /// permits.
    fn site(
        &self,
        tenants: Vec<Tenant>,
        tasks: &GuestTasks,
        before: Option<&Site>,
    ) -> Result<Site, DuplicateRoute> {
        let routes = Routes::new(
            tenants
                .iter()
                .enumerate()
                .flat_map(|(i, t)| t.routes.iter().map(move |r| (r.clone(), i))),
            |i| tenants[i].name.clone(),
        )?;
        let before =
            |name: &str| before.and_then(|site| site.tenants.iter().find(|s| s.tenant() == name));
        let tenants = tenants
            .into_iter()
            .map(|tenant| {
                let before = before(&tenant.name).cloned();
                self.service(tenant, tasks, before.as_deref())
            })
            .collect();
        Ok(Site { routes, tenants })
    }

    fn service(
        &self,
        tenant: Tenant,
        tasks: &GuestTasks,
        before: Option<&Service>,
    ) -> Arc<Service> {
        let name: Arc<str> = tenant.name.into();
        Arc::new(Service::new(
            tenant.handler,
            tasks.clone(),
            Policy {
                errors: self.errors.clone(),
                limits: tenant.limits.instance,
                max_body_size: tenant.limits.max_body_size,
                max_concurrent_requests: tenant.limits.max_concurrent_requests,
                max_workers: self.max_tenant_workers,
                recorder: Recorder::new(name, self.metrics.clone(), self.access_log),
                access: tenant.limits.access,
            },
            before,
        ))
    }

    fn server(&self, site: Site, tasks: GuestTasks) -> Server {
        let unrouted = Recorder::new(UNROUTED.into(), self.metrics.clone(), self.access_log);
        Server {
            inner: Arc::new(Inner {
                dispatch: Arc::new(Dispatch::new(site, unrouted, self.errors.clone())),
                builder: self.clone(),
                tasks,
                conn: ConnBuilder::new(&self.http),
                versions: self.http.versions,
                header_read_timeout: self.http.header_read_timeout,
                tls_handshake_timeout: self.tls_handshake_timeout,
                connections: Arc::new(Semaphore::new(self.max_connections)),
                max_connections: self.max_connections,
                shutdown_timeout: self.shutdown_timeout,
                backlog: self.backlog,
                stop: self.stop.clone(),
                ready: ReadyLatch::new(),
                metrics: self.metrics.clone(),
            }),
        }
    }
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("backlog", &self.backlog)
            .field("http", &self.http)
            .field("max_connections", &self.max_connections)
            .field("tls_handshake_timeout", &self.tls_handshake_timeout)
            .field("access_log", &self.access_log)
            .field("max_tenant_workers", &self.max_tenant_workers)
            .field("tenant", &self.tenant)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

/// The tenant name requests that match no route are logged and counted
/// under.
pub const UNROUTED: &str = "-";

/// A server of one component, or of tenants routed by host and path. Cheap
/// to clone: clones are the same server.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    dispatch: Arc<Dispatch>,
    /// What tenants given to [`Server::replace_tenants`] are built with.
    builder: Builder,
    tasks: GuestTasks,
    conn: ConnBuilder,
    versions: HttpVersions,
    header_read_timeout: Duration,
    tls_handshake_timeout: Duration,
    /// One permit per open connection.
    connections: Arc<Semaphore>,
    max_connections: usize,
    shutdown_timeout: Duration,
    backlog: u32,
    stop: Stop,
    ready: ReadyLatch,
    metrics: Arc<Metrics>,
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
        self.inner.ready.is_open() && !self.inner.stop.is_switched()
    }

    /// The switch that stops this server.
    pub fn stop(&self) -> &Stop {
        &self.inner.stop
    }

    /// What this server has counted.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// What the server is doing now.
    pub fn in_flight(&self) -> InFlight {
        InFlight {
            connections: self.inner.max_connections - self.inner.connections.available_permits(),
            requests: self.inner.tasks.len(),
        }
    }

    /// Replaces every tenant at once: requests already routed finish with
    /// the tenants they were routed to, requests routed from now on get the
    /// new ones. A tenant whose name and `max_concurrent_requests` stay
    /// keeps its permits, so the requests it is still running count against
    /// its limits. Nothing changes when two tenants give the same route.
    pub fn replace_tenants(&self, tenants: Vec<Tenant>) -> Result<(), DuplicateRoute> {
        let inner = &*self.inner;
        let before = inner.dispatch.current();
        let site = inner.builder.site(tenants, &inner.tasks, Some(&before))?;
        inner.dispatch.replace(site);
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
        net::bind(addr, self.inner.backlog, false)
            .and_then(Listener::new)
            .map_err(|source| {
                self.inner.ready.fail();
                Error::Bind { addr, source }
            })
    }

    async fn serve(&self, listener: Listener, tls: Option<Tls>) -> Result<(), Error> {
        let acceptor = tls.map(|tls| tokio_rustls::TlsAcceptor::from(tls.config));
        let inner = &*self.inner;
        let addr = listener.local_addr().map_err(Error::Listener)?;
        inner.ready.open(addr);

        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let result = loop {
            tokio::select! {
                biased;
                () = inner.stop.switched() => break Ok(()),
                // At the connection limit, stop accepting: connections wait
                // in the listen backlog.
                accepted = async {
                    let permit = inner.connections.clone().acquire_owned().await;
                    (permit, listener.accept().await)
                } => match accepted {
                    (Ok(permit), Ok(accepted)) => {
                        let server = self.inner.clone();
                        let watcher = graceful.watcher();
                        let acceptor = acceptor.clone();
                        connections.spawn(async move {
                            let _open = server.metrics.connection_opened();
                            let (stream, peer) = (accepted.stream, accepted.peer);
                            match acceptor {
                                None => server.serve_clear(stream, peer, watcher).await,
                                Some(acceptor) => server.serve_tls(stream, peer, acceptor, watcher).await,
                            }
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
        let in_flight = graceful.count();
        if in_flight > 0 {
            tracing::info!(connections = in_flight, timeout = ?inner.shutdown_timeout, "waiting for in-flight requests");
        }
        inner.tasks.close();
        let finished = tokio::time::timeout(inner.shutdown_timeout, async {
            // Asks HTTP/1 connections to close after their current response
            // and sends HTTP/2 GOAWAY, then waits for them to end.
            graceful.shutdown().await;
            inner.tasks.wait().await;
        })
        .await;
        if finished.is_err() {
            tracing::warn!(timeout = ?inner.shutdown_timeout, "shutdown timeout reached: cancelling the requests still running");
            inner.tasks.cancel();
        }
        // What is left serves no request: connections still in their TLS
        // handshake or silent (or, past the timeout, cut short).
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        inner.tasks.wait().await;
    }
}

impl Inner {
    async fn serve_tls(
        &self,
        stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        acceptor: tokio_rustls::TlsAcceptor,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        // In the connection's task, under a timeout: a client that never
        // finishes its handshake holds nothing but its own task.
        let stream =
            match tokio::time::timeout(self.tls_handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    self.metrics.tls_handshake_failed("error");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    self.metrics.tls_handshake_failed("timeout");
                    return;
                }
            };
        let protocol = Protocol::from_alpn(stream.get_ref().1.alpn_protocol(), self.versions);
        self.conn
            .serve(stream, protocol, self.dispatch.clone(), true, peer, watcher)
            .await;
    }

    async fn serve_clear(
        &self,
        stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        // A client must start talking within the header read timeout: before
        // hyper has chosen HTTP/1 or HTTP/2 no timer of its own runs.
        let mut first = [0; 1];
        match tokio::time::timeout(self.header_read_timeout, stream.peek(&mut first)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return,
            Err(_) => {
                tracing::debug!(%peer, "connection closed: nothing received within the header read timeout");
                return;
            }
        }
        let protocol = Protocol::cleartext(self.versions);
        self.conn
            .serve(
                stream,
                protocol,
                self.dispatch.clone(),
                false,
                peer,
                watcher,
            )
            .await;
    }
}

/// What a server is doing at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Connections open.
    pub connections: usize,
    /// Requests whose guest is still running.
    pub requests: usize,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}
