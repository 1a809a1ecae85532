//! Every setting of a server and of its tenants' limits, as plain data, and
//! the tables that name each setting once: its config key (the flag is the
//! same with dashes; a list's is its own, given once per value), what it
//! means, and how its text is read ([`Setting`]). `catshost
//! serve`'s flags and the config file's `[server]`, `[defaults]` and
//! `[[tenant]]` keys are all read through these tables; the defaults are
//! the `Default` impls here, and nowhere else.
//!
//! Where a setting is described, so that each thing is said once:
//!
//! - What it means (unit, what happens past it): the doc comment of its
//!   field in [`ServerSettings`], [`HttpSettings`], [`TenantLimits`],
//!   [`InstanceLimits`](super::InstanceLimits) or [`Reuse`](super::Reuse). That is the definition;
//!   the other places link to it or shorten it.
//! - Its default: the `Default` impl, with the `DEFAULT_*` constant whose
//!   doc gives the value in words; the field ends "Default is [the
//!   constant]." (in words where no public one exists: on, none, hyper's).
//! - The `Builder` setter (`catshost::Builder`): "Sets [the field]." and
//!   what the setter itself does, then "Default is X." (hyper's way).
//! - `help` in [`SERVER_SETTINGS`] and [`LIMIT_SETTINGS`]: the short form
//!   `catshost serve --help` prints, as a terminal cannot follow a link. It
//!   may leave things out, never say otherwise. Its `[default: ...]` is
//!   printed from the `Default` impls, except where the field is `None` for
//!   hyper's own default: then it is written in the help, as in the field.
//! - docs/config.md: one short line per config key, and the defaults a
//!   config file changes; it sends the reader here and to `--help`.

use std::time::Duration;

use super::http::{HttpSettings, HttpVersions};
use super::setting::{Setting, count, duration, setting, unset};
use super::units::{
    parse_bool, parse_count, parse_duration, parse_frame_size, parse_memory, parse_nonzero,
    parse_size, parse_size_u32, parse_size_usize, show_size,
};
use super::{TenantLimits, TrustedProxies};

/// [`ServerSettings::shutdown_timeout`] by default: 30 seconds.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// [`ServerSettings::backlog`] by default: 1024.
pub const DEFAULT_BACKLOG: u32 = 1024;
/// [`TenantLimits::max_concurrent_requests`] by default (a config file's
/// tenants take [`DEFAULT_TENANT_CONCURRENT_REQUESTS`]), and a config
/// file's instance pool, `[server] max_concurrent_requests`: 1024.
///
/// [`DEFAULT_TENANT_CONCURRENT_REQUESTS`]: super::file::DEFAULT_TENANT_CONCURRENT_REQUESTS
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1024;
/// [`TenantLimits::max_upgrades`] by default: 1024.
pub const DEFAULT_MAX_UPGRADES: usize = 1024;
/// [`TenantLimits::max_websockets`] by default: 1024.
pub const DEFAULT_MAX_WEBSOCKETS: usize = 1024;
/// [`TenantLimits::max_websocket_message`] by default: 64 KiB.
pub const DEFAULT_MAX_WEBSOCKET_MESSAGE: usize = 64 << 10;
/// [`TenantLimits::websocket_idle_timeout`] by default: 5 minutes.
pub const DEFAULT_WEBSOCKET_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// [`TenantLimits::websocket_sockets_per_instance`] by default: 256.
pub const DEFAULT_WEBSOCKET_SOCKETS_PER_INSTANCE: usize = 256;
/// [`ServerSettings::max_connections`] by default: 10,000.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// [`ServerSettings::max_connections_per_client`] by default: 1024.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 1024;
/// [`TenantLimits::max_body_size`] by default: 10 MiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 10 << 20;
/// [`ServerSettings::tls_handshake_timeout`] by default: 10 seconds.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// [`ServerSettings::max_tenant_series`] by default: 1,000.
pub const DEFAULT_MAX_TENANT_SERIES: usize = 1000;
/// The `tenant` label of the tenants past
/// [`ServerSettings::max_tenant_series`], counted together. No tenant of a
/// config file can be named so.
pub const OTHER_TENANTS: &str = "_other";
/// [`LoadSettings::max_loaded_code`] by default: 1 GiB.
pub const DEFAULT_MAX_LOADED_CODE: usize = 1 << 30;
/// [`LoadSettings::idle_unload`] by default: 10 minutes.
pub const DEFAULT_IDLE_UNLOAD: Duration = Duration::from_secs(600);
/// [`LoadSettings::max_concurrent_loads`] by default: 2 (wasmtime compiles
/// each component's functions on every core already).
pub const DEFAULT_MAX_CONCURRENT_LOADS: usize = 2;
/// [`LoadSettings::load_timeout`] by default: 10 seconds.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How a config file's tenants are loaded: on their first request (unless
/// `preload`), a few at a time, and unloaded when idle or when the loaded
/// code is over its budget (docs/config.md, Loading).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSettings {
    /// The most compiled code of on-demand tenants kept loaded, in bytes
    /// (each component's native code image); past it the least recently
    /// used are unloaded (never a preloaded one; a request in flight keeps
    /// what it runs on). 0 is no budget. Default is
    /// [`DEFAULT_MAX_LOADED_CODE`].
    pub max_loaded_code: usize,
    /// How long an on-demand tenant's component stays loaded without a
    /// request; zero keeps it until the budget needs its room. Default is
    /// [`DEFAULT_IDLE_UNLOAD`].
    pub idle_unload: Duration,
    /// The most components loading (read, compiled or taken from the
    /// compile cache, pre-instantiated) at once; more wait their turn, so a
    /// storm of cold tenants cannot take every core from the warm ones.
    /// Default is [`DEFAULT_MAX_CONCURRENT_LOADS`].
    pub max_concurrent_loads: usize,
    /// How long a request waits for its tenant's component to load; past it
    /// it gets 503 with `Retry-After` (the load goes on). Default is
    /// [`DEFAULT_LOAD_TIMEOUT`].
    pub load_timeout: Duration,
}

