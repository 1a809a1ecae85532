//! The command line: clap structs, and turning them into validated settings
//! in one place ([`Serve::into_config`]).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use catshost::config::{self, Listen, ServeConfig, TlsSource};
use catshost::http::{HttpSettings, HttpVersions};
use catshost::wasm::Preopen;
use clap::{Args, Parser, Subcommand};

/// Serve HTTP from sandboxed wasi:http WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "catshost", version = catshost::VERSION, about)]
pub struct Cli {
    /// Log lines as text or as JSON objects, one per line (filter with
    /// RUST_LOG, e.g. `RUST_LOG=info,catshost::access=off`).
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per event.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a wasi:http component, or the tenants of a config file, over
    /// HTTP/1.1 and HTTP/2 (h2c, or HTTPS with ALPN).
    ///
    /// Every request runs in a fresh instance of its component. The line
    /// `catshost: serving http://ADDR` (or https://) on stderr says the server
    /// is ready. SIGINT or SIGTERM stops it gracefully; a second one exits at
    /// once.
    Serve(Box<Serve>),

    /// Compile a component to native code ahead of time (a `.cwasm` file
    /// `catshost serve` loads in milliseconds).
    ///
    /// The output runs only on this catshost build with the same engine
    /// settings; serve only `.cwasm` files you compiled yourself: they are
    /// native code. `serve` keeps a compile cache of its own anyway, so this
    /// is for shipping compiled artifacts.
    Compile(CompileArgs),

    /// Tell what a component exports and imports and whether catshost can
    /// serve it, without serving it. Exits 0 when it can, 1 when not.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The component (`.wasm` or `.wat`).
    pub component: PathBuf,

    /// Where to write the compiled component.
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The component (`.wasm`, `.wat` or `.cwasm`).
    pub component: PathBuf,
}

/// The flags whose settings a config file holds instead.
const CONFIG_CONFLICTS: [&str; 30] = [
    "component",
    "addr",
    "backlog",
    "shutdown_timeout",
    "tls_cert",
    "tls_key",
    "tls_self_signed",
    "tls_handshake_timeout",
    "request_timeout",
    "max_memory",
    "max_body_size",
    "max_concurrent_requests",
    "max_connections",
    "env",
    "dirs",
    "dirs_rw",
    "http",
    "header_read_timeout",
    "max_header_size",
    "http1_keep_alive",
    "http1_max_headers",
    "http2_max_concurrent_streams",
    "http2_initial_stream_window",
    "http2_initial_connection_window",
    "http2_max_frame_size",
    "http2_keep_alive_interval",
    "http2_keep_alive_timeout",
    "http2_max_pending_accept_reset_streams",
    "http2_max_local_error_reset_streams",
    "reuse_port",
];

#[derive(Debug, Args)]
pub struct Serve {
    /// The component to serve (`.wasm`, or `.wat` text). Without it (and
    /// without --config), a built-in demo answers with the method, path,
    /// protocol, scheme and authority it saw.
    pub component: Option<PathBuf>,

    /// Serve the tenants of this TOML file (docs/config.md): components
    /// routed by host and path, each with its own limits, environment,
    /// outbound allow-list and certificate. The listener, HTTP, limit and
    /// TLS flags are settings of the file then. SIGHUP reloads it.
    #[arg(long, value_name = "PATH", conflicts_with_all = CONFIG_CONFLICTS)]
    pub config: Option<PathBuf>,

    /// With --config: also reload when the config file, a component or a
    /// certificate changes (checked every second).
    #[arg(long, requires = "config")]
    pub watch: bool,

    /// Address to listen on. Port 0 picks a free port [default: 127.0.0.1:8080].
    #[arg(long, conflicts_with = "listen_fd")]
    pub addr: Option<SocketAddr>,

    /// Serve on this already-bound listening socket instead of binding one
    /// (systemd's LISTEN_FDS is used the same way when set). catshost does
    /// not close it.
    #[arg(long, value_name = "FD")]
    pub listen_fd: Option<RawFd>,

    /// The listen queue length of the socket catshost binds.
    #[arg(long, default_value = "1024")]
    pub backlog: u32,

    /// Worker threads serving requests [default: the number of cores].
    #[arg(long)]
    pub workers: Option<NonZeroUsize>,

    /// Per-core mode: one listener per worker (SO_REUSEPORT), each served by
    /// its own single-threaded runtime, instead of one listener and a
    /// work-stealing runtime.
    #[arg(long, conflicts_with = "listen_fd")]
    pub reuse_port: bool,

    /// How long a stop waits for in-flight requests before cancelling them
    /// (ms, s or m).
    #[arg(long, default_value = "30s", value_parser = config::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Write the served URL (`http://ADDR`) to this file once ready.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,

