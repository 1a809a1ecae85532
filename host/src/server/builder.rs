//! [`Builder`]: a server's settings and the live parts it is made with (its
//! stop switch, metrics, error handler, outbound client), turned into a
//! [`Server`] of one component or of tenants.

use std::sync::Arc;
use std::time::Duration;

use super::tenant::{Tenant, table};
use super::{Inner, Server};
use crate::config::{HttpSettings, HttpVersions, ServerSettings, TenantLimits};
use crate::config::{Outbound, Preopen, Reuse, WasiAccess};
use crate::http::{
    ConnBuilder, DefaultErrorHandler, Dispatch, ErrorHandler, GuestTasks, Recorder, UpgradeHook,
};
use crate::lifecycle::{ReadyLatch, Stop};
use crate::metrics::Metrics;
use crate::routing::{DuplicateRoute, Route, UNROUTED};
use crate::wasm::{GuestPre, Upstream};

/// The tenant name of a server built without one.
pub const DEFAULT_TENANT: &str = "default";

/// Settings for a [`Server`]. The settings are plain data
/// ([`ServerSettings`], [`TenantLimits`], [`WasiAccess`]); the builder adds
/// what a running server shares with the rest of the process.
#[derive(Clone)]
pub struct Builder {
    pub(super) settings: ServerSettings,
    /// The tenant of [`Builder::build`]: its name, limits and access.
    tenant: String,
    limits: TenantLimits,
    access: WasiAccess,
    pub(super) stop: Stop,
    pub(super) errors: Arc<dyn ErrorHandler>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) upstream: Arc<dyn Upstream>,
    pub(super) upgrade: Option<Arc<dyn UpgradeHook>>,
}

impl Builder {
    /// Settings with every default.
    pub fn new() -> Self {
        Self {
            settings: ServerSettings::default(),
            tenant: DEFAULT_TENANT.into(),
            limits: TenantLimits::default(),
            access: WasiAccess::default(),
            stop: Stop::new(),
            errors: Arc::new(DefaultErrorHandler),
            metrics: Arc::new(Metrics::new()),
            upstream: Arc::new(crate::net::Client),
            upgrade: None,
        }
    }

    /// Every server setting at once; see [`ServerSettings`] for each one's
    /// default.
    pub fn settings(&mut self, settings: ServerSettings) -> &mut Self {
        self.settings = settings;
        self
    }

    /// Every limit of the tenant of [`Builder::build`] at once; see
    /// [`TenantLimits`] for each one's default.
    pub fn limits(&mut self, limits: TenantLimits) -> &mut Self {
        self.limits = limits;
        self
    }

    /// What the guests of the tenant of [`Builder::build`] may reach.
    ///
    /// Default is nothing.
    pub fn access(&mut self, access: WasiAccess) -> &mut Self {
        self.access = access;
        self
    }