impl Default for LoadSettings {
    fn default() -> Self {
        Self {
            max_loaded_code: DEFAULT_MAX_LOADED_CODE,
            idle_unload: DEFAULT_IDLE_UNLOAD,
            max_concurrent_loads: DEFAULT_MAX_CONCURRENT_LOADS,
            load_timeout: DEFAULT_LOAD_TIMEOUT,
        }
    }
}

/// The settings of a server, its tenants aside: listener, stop, connections,
/// HTTP. Plain data; the server builder (`catshost::Server::builder`)
/// takes it whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// How long a stop waits for in-flight requests before cancelling them.
    /// Default is [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub shutdown_timeout: Duration,
    /// The listen queue length of listeners the server binds itself (not of
    /// a socket it is given). Default is [`DEFAULT_BACKLOG`].
    pub backlog: u32,
    /// The most connections open at once; more wait in the listen backlog
    /// (a permit is taken before each accept). Default is
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// The most connections open at once from one client (an IPv4 address,
    /// or the /64 network of an IPv6 one); more are closed as they are
    /// accepted. Default is [`DEFAULT_MAX_CONNECTIONS_PER_CLIENT`].
    pub max_connections_per_client: usize,
    /// The peers (load balancers) whose connections must open with a PROXY
    /// protocol header, v1 or v2, read within the header read timeout: the
    /// client it names is the connection's client for the per-client cap,
    /// the access log and the rest; a connection without a valid one is
    /// closed. From any other peer no header is read. Default is none.
    pub trusted_proxies: TrustedProxies,
    /// How long a TLS handshake may take; past it the connection is closed.
    /// The handshake runs in the connection's own task, never in the accept
    /// loop. Default is [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`].
    pub tls_handshake_timeout: Duration,
    /// Whether every request gets an access log line (an `info` event of
    /// target `catshost::access`, written when its response ends). Not a
    /// config key: `catshost serve --no-access-log` turns it off. Default is
    /// on.
    pub access_log: bool,
    /// The most worker threads one tenant's guests may run on at once, so
    /// that a tenant whose guests compute (or loop) cannot take every core
    /// from the others; each guest gives its worker up at every epoch tick.
    /// With a config file, `catshost serve` sets it to `[server]
    /// tenant_workers`, or `--workers` - 1 (at least 1) when the file does
    /// not say; without one, it sets none. Default is no limit.
    pub max_tenant_workers: Option<usize>,
    /// The most host memory, in bytes, every tenant's account together may
    /// hold (the process-wide guard, docs/limits.md): past it new
    /// connections are closed as they are accepted and what would add to
    /// an account fails as its limit would make it. `None` is half of the
    /// memory the process may use (its cgroup's limit, else the machine's:
    /// [`super::memory_available`]); `Some(0)` turns the guard off. Default
    /// is `None`.
    pub max_host_memory: Option<usize>,
    /// How on-demand tenants (a config file's) are loaded and unloaded.
    pub loading: LoadSettings,
    /// The most tenants with metric series of their own (0: no cap): the
    /// first to be counted (to have a request, an instance or a WebSocket)
    /// keep their `tenant` label; the others are counted together as
    /// `tenant="_other"` ([`OTHER_TENANTS`]), so that a scrape of 10,000
    /// tenants stays small. It applies to the server's
    /// [`Metrics`](crate::metrics::Metrics), shared with any other server
    /// built with them. Default is [`DEFAULT_MAX_TENANT_SERIES`].
    pub max_tenant_series: usize,
    /// Versions, timeouts and the HTTP/1 and HTTP/2 tunables.
    pub http: HttpSettings,
}

