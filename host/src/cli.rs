//! The command line: clap structs, and turning them into validated
//! settings in one place ([`Serve::settings`]). The server and limit flags
//! are made from the library's settings tables, so each setting's name,
//! help and default are written once, in `catshost::config`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::os::fd::RawFd;
use std::path::PathBuf;

use catshost::config::{
    self, LIMIT_SETTINGS, Listen, SERVER_SETTINGS, ServeSettings, ServerSettings, Setting,
    TenantLimits, TlsSource,
};
use catshost::config::{Preopen, WasiAccess};
use clap::{Arg, ArgAction, ArgGroup, ArgMatches, Args, FromArgMatches, Parser, Subcommand};

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
    /// A WASI 0.2 component's requests each run in a fresh instance by
    /// default; a WASI 0.3 component's instances serve up to 128 requests,
    /// 16 at once (see the instance reuse flags). The line
    /// `catshost: serving http://ADDR` (or https://) on stderr says the server
    /// is ready. SIGINT or SIGTERM stops it gracefully; a second one exits at
    /// once.
    Serve(Box<Serve>),

    /// Compile a component to native code ahead of time (a `.cwasm` file
    /// `catshost serve` loads in milliseconds), or fill the compile cache
    /// with every tenant of a config file (--config).
    ///
    /// The output runs only on this catshost build with the same engine
    /// settings, and `serve` takes it only with --unsafe-allow-precompiled:
    /// it is native code, so serve only `.cwasm` files you compiled
    /// yourself. `serve` keeps a compile cache of its own anyway, so this
    /// is for shipping compiled artifacts. With --config, the components
    /// are compiled into the compile cache `serve --config FILE` reads, with
    /// its engine settings, so that no tenant's first request compiles.
    Compile(CompileArgs),

    /// Tell what a component exports and imports and whether catshost can
    /// serve it, without serving it; with --config, whether each tenant of
    /// a config file can be served. Exits 0 when it can (all can), 1 when
    /// not.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The component (`.wasm` or `.wat`).
    #[arg(required_unless_present = "config", requires = "output")]
    pub component: Option<PathBuf>,

    /// Where to write the compiled component.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Compile every tenant's component of this config file into the
    /// compile cache instead.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["component", "output"])]
    pub config: Option<PathBuf>,

    /// With --config: the compile cache, as `serve --cache-dir` [default:
    /// $XDG_CACHE_HOME/catshost, else ~/.cache/catshost].
    #[arg(long, value_name = "DIR", requires = "config")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The component (`.wasm` or `.wat`; a precompiled `.cwasm` is refused,
    /// as `serve` refuses it by default).
    #[arg(required_unless_present = "config")]
    pub component: Option<PathBuf>,

    /// Check the config file and every tenant's component instead.
    #[arg(long, value_name = "FILE", conflicts_with = "component")]
    pub config: Option<PathBuf>,

    /// Also check this middleware, and that the chain of every one given
    /// (in order) in front of the component can be built.
    #[arg(long, value_name = "FILE", requires = "component")]
    pub middleware: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Serve {
    /// The component to serve (`.wasm`, or `.wat` text). Without it (and
    /// without --config), a built-in demo answers with the method, path,
    /// protocol, scheme and authority it saw.
    pub component: Option<PathBuf>,

    /// A WASI 0.3 middleware component (`wasi:http/middleware`) in front of
    /// the component; repeat it for a chain, the first given sees each
    /// request first. The component must be a WASI 0.3 handler
    /// (docs/middleware.md).
    #[arg(long, value_name = "FILE", requires = "component")]
    pub middleware: Vec<PathBuf>,

    /// Serve the tenants of this TOML file (docs/config.md): components
    /// routed by host and path, each with its own limits, environment,
    /// outbound allow-list and certificate. The listener, HTTP, limit and
    /// TLS flags are settings of the file then. SIGHUP reloads it.
    #[arg(long, value_name = "PATH", conflicts_with_all = [
        "component", "middleware", "addr", "reuse_port", "unsafe_allow_precompiled", SERVER_GROUP, LIMITS_GROUP, "tls_files", "guest_access",
    ])]
    pub config: Option<PathBuf>,

    /// With --config: also reload when the config file, a component, a
    /// middleware or a certificate changes (checked every second).
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

    /// Worker threads serving requests [default: the number of cores].
    #[arg(long)]
    pub workers: Option<NonZeroUsize>,

    /// Per-core mode: one listener per worker (SO_REUSEPORT), each served by
    /// its own single-threaded runtime, instead of one listener and a
    /// work-stealing runtime.
    #[arg(long, conflicts_with = "listen_fd")]
    pub reuse_port: bool,

    /// Write the served URL (`http://ADDR`) to this file once ready.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,

    /// Serve /healthz, /readyz and /metrics (Prometheus) on this address;
    /// a bare port means 127.0.0.1:PORT [default: none].
    #[arg(long, value_name = "ADDR", value_parser = config::units::parse_admin_addr)]
    pub admin_addr: Option<SocketAddr>,

    /// The most admin connections open at once; more are closed as they are
    /// accepted. They count against --max-connections-per-client too, and
    /// are cut at --header-read-timeout, --idle-timeout and --write-timeout.
    #[arg(long, value_name = "N", requires = "admin_addr",
        default_value_t = config::DEFAULT_ADMIN_MAX_CONNECTIONS,
        value_parser = config::units::parse_nonzero)]
    pub admin_max_connections: usize,

    /// Keep compiled components in this folder, so a component is compiled
    /// once [default: $XDG_CACHE_HOME/catshost or ~/.cache/catshost].
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the component at every start; keep nothing on disk.
    #[arg(long)]
    pub no_cache: bool,

    /// Serve the component even if it is precompiled native code (a
    /// `.cwasm` from `catshost compile`). Such a file runs outside the
    /// sandbox: whoever wrote it runs code in catshost, so allow only files
    /// you compiled yourself. With --config, a tenant's
    /// `unsafe_allow_precompiled = true` allows it for that tenant.
    #[arg(long)]
    pub unsafe_allow_precompiled: bool,

    /// No access log line per request (they are `info` events of target
    /// catshost::access).
    #[arg(long)]
    pub no_access_log: bool,

    #[command(flatten)]
    pub server: Flags<ServerSettings>,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub limits: Flags<TenantLimits>,

    #[command(flatten)]
    pub access: AccessArgs,
}

