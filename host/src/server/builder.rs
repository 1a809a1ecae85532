//! [`Builder`]: a server's settings and the live parts it is made with (its
//! stop switch, metrics, error handler, outbound client), turned into a
//! [`Server`] of one component or of tenants.

use std::sync::Arc;
use std::time::Duration;

use super::tenant::{Tenant, tenant_table};
use super::{Inner, Server};
use crate::account::Account;
use crate::config::{HttpSettings, HttpVersions, ServerSettings, TenantLimits};
use crate::config::{Outbound, Preopen, Reuse, TrustedProxies, WasiAccess};
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

    /// Sets [`ServerSettings::max_tenant_workers`].
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

    /// Sets [`ServerSettings::access_log`].
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

    /// Sets [`HttpSettings::versions`].
    ///
    /// Default is [`HttpVersions::Both`].
    pub fn http_versions(&mut self, versions: HttpVersions) -> &mut Self {
        self.settings.http.versions = versions;
        self
    }

    /// Sets [`HttpSettings::http3`]: HTTP/3 over QUIC beside whichever
    /// [`versions`](Self::http_versions) TCP serves, on a UDP socket of the
    /// TCP listener's port, with the same certificates. Serving then needs
    /// TLS ([`Server::serve_tls`], or [`Server::serve_listener`] with
    /// one); per-core mode refuses it.
    ///
    /// Default is off.
    pub fn http3(&mut self, on: bool) -> &mut Self {
        self.settings.http.http3 = on;
        self
    }

    /// Sets [`ServerSettings::tls_handshake_timeout`].
    ///
    /// Default is [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`].
    ///
    /// [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`]: crate::config::DEFAULT_TLS_HANDSHAKE_TIMEOUT
    pub fn tls_handshake_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.settings.tls_handshake_timeout = timeout;
        self
    }

    /// Sets [`InstanceLimits::request_timeout`].
    ///
    /// Default is [`DEFAULT_REQUEST_TIMEOUT`].
    ///
    /// [`InstanceLimits::request_timeout`]: crate::config::InstanceLimits::request_timeout
    /// [`DEFAULT_REQUEST_TIMEOUT`]: crate::config::DEFAULT_REQUEST_TIMEOUT
    pub fn request_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.limits.instance.request_timeout = timeout;
        self
    }

    /// Sets [`InstanceLimits::max_memory`].
    ///
    /// Default is [`DEFAULT_MAX_MEMORY`].
    ///
    /// [`InstanceLimits::max_memory`]: crate::config::InstanceLimits::max_memory
    /// [`DEFAULT_MAX_MEMORY`]: crate::config::DEFAULT_MAX_MEMORY
    pub fn max_memory(&mut self, bytes: usize) -> &mut Self {
        self.limits.instance.max_memory = bytes;
        self
    }

    /// Sets [`InstanceLimits::reuse`]: how instances are reused.
    ///
    /// Default is [`Reuse::default`], as each field of [`Reuse`] says.
    ///
    /// [`InstanceLimits::reuse`]: crate::config::InstanceLimits::reuse
    pub fn reuse(&mut self, reuse: Reuse) -> &mut Self {
        self.limits.instance.reuse = reuse;
        self
    }

    /// Sets [`TenantLimits::max_body_size`].
    ///
    /// Default is [`DEFAULT_MAX_BODY_SIZE`].
    ///
    /// [`DEFAULT_MAX_BODY_SIZE`]: crate::config::DEFAULT_MAX_BODY_SIZE
    pub fn max_body_size(&mut self, bytes: u64) -> &mut Self {
        self.limits.max_body_size = bytes;
        self
    }

    /// Sets [`TenantLimits::max_requests_per_second`].
    ///
    /// Default is no limit.
    pub fn max_requests_per_second(&mut self, rate: Option<u32>) -> &mut Self {
        self.limits.max_requests_per_second = rate;
        self
    }

    /// Sets [`TenantLimits::max_log_lines_per_second`].
    ///
    /// Default is [`DEFAULT_LOG_LINES_PER_SECOND`].
    ///
    /// [`DEFAULT_LOG_LINES_PER_SECOND`]: crate::config::DEFAULT_LOG_LINES_PER_SECOND
    pub fn max_log_lines_per_second(&mut self, lines: u32) -> &mut Self {
        self.limits.max_log_lines_per_second = lines;
        self
    }

    /// Sets [`TenantLimits::out_of_service`].
    ///
    /// Default is in service.
    pub fn out_of_service(&mut self, out: bool) -> &mut Self {
        self.limits.out_of_service = out;
        self
    }

    /// Sets [`TenantLimits::max_concurrent_requests`].
    ///
    /// Default is [`DEFAULT_MAX_CONCURRENT_REQUESTS`].
    ///
    /// [`DEFAULT_MAX_CONCURRENT_REQUESTS`]: crate::config::DEFAULT_MAX_CONCURRENT_REQUESTS
    pub fn max_concurrent_requests(&mut self, max: usize) -> &mut Self {
        self.limits.max_concurrent_requests = max;
        self
    }

    /// Sets [`ServerSettings::max_connections`].
    ///
    /// Default is [`DEFAULT_MAX_CONNECTIONS`].
    ///
    /// [`DEFAULT_MAX_CONNECTIONS`]: crate::config::DEFAULT_MAX_CONNECTIONS
    pub fn max_connections(&mut self, max: usize) -> &mut Self {
        self.settings.max_connections = max;
        self
    }

    /// Sets [`HttpSettings::header_read_timeout`].
    ///
    /// Default is [`DEFAULT_HEADER_READ_TIMEOUT`].
    ///
    /// [`DEFAULT_HEADER_READ_TIMEOUT`]: crate::config::DEFAULT_HEADER_READ_TIMEOUT
    pub fn header_read_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.settings.http.header_read_timeout = timeout;
        self
    }

    /// Sets [`HttpSettings::idle_timeout`].
    ///
    /// Default is [`DEFAULT_IDLE_TIMEOUT`](crate::config::DEFAULT_IDLE_TIMEOUT).
    pub fn idle_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.settings.http.idle_timeout = timeout;
        self
    }

    /// Sets [`HttpSettings::write_timeout`].
    ///
    /// Default is [`DEFAULT_WRITE_TIMEOUT`](crate::config::DEFAULT_WRITE_TIMEOUT).
    pub fn write_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.settings.http.write_timeout = timeout;
        self
    }

    /// Sets [`ServerSettings::max_connections_per_client`]; 0 is taken as 1.
    ///
    /// Default is
    /// [`DEFAULT_MAX_CONNECTIONS_PER_CLIENT`](crate::config::DEFAULT_MAX_CONNECTIONS_PER_CLIENT).
    pub fn max_connections_per_client(&mut self, max: usize) -> &mut Self {
        self.settings.max_connections_per_client = max.max(1);
        self
    }

    /// Sets [`ServerSettings::max_host_memory`]: the most bytes all
    /// tenants' accounts of host memory hold together; 0 turns the guard
    /// off.
    ///
    /// Default is half of the memory the process may use.
    pub fn max_host_memory(&mut self, bytes: usize) -> &mut Self {
        self.settings.max_host_memory = Some(bytes);
        self
    }

    /// Sets [`ServerSettings::trusted_proxies`]: the load balancers whose
    /// connections open with a PROXY protocol header naming their client.
    ///
    /// Default is none.
    pub fn trusted_proxies(&mut self, proxies: TrustedProxies) -> &mut Self {
        self.settings.trusted_proxies = proxies;
        self
    }

    /// Sets [`HttpSettings::max_header_size`].
    ///
    /// Default is [`DEFAULT_MAX_HEADER_SIZE`].
    ///
    /// [`DEFAULT_MAX_HEADER_SIZE`]: crate::config::DEFAULT_MAX_HEADER_SIZE
    pub fn max_header_size(&mut self, bytes: usize) -> &mut Self {
        self.settings.http.max_header_size = bytes;
        self
    }

    /// Sets [`ServerSettings::shutdown_timeout`].
    ///
    /// Default is [`DEFAULT_SHUTDOWN_TIMEOUT`].
    ///
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`]: crate::config::DEFAULT_SHUTDOWN_TIMEOUT
    pub fn shutdown_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// Sets [`ServerSettings::backlog`].
    ///
    /// Default is [`DEFAULT_BACKLOG`].
    ///
    /// [`DEFAULT_BACKLOG`]: crate::config::DEFAULT_BACKLOG
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
            component: component.into(),
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
        let settings = &self.settings;
        let account = Account::process(settings.host_memory_limit());
        self.metrics.track_process_account(&account);
        self.metrics
            .set_max_tenant_series(settings.max_tenant_series);
        let loader = crate::http::Loader::new(settings.loading, self.metrics.clone());
        let internal = crate::http::InternalTenants::default();
        let table = tenant_table(self, tenants, &tasks, &account, &loader, &internal, None)?;
        // HTTP/2 offers extended CONNECT (RFC 8441) when something can take
        // an upgrade: the hook, or a tenant's WebSocket handler (those a
        // reload adds later get WebSockets over HTTP/1.1).
        let upgrades =
            self.upgrade.is_some() || table.tenants.iter().any(|t| t.serves_websockets());
        let unrouted = Recorder::new(UNROUTED.into(), self.metrics.clone(), settings.access_log);
        let dispatch = Arc::new(Dispatch::new(table, unrouted, self.errors.clone()));
        internal.set(&dispatch);
        Ok(Server {
            inner: Arc::new(Inner {
                dispatch,
                internal,
                builder: self.clone(),
                tasks,
                conn: ConnBuilder::new(&settings.http, upgrades),
                connections: Arc::new(tokio::sync::Semaphore::new(settings.max_connections)),
                clients: crate::net::PerClient::new(settings.max_connections_per_client),
                account,
                loader,
                alt_svc: Default::default(),
                shed_at: Default::default(),
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