impl ServerSettings {
    /// The process-wide guard's limit in bytes (`usize::MAX`: none).
    pub fn host_memory_limit(&self) -> usize {
        match self.max_host_memory {
            Some(0) => usize::MAX,
            Some(limit) => limit,
            None => super::memory_available().map_or(usize::MAX, |bytes| {
                usize::try_from(bytes / 2).unwrap_or(usize::MAX)
            }),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            backlog: DEFAULT_BACKLOG,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            trusted_proxies: TrustedProxies::default(),
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            access_log: true,
            max_tenant_workers: None,
            max_host_memory: None,
            loading: LoadSettings::default(),
            max_tenant_series: DEFAULT_MAX_TENANT_SERIES,
            http: HttpSettings::default(),
        }
    }
}

const HTTP: Option<&str> = Some("HTTP");
const LIMITS: Option<&str> = Some("Limits");
const REUSE: Option<&str> = Some("Instance reuse");
const WEBSOCKETS: Option<&str> = Some("WebSockets");
/// The heading of the settings that apply to a config file's tenants only
/// (how they are loaded): keys of `[server]`, not flags of `catshost serve`
/// (whose server flags a config file replaces).
pub const FILE_ONLY: Option<&str> = Some("Tenants of a config file");
const LOADING: Option<&str> = FILE_ONLY;