#[derive(Debug, Args)]
#[group(id = "tls_files", multiple = true)]
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
}

#[derive(Debug, Args)]
#[group(id = "guest_access", multiple = true)]
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
    /// Refused when it holds the compile cache, the component, --tls-cert
    /// or --tls-key, or a folder on the way to one (docs/limits.md).
    #[arg(long = "dir-rw", value_name = "HOST::GUEST", value_parser = |s: &str| Preopen::parse(s, true))]
    pub dirs_rw: Vec<Preopen>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.into(), value.into())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

impl Serve {
    /// The validated settings.
    pub fn settings(self) -> ServeSettings {
        let listen = match self.listen_fd {
            Some(fd) => Listen::Fd(fd),
            None => Listen::Addr(self.addr.unwrap_or(config::DEFAULT_ADDR)),
        };
        let tls = match (
            self.tls.tls_cert,
            self.tls.tls_key,
            self.tls.tls_self_signed,
        ) {
            (Some(cert), Some(key), _) => Some(TlsSource::Files { cert, key }),
            (_, _, true) => Some(TlsSource::SelfSigned),
            _ => None,
        };
        let server = ServerSettings {
            access_log: !self.no_access_log,
            ..self.server.settings
        };
        let limits = self.limits.settings;
        let access = WasiAccess {
            env: self.access.env,
            dirs: self
                .access
                .dirs
                .into_iter()
                .chain(self.access.dirs_rw)
                .collect(),
            ..WasiAccess::default()
        };
        ServeSettings {
            pool: config::pool(
                limits.instances().saturating_mul(1 + self.middleware.len()),
                limits.instance.max_memory,
            ),
            component: self.component,
            middleware: self.middleware,
            config: self.config,
            watch: self.watch,
            listen,
            workers: self.workers.unwrap_or_else(config::default_workers),
            reuse_port: self.reuse_port,
            ready_file: self.ready_file,
            tls,
            server,
            limits,
            access,
            admin_addr: self.admin_addr,
            admin_max_connections: self.admin_max_connections,
            unsafe_allow_precompiled: self.unsafe_allow_precompiled,
            cache: match self.no_cache {
                true => None,
                false => self.cache_dir.or_else(config::default_cache_dir),
            },
        }
    }
}