    /// Serve /healthz, /readyz and /metrics (Prometheus) on this address;
    /// a bare port means 127.0.0.1:PORT [default: none].
    #[arg(long, value_name = "ADDR", value_parser = config::parse_admin_addr)]
    pub admin_addr: Option<SocketAddr>,

    /// Keep compiled components in this folder, so a component is compiled
    /// once [default: $XDG_CACHE_HOME/catshost or ~/.cache/catshost].
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the component at every start; keep nothing on disk.
    #[arg(long)]
    pub no_cache: bool,

    /// No access log line per request (they are `info` events of target
    /// catshost::access).
    #[arg(long)]
    pub no_access_log: bool,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub access: AccessArgs,

    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// Serve HTTPS with this PEM certificate chain (leaf first).
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key (RSA, ECDSA or Ed25519) of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS with a certificate for localhost and 127.0.0.1 made at
    /// start (for development); its SHA-256 fingerprint is printed.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,

    /// How long a TLS handshake may take.
    #[arg(long, default_value = "10s", value_parser = config::parse_duration)]
    pub tls_handshake_timeout: Duration,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// How long a guest may run for one request, response body included;
    /// past it: 504, or a cut response once the head is sent.
    #[arg(long, default_value = "30s", value_parser = config::parse_duration)]
    pub request_timeout: Duration,

    /// The largest linear memory of an instance (bytes, KiB, MiB, GiB); a
    /// guest that grows past it gets 500.
    #[arg(long, default_value = "128MiB", value_parser = config::parse_size)]
    pub max_memory: u64,

    /// The largest request body; larger ones get 413.
    #[arg(long, default_value = "10MiB", value_parser = config::parse_size)]
    pub max_body_size: u64,

    /// The most requests running at once; more get 503 with Retry-After.
    #[arg(long, default_value = "1024")]
    pub max_concurrent_requests: NonZeroUsize,

    /// The most connections open at once; more wait in the listen backlog.
    #[arg(long, default_value = "10000")]
    pub max_connections: NonZeroUsize,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Guest access (none by default)")]
pub struct AccessArgs {
    /// Give guests the environment variable KEY=VALUE (repeatable). The
    /// host's environment is never inherited.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Give guests the host directory HOST, read-only, as GUEST (repeatable).
    #[arg(long = "dir", value_name = "HOST::GUEST", value_parser = |s: &str| Preopen::parse(s, false))]
    pub dirs: Vec<Preopen>,

    /// Give guests the host directory HOST, writable, as GUEST (repeatable).
    #[arg(long = "dir-rw", value_name = "HOST::GUEST", value_parser = |s: &str| Preopen::parse(s, true))]
    pub dirs_rw: Vec<Preopen>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.into(), value.into())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

#[derive(Debug, Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpArgs {
    /// The HTTP versions served: both, http1 or h2. Over TLS this is the
    /// ALPN list (both: h2 and http/1.1, HTTP/1.1 when the client offers
    /// none); in cleartext, h2 means h2c by prior knowledge.
    #[arg(long, default_value = "both")]
    pub http: HttpVersions,

    /// How long a client may take to send a request head (also closes idle
    /// HTTP/1 keep-alive connections and silent new connections).
    #[arg(long, default_value = "30s", value_parser = config::parse_duration)]
    pub header_read_timeout: Duration,

    /// The largest request head (HTTP/1) or header list (HTTP/2); larger
    /// ones get 431.
    #[arg(long, default_value = "64KiB", value_parser = config::parse_size)]
    pub max_header_size: u64,

    /// HTTP/1 keep-alive.
    #[arg(long, default_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub http1_keep_alive: bool,

    /// The most headers of an HTTP/1 request [default: 100].
    #[arg(long, value_name = "N")]
    pub http1_max_headers: Option<usize>,

    /// The most concurrent streams of an HTTP/2 connection [default: 200].
    #[arg(long, value_name = "N")]
    pub http2_max_concurrent_streams: Option<u32>,

    /// HTTP/2 initial stream window [default: 1MiB].
    #[arg(long, value_parser = config::parse_size, value_name = "SIZE")]
    pub http2_initial_stream_window: Option<u64>,

    /// HTTP/2 initial connection window [default: 1MiB].
    #[arg(long, value_parser = config::parse_size, value_name = "SIZE")]
    pub http2_initial_connection_window: Option<u64>,

    /// HTTP/2 largest frame, 16KiB to 16MiB [default: 16KiB].
    #[arg(long, value_parser = config::parse_size, value_name = "SIZE")]
    pub http2_max_frame_size: Option<u64>,