/// The server settings, each once: flags of `catshost serve` and keys of a
/// config file's `[server]`.
pub const SERVER_SETTINGS: &[Setting<ServerSettings>] = &[
    setting!(backlog: [backlog] "N", parse_count, count, None,
        "The listen queue length of the socket catshost binds."),
    setting!(shutdown_timeout: [shutdown_timeout] "TIME", parse_duration, duration, None,
        "How long a stop waits for in-flight requests before cancelling them (ms, s or m)."),
    setting!(tls_handshake_timeout: [tls_handshake_timeout] "TIME", parse_duration, duration,
        Some("TLS"), "How long a TLS handshake may take."),
    setting!(max_connections: [max_connections] "N", parse_nonzero, count, LIMITS,
        "The most connections open at once; more wait in the listen backlog."),
    setting!(max_connections_per_client: [max_connections_per_client] "N", parse_nonzero, count,
        LIMITS, "The most connections open at once from one client (an IPv4 address, or an IPv6 \
         /64); more are closed as they are accepted."),
    setting!(max_host_memory: [max_host_memory] "SIZE", |t| parse_size_usize(t).map(Some), unset,
        LIMITS, "The most host memory all tenants' accounts hold together; past it new \
         connections are closed and what would add fails; 0 turns the guard off [default: half \
         of the memory the process may use (cgroup limit, else physical)]."),
    setting!(trusted_proxies: [trusted_proxies] each "trusted-proxy" "CIDR",
        |proxies: &mut TrustedProxies, text| proxies.add(text).map_err(|e| e.to_string()),
        LIMITS, "A load balancer's address or network (repeatable): its connections must open \
         with a PROXY protocol header (v1 or v2), whose client the per-client cap and the \
         access log then key on [default: none]."),
    setting!(max_loaded_code: [loading.max_loaded_code] "SIZE", parse_size_usize,
        |v: &usize| Some(show_size(*v as u64)), LOADING,
        "The most compiled code of on-demand tenants kept loaded (0: no budget); past it the \
         least recently used are unloaded."),
    setting!(idle_unload: [loading.idle_unload] "TIME", parse_duration, duration, LOADING,
        "How long an on-demand tenant's component stays loaded without a request (0: until the \
         budget needs its room)."),
    setting!(max_concurrent_loads: [loading.max_concurrent_loads] "N", parse_nonzero, count,
        LOADING, "The most components loading at once; more wait their turn."),
    setting!(load_timeout: [loading.load_timeout] "TIME", parse_duration, duration, LOADING,
        "How long a request waits for its tenant's component to load; past it: 503 with \
         Retry-After (the load goes on)."),
    setting!(max_tenant_series: [max_tenant_series] "N", parse_count, count, FILE_ONLY,
        "The most tenants with metric series of their own (0: no cap); the others are counted \
         together as tenant=\"_other\"."),
    setting!(http: [http.versions] "VERSIONS", |t: &str| t.parse::<HttpVersions>(),
        |v: &HttpVersions| Some(v.as_str().to_string()), HTTP,
        "The HTTP versions served: both, http1 or h2. Over TLS this is the ALPN list (both: h2 \
         and http/1.1, HTTP/1.1 when the client offers none); in cleartext, h2 means h2c by \
         prior knowledge."),
    setting!(header_read_timeout: [http.header_read_timeout] "TIME", parse_duration, duration,
        HTTP, "How long a client may take to send a request head; a new connection must send \
         its first request within it (TLS handshake aside). Also closes idle HTTP/1 keep-alive \
         connections."),
    setting!(idle_timeout: [http.idle_timeout] "TIME", parse_duration, duration, HTTP,
        "How long a connection with no request in flight stays open (HTTP/1 and HTTP/2)."),
    setting!(write_timeout: [http.write_timeout] "TIME", parse_duration, duration, HTTP,
        "How long a response's data may wait for a client that does not take it (a closed \
         HTTP/2 or TCP window); past it the connection is closed."),
    setting!(max_header_size: [http.max_header_size] "SIZE", parse_size_usize,
        |v: &usize| Some(show_size(*v as u64)), HTTP,
        "The largest request head (HTTP/1) or header list (HTTP/2); larger ones get 431."),
    setting!(http1_keep_alive: [http.http1_keep_alive] "BOOL", parse_bool, count, HTTP,
        "HTTP/1 keep-alive."),
    setting!(http1_max_headers: [http.http1_max_headers] "N", |t| parse_count(t).map(Some),
        unset, HTTP, "The most headers of an HTTP/1 request [default: 100]."),
    setting!(http2_max_concurrent_streams: [http.http2_max_concurrent_streams] "N",
        |t| parse_count(t).map(Some), unset, HTTP,
        "The most concurrent streams of an HTTP/2 connection [default: 200]."),
    setting!(http2_initial_stream_window: [http.http2_initial_stream_window] "SIZE",
        |t| parse_size_u32(t).map(Some), unset, HTTP,
        "HTTP/2 initial stream window [default: 1MiB]."),
    setting!(http2_initial_connection_window: [http.http2_initial_connection_window] "SIZE",
        |t| parse_size_u32(t).map(Some), unset, HTTP,
        "HTTP/2 initial connection window [default: 1MiB]."),
    setting!(http2_max_frame_size: [http.http2_max_frame_size] "SIZE",
        |t| parse_frame_size(t).map(Some), unset, HTTP,
        "HTTP/2 largest frame, 16KiB to 16MiB - 1 [default: 16KiB]."),
    setting!(http2_keep_alive_interval: [http.http2_keep_alive_interval] "TIME",
        |t| parse_duration(t).map(Some), unset, HTTP,
        "Interval of HTTP/2 keep-alive pings [default: no pings]."),
    setting!(http2_keep_alive_timeout: [http.http2_keep_alive_timeout] "TIME",
        |t| parse_duration(t).map(Some), unset, HTTP,
        "How long to wait for a keep-alive ping's answer [default: 20s]."),
    setting!(http2_max_pending_accept_reset_streams:
        [http.http2_max_pending_accept_reset_streams] "N", |t| parse_count(t).map(Some), unset,
        HTTP, "Streams a client may reset before the server accepts them (rapid reset) before \
         it gets GOAWAY [default: 20]."),
    setting!(http2_max_local_error_reset_streams: [http.http2_max_local_error_reset_streams]
        "N", |t| parse_count(t).map(Some), unset, HTTP,
        "Streams the server may reset for a client's protocol errors before it closes the \
         connection [default: 1024]."),
    setting!(http3: [http.http3] switch, HTTP,
        "Also serve HTTP/3 (QUIC) on the same port number over UDP, with the same \
         certificates; TCP responses advertise it with Alt-Svc. Needs TLS."),
    setting!(http3_max_concurrent_streams: [http.http3_max_concurrent_streams] "N",
        parse_nonzero_u32, count, HTTP,
        "The most request streams open at once on one HTTP/3 connection."),
];

