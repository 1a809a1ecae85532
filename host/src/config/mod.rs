//! Settings as plain data (`Clone + PartialEq`, no live objects): the
//! server's and its tenants' (`settings.rs`), HTTP's ([`HttpSettings`]), the
//! units they are written in ([`units`]), what `catshost serve` runs
//! ([`ServeSettings`]), and the tenant config file ([`file`](mod@file)); what guests
//! are given and held to ([`InstanceLimits`], [`WasiAccess`], the
//! [`outbound`] allow-list); which peers may say who their clients are
//! ([`TrustedProxies`]); and which of the host's own files their preopens
//! may not reach ([`check_preopens`]). It imports no other layer: every
//! other module reads its settings from here.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::os::fd::RawFd;
use std::path::PathBuf;

mod exposure;
pub mod file;
mod guest;
mod http;
mod limits;
pub mod outbound;
mod proxies;
mod setting;
mod settings;
pub mod units;

pub use exposure::{Grant, HostFile, PreopenError, Role, check_preopens};
pub use guest::{
    DEFAULT_IDLE_INSTANCE_TIMEOUT, DEFAULT_LOG_LINES_PER_SECOND, DEFAULT_MAX_MEMORY,
    DEFAULT_P3_CONCURRENT_REUSE_COUNT, DEFAULT_P3_REUSE_COUNT, DEFAULT_REQUEST_TIMEOUT,
    InstanceLimits, Pool, Preopen, Reuse, SocketLimits, WasiAccess,
};
pub use http::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_HTTP3_MAX_CONCURRENT_STREAMS, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_HEADER_SIZE, DEFAULT_WRITE_TIMEOUT, HttpSettings, HttpVersions,
};
pub use limits::{
    DEFAULT_MAX_WEBSOCKETS_PER_CLIENT, DEFAULT_TENANT_HOST_MEMORY, TenantLimits, memory_available,
    pool,
};
pub use outbound::{BadOrigin, Origin, Outbound, is_public};
pub use proxies::{BadNetwork, TrustedProxies};
pub use setting::Setting;
pub use settings::{
    DEFAULT_BACKLOG, DEFAULT_IDLE_UNLOAD, DEFAULT_LOAD_TIMEOUT, DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_CONCURRENT_LOADS, DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_MAX_LOADED_CODE, DEFAULT_MAX_TENANT_SERIES,
    DEFAULT_MAX_UPGRADES, DEFAULT_MAX_WEBSOCKET_MESSAGE, DEFAULT_MAX_WEBSOCKETS,
    DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_TLS_HANDSHAKE_TIMEOUT, DEFAULT_WEBSOCKET_IDLE_TIMEOUT,
    DEFAULT_WEBSOCKET_SOCKETS_PER_INSTANCE, FILE_ONLY, LIMIT_SETTINGS, LoadSettings, OTHER_TENANTS,
    SERVER_SETTINGS, ServerSettings,
};

/// The address `catshost serve` listens on by default: loopback only.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8080,
));

/// [`ServeSettings::admin_max_connections`] by default: 64. What uses the
/// admin endpoints holds a few connections at once (a kubelet opens one per
/// probe and closes it, a Prometheus server keeps one per target); 64 leaves
/// room for several scrapers and people, and bounds the descriptors the
/// admin listener can hold to that.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;

/// Where `catshost serve` listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// Bind this address.
    Addr(SocketAddr),
    /// Serve on this already-bound listening socket (`--listen-fd`, or
    /// systemd's LISTEN_FDS).
    Fd(RawFd),
}

/// Where the TLS certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
    /// A self-signed certificate made at start.
    SelfSigned,
}

/// What `catshost serve` runs, validated: from its flags, and with
/// [`ServeSettings::apply_file`] from a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeSettings {
    /// The component to serve; `None` serves the built-in demo (or the
    /// config file's tenants).
    pub component: Option<PathBuf>,
    /// Middleware components in front of `component`, in order (the first
    /// sees each request first).
    pub middleware: Vec<PathBuf>,
    /// The config file of tenants to serve, which replaces `component`,
    /// `listen` (unless it is a passed socket), `tls`, `server`, `limits`,
    /// `access` and `pool`.
    pub config: Option<PathBuf>,
    /// Reload the config file when it or a file it names changes.
    pub watch: bool,
    /// Where to listen.
    pub listen: Listen,
    /// Worker threads of the runtime that serves requests.
    pub workers: NonZeroUsize,
    /// One listener and single-threaded runtime per worker (SO_REUSEPORT).
    pub reuse_port: bool,
    /// Where to write the served URL once ready.
    pub ready_file: Option<PathBuf>,
    /// HTTPS when set.
    pub tls: Option<TlsSource>,
    /// The server's settings.
    pub server: ServerSettings,
    /// The limits of the one tenant served without a config file.
    pub limits: TenantLimits,
    /// What the one tenant's guests may reach.
    pub access: WasiAccess,
    /// The instance pool.
    pub pool: Pool,
    /// Where to serve the admin endpoints (`/healthz`, `/readyz`,
    /// `/metrics`); `None` serves none.
    pub admin_addr: Option<SocketAddr>,
    /// The most admin connections open at once; more are closed as they are
    /// accepted. Admin connections also count against the server's
    /// [`max_connections_per_client`](ServerSettings::max_connections_per_client)
    /// and are held to its header read, idle and write timeouts. Default is
    /// [`DEFAULT_ADMIN_MAX_CONNECTIONS`].
    pub admin_max_connections: usize,
    /// Whether the component may be precompiled native code, which runs
    /// outside the sandbox.
    pub unsafe_allow_precompiled: bool,
    /// The compile cache folder; `None` compiles at every start.
    pub cache: Option<PathBuf>,
}

impl ServeSettings {
    /// The settings of `file` in place of the flags it replaces: the
    /// server's settings (the access log stays as the flags say), the
    /// listening address (unless a socket was passed), the pool; guests of
    /// one tenant leave a core to the others unless the file says how many
    /// they may take.
    pub fn apply_file(&mut self, file: &file::FileConfig) {
        let workers = self.workers.get();
        self.server = ServerSettings {
            access_log: self.server.access_log,
            max_tenant_workers: Some(
                file.tenant_workers
                    .map_or(workers.saturating_sub(1).max(1), NonZeroUsize::get),
            ),
            ..file.server.clone()
        };
        // A middleware chain's instance holds one component instance of
        // each of its hops.
        self.pool = pool(
            file.max_concurrent_requests
                .get()
                .saturating_mul(file.longest_chain()),
            file.max_memory(),
        );
        if let Listen::Addr(_) = self.listen {
            self.listen = Listen::Addr(file.addr);
        }
    }
}

/// The compile cache by default: `$XDG_CACHE_HOME/catshost`, else
/// `$HOME/.cache/catshost`; none without either.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })?;
    Some(base.join("catshost"))
}

/// The number of cores, the default number of workers.
pub fn default_workers() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}