    /// Interval of HTTP/2 keep-alive pings [default: no pings].
    #[arg(long, value_parser = config::parse_duration, value_name = "TIME")]
    pub http2_keep_alive_interval: Option<Duration>,

    /// How long to wait for a keep-alive ping's answer [default: 20s].
    #[arg(long, value_parser = config::parse_duration, value_name = "TIME")]
    pub http2_keep_alive_timeout: Option<Duration>,

    /// Streams a client may reset before the server accepts them (rapid
    /// reset) before it gets GOAWAY [default: 20].
    #[arg(long, value_name = "N")]
    pub http2_max_pending_accept_reset_streams: Option<usize>,

    /// Streams the server may reset for a client's protocol errors before it
    /// closes the connection [default: 1024].
    #[arg(long, value_name = "N")]
    pub http2_max_local_error_reset_streams: Option<usize>,
}

impl Serve {
    /// The validated settings, or what is wrong with the flags.
    pub fn into_config(self) -> Result<ServeConfig, String> {
        let Serve {
            component,
            config,
            watch,
            addr,
            listen_fd,
            backlog,
            workers,
            reuse_port,
            shutdown_timeout,
            ready_file,
            admin_addr,
            cache_dir,
            no_cache,
            no_access_log,
            tls,
            limits,
            access,
            http,
        } = self;
        let listen = match listen_fd {
            Some(fd) => Listen::Fd(fd),
            None => Listen::Addr(addr.unwrap_or_else(config::default_addr)),
        };
        let handshake_timeout = tls.tls_handshake_timeout;
        let tls = match (tls.tls_cert, tls.tls_key, tls.tls_self_signed) {
            (Some(cert), Some(key), _) => Some(TlsSource::Files { cert, key }),
            (_, _, true) => Some(TlsSource::SelfSigned),
            _ => None,
        };
        let mut server = catshost::Server::builder();
        server
            .backlog(backlog)
            .access_log(!no_access_log)
            .shutdown_timeout(shutdown_timeout)
            .tls_handshake_timeout(handshake_timeout)
            .request_timeout(limits.request_timeout)
            .max_memory(to_usize(limits.max_memory, "--max-memory")?)
            .max_body_size(limits.max_body_size)
            .max_concurrent_requests(limits.max_concurrent_requests.get())
            .max_connections(limits.max_connections.get())
            .http(HttpSettings {
                versions: http.http,
                header_read_timeout: http.header_read_timeout,
                max_header_size: to_usize(http.max_header_size, "--max-header-size")?,
                http1_keep_alive: http.http1_keep_alive,
                http1_max_headers: http.http1_max_headers,
                http2_max_concurrent_streams: http.http2_max_concurrent_streams,
                http2_initial_stream_window: to_u32(
                    http.http2_initial_stream_window,
                    "--http2-initial-stream-window",
                )?,
                http2_initial_connection_window: to_u32(
                    http.http2_initial_connection_window,
                    "--http2-initial-connection-window",
                )?,
                http2_max_frame_size: frame_size(http.http2_max_frame_size)?,
                http2_keep_alive_interval: http.http2_keep_alive_interval,
                http2_keep_alive_timeout: http.http2_keep_alive_timeout,
                http2_max_pending_accept_reset_streams: http.http2_max_pending_accept_reset_streams,
                http2_max_local_error_reset_streams: http.http2_max_local_error_reset_streams,
            });
        for (key, value) in &access.env {
            server.env(key, value);
        }
        for dir in access.dirs.into_iter().chain(access.dirs_rw) {
            server.preopen(dir);
        }
        let pool = catshost::Pool {
            instances: u32::try_from(limits.max_concurrent_requests.get()).unwrap_or(u32::MAX),
            max_memory: to_usize(limits.max_memory, "--max-memory")?,
        };
        Ok(ServeConfig {
            pool,
            component,
            config,
            watch,
            access_log: !no_access_log,
            listen,
            workers: workers.unwrap_or_else(config::default_workers),
            reuse_port,
            ready_file,
            tls,
            server,
            admin_addr,
            cache: if no_cache {
                None
            } else {
                cache_dir.or_else(config::default_cache_dir)
            },
        })
    }
}

fn to_usize(value: u64, flag: &str) -> Result<usize, String> {
    usize::try_from(value).map_err(|_| format!("{flag} {value} is too large"))
}

fn to_u32(value: Option<u64>, flag: &str) -> Result<Option<u32>, String> {
    value.map(|v| config::size_u32(v, flag)).transpose()
}

fn frame_size(value: Option<u64>) -> Result<Option<u32>, String> {
    value
        .map(|v| config::http2_frame_size(v, "--http2-max-frame-size"))
        .transpose()
}