/// A tenant's limits, each once: flags of `catshost serve` and keys of a
/// config file's `[defaults]` and `[[tenant]]`.
pub const LIMIT_SETTINGS: &[Setting<TenantLimits>] = &[
    setting!(request_timeout: [instance.request_timeout] "TIME", parse_duration, duration,
        LIMITS, "How long a guest may run for one request, response body included; past it: \
         504, or a cut response once the head is sent."),
    setting!(max_memory: [instance.max_memory] "SIZE", parse_memory,
        |v: &usize| Some(show_size(*v as u64)), LIMITS,
        "The most linear memory of an instance, all its memories together (bytes, KiB, MiB, \
         GiB; at most 4GiB); a guest that grows past it gets 500."),
    setting!(max_body_size: [max_body_size] "SIZE", parse_size, |v: &u64| Some(show_size(*v)),
        LIMITS, "The largest request body; larger ones get 413."),
    setting!(max_concurrent_requests: [max_concurrent_requests] "N", parse_nonzero, count,
        LIMITS, "The most requests running at once; more get 503 with Retry-After."),
    setting!(max_requests_per_second: [max_requests_per_second] "N",
        |t| parse_reuse_count(t).map(Some), unset, LIMITS,
        "The most requests admitted per second (a burst of up to a second's worth); more get \
         429 with Retry-After [default: no limit]."),
    setting!(out_of_service: [out_of_service] "BOOL", parse_bool, count, LIMITS,
        "Take the tenant out of service: its requests get 503 with Retry-After without \
         reaching its guests (in a config file, a reload turns it on or off)."),
    setting!(max_log_lines_per_second: [max_log_lines_per_second] "N", parse_reuse_count, count,
        LIMITS, "The most lines of guest output (stdout and stderr) logged per second; past it \
         lines are dropped, and counted in a warning."),
    setting!(websockets: [websockets] "BOOL", parse_bool, count, WEBSOCKETS,
        "Whether WebSocket upgrades go to the component's catshost:websocket/handler, when it \
         exports one (in a config file: only when the tenant's entry says so)."),
    setting!(max_websockets: [max_websockets] "N", parse_nonzero, count, WEBSOCKETS,
        "The most WebSockets open at once; past it an upgrade gets 503 with Retry-After."),
    setting!(max_websockets_per_client: [max_websockets_per_client] "N", parse_nonzero, count,
        WEBSOCKETS, "The most WebSockets open at once from one client (an IPv4 address, or an \
         IPv6 /64); past it an upgrade gets 429."),
    setting!(max_websocket_message: [max_websocket_message] "SIZE", parse_size_usize,
        |v: &usize| Some(show_size(*v as u64)), WEBSOCKETS,
        "The largest WebSocket message either way; a client's larger one closes its socket \
         with 1009."),
    setting!(websocket_idle_timeout: [websocket_idle_timeout] "TIME", parse_duration, duration,
        WEBSOCKETS, "How long a WebSocket may go without a message either way (pings do not \
         count) before it is closed with 1001."),
    setting!(websocket_sockets_per_instance: [websocket_sockets_per_instance] "N",
        parse_nonzero, count, WEBSOCKETS,
        "The most WebSockets one instance of the handler serves; 1 gives each its own."),
    setting!(max_tenant_host_memory: [max_host_memory] "SIZE", parse_size_usize,
        |v: &usize| Some(show_size(*v as u64)), LIMITS,
        "The most host memory the tenant's account holds: what its instances keep between \
         requests, its WebSockets' buffers and queues (docs/limits.md)."),
    setting!(preload: [preload] "BOOL", parse_bool, count, FILE_ONLY,
        "With a config file: load the tenant's component at start and keep it loaded, rather \
         than on its first request."),
    setting!(max_instance_reuse_count: [instance.reuse.max_instance_reuse_count] "N",
        |t| parse_reuse_count(t).map(Some), unset, REUSE,
        "The most requests one instance serves before a new one is made [default: 1 for WASI \
         0.2 components, a fresh instance each; 128 for WASI 0.3]. Above 1, state one request \
         leaves in the instance is seen by the tenant's next (docs/reuse.md)."),
    setting!(max_instance_concurrent_reuse_count:
        [instance.reuse.max_instance_concurrent_reuse_count] "N",
        |t| parse_reuse_count(t).map(Some), unset, REUSE,
        "The most requests one WASI 0.3 instance serves at once [default: 16]; WASI 0.2 \
         instances serve one at a time."),
    setting!(idle_instance_timeout: [instance.reuse.idle_instance_timeout] "TIME",
        parse_duration, duration, REUSE,
        "How long an instance with no request is kept for the next one."),
];