/// The flags of every server setting: the group `--config` excludes.
const SERVER_GROUP: &str = "server_settings";
/// The flags of every tenant limit.
const LIMITS_GROUP: &str = "limit_settings";

/// A settings type whose flags come from a table of the library's.
pub trait Table: Default + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Each setting, once.
    const SETTINGS: &'static [Setting<Self>];
    /// The clap group of its flags.
    const GROUP: &'static str;
}

impl Table for ServerSettings {
    const SETTINGS: &'static [Setting<Self>] = SERVER_SETTINGS;
    const GROUP: &'static str = SERVER_GROUP;
}

impl Table for TenantLimits {
    const SETTINGS: &'static [Setting<Self>] = LIMIT_SETTINGS;
    const GROUP: &'static str = LIMITS_GROUP;
}

/// The flags of a settings table: `--KEY-WITH-DASHES VALUE` for each
/// setting (a setting of several values: its own flag, repeatable), with
/// its help and default; the values given, read into `T`
/// (its defaults for the rest).
#[derive(Clone, Debug)]
pub struct Flags<T> {
    pub settings: T,
}

impl<T: Table> Args for Flags<T> {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        let defaults = T::default();
        let mut group = ArgGroup::new(T::GROUP).multiple(true);
        for setting in T::SETTINGS
            .iter()
            .filter(|s| s.heading != config::FILE_ONLY)
        {
            // As clap does with doc comments: no closing period.
            let mut help = setting.help.trim_end_matches('.').to_string();
            if let Some(default) = setting.show(&defaults) {
                help.push_str(&format!(" [default: {default}]"));
            }
            // Checked as clap parses, so a bad value is a usage error.
            let check = move |text: &str| {
                setting
                    .set(&mut T::default(), text)
                    .map(|()| text.to_string())
            };
            let action = match setting.is_list() {
                true => ArgAction::Append,
                false => ArgAction::Set,
            };
            let mut arg = Arg::new(setting.key)
                .long(setting.flag())
                .value_name(setting.value_name)
                .help(help)
                .help_heading(setting.heading)
                .action(action)
                .value_parser(check);
            if setting.switch {
                // `--http3` alone; a value only as `--http3=false`, so
                // the component's path after it is never taken for one.
                arg = arg
                    .num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true");
            }
            cmd = cmd.arg(arg);
            group = group.arg(setting.key);
        }
        cmd.group(group)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl<T: Table> FromArgMatches for Flags<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut settings = T::default();
        for setting in T::SETTINGS
            .iter()
            .filter(|s| s.heading != config::FILE_ONLY)
        {
            // Each value of a setting of several values; the one of others.
            for text in matches
                .get_many::<String>(setting.key)
                .into_iter()
                .flatten()
            {
                setting.set(&mut settings, text).map_err(|why| {
                    clap::Error::raw(clap::error::ErrorKind::ValueValidation, why)
                })?;
            }
        }
        Ok(Self { settings })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}