    /// Gives guests an environment variable. The host's own environment is
    /// never inherited.
    ///
    /// Default is none.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.access.env.push((key.into(), value.into()));
        self
    }

    /// Gives guests a host directory (read-only unless `writable`). The
    /// directory is opened for each request: one that is gone fails its
    /// requests (500), not the server.
    ///
    /// Default is none.
    pub fn preopen(&mut self, dir: Preopen) -> &mut Self {
        self.access.dirs.push(dir);
        self
    }

    /// Lets guests send HTTP requests to these origins (see [`Outbound`]).
    ///
    /// Default is none: every outgoing request is denied.
    pub fn outbound(&mut self, outbound: Outbound) -> &mut Self {
        self.access.outbound = outbound;
        self
    }

    /// What guests' allowed outgoing requests go through.
    ///
    /// Default is [`crate::net::Client`].
    pub fn upstream(&mut self, upstream: Arc<dyn Upstream>) -> &mut Self {
        self.upstream = upstream;
        self
    }

    /// The most worker threads one tenant's guests may run on at once, so
    /// that a tenant whose guests compute (or loop) cannot take every core
    /// from the others. Each guest gives its worker up at every epoch tick.
    ///
    /// Default is no limit.
    pub fn max_tenant_workers(&mut self, workers: Option<usize>) -> &mut Self {
        self.settings.max_tenant_workers = workers;
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
        self.settings.access_log = on;
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
        self.settings.http = settings;
        self
    }

    /// The HTTP versions served: over TLS they are the ALPN list.
    ///
    /// Default is [`HttpVersions::Both`].
    pub fn http_versions(&mut self, versions: HttpVersions) -> &mut Self {
        self.settings.http.versions = versions;
        self
    }

    /// How long a TLS handshake may take; past it the connection is closed.
    /// The handshake runs in the connection's own task, never in the accept
    /// loop.
    ///
    /// Default is 10 seconds.
    pub fn tls_handshake_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.settings.tls_handshake_timeout = timeout;
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

    /// How instances are reused: how many requests one serves in all and at
    /// once, and how long one is kept idle ([`Reuse`]).
    ///
    /// Default: a fresh instance for every request of a WASI 0.2
    /// component; 128 requests, 16 at once, for a WASI 0.3 one; idle
    /// instances kept 1 second.
    pub fn reuse(&mut self, reuse: Reuse) -> &mut Self {
        self.limits.instance.reuse = reuse;
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

    /// The most requests admitted per second (a token bucket holding a
    /// second's worth); more get 429 with `Retry-After`.
    ///
    /// Default is no limit.
    pub fn max_requests_per_second(&mut self, rate: Option<u32>) -> &mut Self {
        self.limits.max_requests_per_second = rate;
        self
    }

    /// The most lines of guest output (stdout and stderr together) logged
    /// per second; past it lines are dropped, and counted in a warning.
    ///
    /// Default is 1000.
    pub fn max_log_lines_per_second(&mut self, lines: u32) -> &mut Self {
        self.limits.max_log_lines_per_second = lines;
        self
    }

    /// Takes the tenant out of service: its requests get 503 without
    /// reaching its guests.
    ///
    /// Default is in service.
    pub fn out_of_service(&mut self, out: bool) -> &mut Self {
        self.limits.out_of_service = out;
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
        self.settings.max_connections = max;
        self
    }

    /// How long a client may take to send a request head, and a new
    /// connection its first request (after its TLS handshake); also how
    /// long an idle HTTP/1 keep-alive connection stays open.
    ///
    /// Default is 30 seconds.
    pub fn header_read_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.settings.http.header_read_timeout = timeout;
        self
    }

    /// How long a connection with no request in flight stays open, over
    /// HTTP/1 and HTTP/2 (an HTTP/1 connection waiting for its next head is
    /// also cut at the header read timeout).
    ///
    /// Default is 60 seconds.
    pub fn idle_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.settings.http.idle_timeout = timeout;
        self
    }

    /// How long a response's data may wait for a client that does not take
    /// it: the socket refuses the host's bytes, or an HTTP/2 window stays
    /// closed. Past it the connection is closed.
    ///
    /// Default is 30 seconds.
    pub fn write_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.settings.http.write_timeout = timeout;
        self
    }

    /// The most connections open at once from one client (an IPv4
    /// address, or the /64 network of an IPv6 one); more are closed as soon
    /// as they are accepted.
    ///
    /// Default is 1024.
    pub fn max_connections_per_client(&mut self, max: usize) -> &mut Self {
        self.settings.max_connections_per_client = max.max(1);
        self
    }

    /// The largest request head (HTTP/1) or header list (HTTP/2), in bytes;
    /// larger ones get 431.
    ///
    /// Default is 64 KiB.
    pub fn max_header_size(&mut self, bytes: usize) -> &mut Self {
        self.settings.http.max_header_size = bytes;
        self
    }

    /// How long a stop waits for in-flight requests before cancelling them.
    ///
    /// Default is 30 seconds.
    pub fn shutdown_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// The listen queue length of listeners the server binds itself.
    ///
    /// Default is 1024.
    pub fn backlog(&mut self, backlog: u32) -> &mut Self {
        self.settings.backlog = backlog;
        self
    }

    /// The switch that stops the server. Give several servers clones of one
    /// `Stop` to stop them together.
    ///
    /// Default is a new switch of the server's own, see [`Server::stop`].
    pub fn stop(&mut self, stop: Stop) -> &mut Self {
        self.stop = stop;
        self
    }

    /// Hands the connections whose upgrade a guest accepted to `hook`: a
    /// request with `Connection: upgrade` and `Upgrade: P` over HTTP/1.1
    /// answered 101, or an extended CONNECT with `:protocol` P over HTTP/2
    /// answered 2xx (HTTP/2 connections then offer extended CONNECT, RFC
    /// 8441). The host adds `Connection` and `Upgrade` to a 101 (a guest
    /// cannot set them) and sends no body. Only tenants whose
    /// [`TenantLimits::allow_upgrade`] is on reach the hook, and this
    /// builder's own tenant (of [`Builder::build`]) always does; others get
    /// 500 for an upgrade, as every tenant does without a hook. A tenant
    /// has at most [`TenantLimits::max_upgrades`] open (past it, 503).
    ///
    /// An upgraded connection keeps its connection permit until the hook's
    /// future ends; a stop switches [`Upgraded::stop`](crate::Upgraded)
    /// and waits for it up to the shutdown timeout, then cuts it. Past the
    /// response, timeouts are the hook's.
    ///
    /// Default is no hook.
    pub fn upgrade(&mut self, hook: impl UpgradeHook) -> &mut Self {
        self.upgrade = Some(Arc::new(hook));
        self
    }

    /// Makes the responses the host sends itself (400, 500, 503, ...).
    ///
    /// Default is [`DefaultErrorHandler`].
    pub fn error_handler(&mut self, handler: impl ErrorHandler) -> &mut Self {
        self.errors = Arc::new(handler);
        self
    }

    /// A server that serves every request with `component`.
    pub fn build(&self, component: GuestPre) -> Server {
        let tenant = Tenant {
            name: self.tenant.clone(),
            component,
            routes: vec![Route::everything()],
            limits: TenantLimits {
                allow_upgrade: self.limits.allow_upgrade || self.upgrade.is_some(),
                ..self.limits
            },
            access: self.access.clone(),
        };
        self.build_tenants(vec![tenant])
            .expect("one tenant cannot share a route with another")
    }

    /// A server of several tenants, each request served by the tenant whose
    /// route matches it best (see [`crate::routing`]); a request no route
    /// matches gets 404. Fails when two tenants give the same route.
    pub fn build_tenants(&self, tenants: Vec<Tenant>) -> Result<Server, DuplicateRoute> {
        let tasks = GuestTasks::default();
        let table = table(self, tenants, &tasks, None)?;
        let settings = &self.settings;
        // HTTP/2 offers extended CONNECT (RFC 8441) when something can take
        // an upgrade: the hook, or a tenant's WebSocket handler (those a
        // reload adds later get WebSockets over HTTP/1.1).
        let upgrades =
            self.upgrade.is_some() || table.tenants.iter().any(|t| t.serves_websockets());
        let unrouted = Recorder::new(UNROUTED.into(), self.metrics.clone(), settings.access_log);
        Ok(Server {
            inner: Arc::new(Inner {
                dispatch: Arc::new(Dispatch::new(table, unrouted, self.errors.clone())),
                builder: self.clone(),
                tasks,
                conn: ConnBuilder::new(&settings.http, upgrades),
                connections: Arc::new(tokio::sync::Semaphore::new(settings.max_connections)),
                clients: crate::net::PerClient::new(settings.max_connections_per_client),
                ready: ReadyLatch::new(),
            }),
        })
    }
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("settings", &self.settings)
            .field("tenant", &self.tenant)
            .field("limits", &self.limits)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}