/// A reuse count: at least 1, at most `u32::MAX`.
fn parse_reuse_count(text: &str) -> Result<u32, String> {
    parse_nonzero_u32(text)
}

/// At least 1, at most `u32::MAX`.
fn parse_nonzero_u32(text: &str) -> Result<u32, String> {
    let n = parse_nonzero(text)?;
    u32::try_from(n).map_err(|_| format!("{n} is too large: at most {}", u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting reads back what it shows: `--help`'s defaults are
    /// values the setting accepts, and the tables name each key once.
    #[test]
    fn every_setting_reads_back_what_it_shows_and_is_named_once() {
        fn check<T: Default + PartialEq + std::fmt::Debug>(table: &[Setting<T>]) {
            for (i, setting) in table.iter().enumerate() {
                let defaults = T::default();
                if let Some(text) = setting.show(&defaults) {
                    let mut read = T::default();
                    setting.set(&mut read, &text).unwrap();
                    assert_eq!(read, defaults, "{}", setting.key);
                }
                assert!(
                    table[..i].iter().all(|s| s.key != setting.key),
                    "{} twice",
                    setting.key
                );
            }
        }
        check(SERVER_SETTINGS);
        check(LIMIT_SETTINGS);
    }

    #[test]
    fn settings_are_read_into_their_fields() {
        let mut settings = ServerSettings::default();
        let set = |settings: &mut ServerSettings, key: &str, text: &str| {
            let setting = SERVER_SETTINGS.iter().find(|s| s.key == key).unwrap();
            setting.set(settings, text)
        };
        set(&mut settings, "http2_max_frame_size", "32KiB").unwrap();
        set(&mut settings, "header_read_timeout", "5s").unwrap();
        set(&mut settings, "http", "h2").unwrap();
        assert_eq!(settings.http.http2_max_frame_size, Some(32 << 10));
        assert_eq!(settings.http.header_read_timeout, Duration::from_secs(5));
        assert_eq!(settings.http.versions, HttpVersions::H2);
        assert!(
            set(&mut settings, "http2_max_frame_size", "1KiB")
                .unwrap_err()
                .contains("out of range")
        );
        let mut limits = TenantLimits::default();
        let setting = LIMIT_SETTINGS
            .iter()
            .find(|s| s.key == "max_memory")
            .unwrap();
        setting.set(&mut limits, "1MiB").unwrap();
        assert_eq!(limits.instance.max_memory, 1 << 20);
    }
}
