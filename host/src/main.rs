//! The `catshost` command: parse the command line, run, exit with a status.

mod cli;
mod reload;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use catshost::config::file::FileConfig;
use catshost::config::{Listen, ServeConfig, TlsSource};
use catshost::lifecycle::say;
use catshost::net::SniCerts;
use catshost::tenants::Components;
use catshost::{Runtime, Server, Stop, Tls};
use clap::Parser;

/// Scheduler ticks between two checks of I/O and timers (tokio: 61).
const EVENT_INTERVAL: u32 = 8;

/// mimalloc: wasmtime allocates and frees a great deal per instance; about
/// 4% less CPU per request than glibc's malloc (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    disable_library_backtraces();
    let cli = cli::Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        cli::Command::Serve(serve) => match serve.into_config() {
            Ok(config) => serve_command(config),
            Err(message) => {
                eprintln!("catshost: error: {message}");
                return ExitCode::from(2);
            }
        },
        cli::Command::Compile(args) => compile_command(&args),
        cli::Command::Check(args) => match check_command(&args) {
            Ok(true) => return ExitCode::SUCCESS,
            Ok(false) => return ExitCode::FAILURE,
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("catshost: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// wasmtime makes an error value each time a store is dropped, and with
/// `RUST_BACKTRACE=1` in the environment every one captures a backtrace:
/// ~6 us per request of a 19 us instance cost (bench/README.md). Library
/// backtraces are off unless `RUST_LIB_BACKTRACE` asks for them; panics
/// still follow `RUST_BACKTRACE`.
fn disable_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called first thing in `main`, before any other thread
        // exists that could read the environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

/// Log events to stderr, filtered by `RUST_LOG` (default: warnings, and
/// catshost's own info events: access log, guest output, start-up).
fn init_logging(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,catshost=info"));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter)
        // Its report of a failed write is an `eprintln!`, which panics when
        // stderr is a closed pipe: a log line is not worth a task.
        .log_internal_errors(false);
    match format {
        cli::LogFormat::Text => logger.with_ansi(std::io::stderr().is_terminal()).init(),
        cli::LogFormat::Json => logger
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

fn serve_command(mut config: ServeConfig) -> anyhow::Result<()> {
    // Everything that can fail is checked before anything is bound: the
    // config file, the certificates, the components, the socket passed in.
    if config.config.is_some() {
        // SIGHUP reloads the config once serving; until its handler is in
        // place (components may take a while to compile), it must not end
        // the process.
        // SAFETY: setting a signal's disposition to "ignore" is
        // async-signal-safe and touches no Rust state.
        unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    }
    let file = config.config.as_deref().map(FileConfig::load).transpose()?;
    let mut reload_plan = None;
    if let Some(file) = &file {
        let workers = config.workers.get();
        let mut server = file.server.clone();
        server
            .access_log(config.access_log)
            // Guests of one tenant leave a core to the others.
            .max_tenant_workers(Some(
                file.tenant_workers
                    .map_or(workers.saturating_sub(1).max(1), |n| n.get()),
            ));
        config.server = server;
        config.pool = catshost::Pool {
            instances: u32::try_from(file.max_concurrent_requests.get()).unwrap_or(u32::MAX),
            max_memory: file.max_memory(),
        };
        if let Listen::Addr(_) = config.listen {
            config.listen = Listen::Addr(file.addr);
        }
    }
    let versions = config.server.http_settings().versions;
    let mut tls = match &config.tls {
        None => None,
        Some(TlsSource::Files { cert, key }) => Some(Tls::from_pem_files(cert, key, versions)?),
        Some(TlsSource::SelfSigned) => {
            let (tls, fingerprint, _pem) = Tls::self_signed(versions)?;
            say(format_args!(
                "catshost: self-signed certificate for localhost, 127.0.0.1; SHA-256 {fingerprint}"
            ));
            Some(tls)
        }
    };
    let mut runtime = Runtime::with_pool(config.pool)?;
    if let Some(dir) = config.cache.clone() {
        runtime = runtime.with_compile_cache(dir);
    }
    let stop = Stop::new();
    let server = match &file {
        None => {
            let handler = match &config.component {
                Some(path) => with_spinner(path, || runtime.load_file(path))?,
                None => runtime.load_bytes("built-in demo", catshost::DEMO_COMPONENT)?,
            };
            config.server.stop(stop.clone()).build(handler)
        }
        Some(file) => {
            let started = std::time::Instant::now();
            let loaded = with_spinner(&file.path, || {
                catshost::tenants::load(
                    &runtime,
                    file,
                    &Components::default(),
                    config.workers.get(),
                )
            })?;
            warn_overcommitted(file);
            tracing::info!(
                tenants = loaded.tenants.len(),
                components = loaded.components.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "tenants loaded"
            );
            let sni = SniCerts::default();
            if loaded.certs.is_some() {
                loaded.install_certs(&sni);
                tls = Some(Tls::with_sni(sni.clone(), versions)?);
            }
            let components = loaded.components.clone();
            let server = config
                .server
                .stop(stop.clone())
                .build_tenants(loaded.tenants)?;
            reload_plan = Some(reload::Reloader::new(
                file,
                runtime.clone(),
                server.clone(),
                sni,
                components,
                config.workers.get(),
            ));
            server
        }
    };
    let admin = config.admin_addr.map(bind_admin).transpose()?;
    if let (Listen::Addr(_), Some(fd)) = (config.listen, systemd_listen_fd()) {
        config.listen = Listen::Fd(fd);
    }
    let listener = match config.listen {
        Listen::Fd(fd) => Some(listener_from_fd(fd)?),
        Listen::Addr(_) => None,
    };

    let backlog = config.server.backlog_len();
    let admin = admin.map(|listener| (listener, server.clone()));
    if config.reuse_port {
        let Listen::Addr(addr) = config.listen else {
            anyhow::bail!("--reuse-port binds its own sockets: it cannot serve on --listen-fd");
        };
        let ready_file = config.ready_file.clone();
        return serve_per_core(
            server,
            addr,
            backlog,
            config.workers.get(),
            tls,
            stop,
            ready_file,
            admin,
        );
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers.get())
        .thread_name("catshost-worker")
        // A guest runs up to an epoch tick per poll; check I/O and timers
        // every few polls rather than tokio's 61, so a worker busy with
        // computing guests still sees new requests and deadlines promptly.
        .event_interval(EVENT_INTERVAL)
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    tokio.block_on(async {
        let signals = tokio::spawn(catshost::lifecycle::stop_on_signals(stop));
        if let Some(reloader) = reload_plan {
            // SIGHUP is handled from here on (it would end the process).
            let watch = config.watch;
            let reloader = reloader.listen()?;
            tokio::spawn(reloader.run(watch));
        }
        spawn_admin(admin)?;
        let supervisor = announce_ready(&server, tls.is_some(), config.ready_file.clone());
        let served = match (listener, config.listen, tls) {
            (Some(listener), _, tls) => server.serve_listener(listener, tls).await,
            (None, Listen::Addr(addr), None) => server.serve_clear(addr).await,
            (None, Listen::Addr(addr), Some(tls)) => server.serve_tls(addr, tls).await,
            (None, Listen::Fd(_), _) => unreachable!("a listener was made for the fd"),
        };
        signals.abort();
        // The announcing task may not have run since the stop: say it now.
        supervisor.stopping();
        Ok::<_, anyhow::Error>(served?)
    })?;
    Ok(())
}

/// Warns when the tenants' admission limits add up to more than the
/// instance pool: busy tenants together could then take every slot.
pub(crate) fn warn_overcommitted(file: &FileConfig) {
    if let Some(sum) = file.overcommitted() {
        tracing::warn!(
            tenants_total = sum,
            pool = file.max_concurrent_requests.get(),
            "the tenants' max_concurrent_requests add up to more than [server] \
             max_concurrent_requests: busy tenants together can take every instance slot"
        );
    }
}

/// The spinner on screen, if any: log lines are written around it.
static SPINNER: RwLock<Option<indicatif::ProgressBar>> = RwLock::new(None);

/// Writes log lines to stderr, hiding the spinner while it does.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let spinner = SPINNER
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*spinner {
            Some(spinner) => spinner.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `catshost compile`: the component compiled for the engine `serve` uses
/// with default flags, written to `--output`.
fn compile_command(args: &cli::CompileArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("failed to read '{}'", args.component.display()))?;
    let runtime = Runtime::with_pool(catshost::Pool::default())?;
    let name = args.component.display().to_string();
    let compiled = with_spinner(&args.component, || runtime.precompile(&name, &bytes))?;
    std::fs::write(&args.output, &compiled)
        .with_context(|| format!("failed to write '{}'", args.output.display()))?;
    say(format_args!(
        "catshost: compiled {} ({} bytes) to {} ({} bytes) in {} ms",
        args.component.display(),
        bytes.len(),
        args.output.display(),
        compiled.len(),
        started.elapsed().as_millis()
    ));
    Ok(())
}

/// `catshost check`: prints the report; `Ok(false)` when the component
/// cannot be served.
fn check_command(args: &cli::CheckArgs) -> anyhow::Result<bool> {
    use catshost::wasm::check::Served;
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("failed to read '{}'", args.component.display()))?;
    let runtime = Runtime::new()?;
    let name = args.component.display().to_string();
    let report = with_spinner(&args.component, || runtime.check(&name, &bytes))?;
    println!("{name}: a component of {} bytes", bytes.len());
    match &report.served {
        Served::Proxy(export) => {
            println!("world: wasi:http/proxy (WASI 0.2), exporting {export}")
        }
        Served::P3Handler(export) => println!(
            "world: wasi:http handler of WASI 0.3 ({export}): catshost serves WASI 0.2's \
             wasi:http/incoming-handler only"
        ),
        Served::Nothing => {
            println!("world: none catshost serves (no wasi:http/incoming-handler@0.2.x export)")
        }
    }
    println!(
        "exports: {}",
        if report.exports.is_empty() {
            "nothing".into()
        } else {
            report.exports.join(", ")
        }
    );
    let missing = report.missing().count();
    println!(
        "imports: {}, {}",
        report.imports.len(),
        if missing == 0 {
            "all provided".to_string()
        } else {
            format!("{missing} not provided")
        }
    );
    let width = report
        .imports
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(0);
    for import in &report.imports {
        let status = match (&import.missing, import.grant) {
            (Some(why), _) => format!("MISSING: {why}"),
            (None, "") => "provided".to_string(),
            (None, grant) => format!("provided: {grant}"),
        };
        println!("  {:width$}  {status}", import.name);
    }
    if let Some(error) = &report.link_error
        && missing == 0
        && matches!(report.served, Served::Proxy(_))
    {
        println!("link: {error}");
    }
    let servable = report.is_servable();
    println!(
        "{}",
        if servable {
            "catshost can serve it"
        } else {
            "catshost cannot serve it"
        }
    );
    Ok(servable)
}

/// Shows a spinner naming the component while `load` compiles it, when
/// stderr is a terminal; the library logs the time it took either way.
fn with_spinner<T>(path: &Path, load: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return load();
    }
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let spinner = indicatif::ProgressBar::new_spinner().with_message(format!(
        "compiling {} ({})",
        path.display(),
        indicatif::HumanBytes(size)
    ));
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    *SPINNER
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(spinner.clone());
    let loaded = load();
    SPINNER
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    spinner.finish_and_clear();
    loaded
}

/// Binds the admin listener up front, so a taken port fails the start.
fn bind_admin(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("failed to listen on --admin-addr {addr}"))?;
    listener.set_nonblocking(true)?;
    say(format_args!(
        "catshost: admin endpoints on http://{}",
        listener.local_addr()?
    ));
    Ok(listener)
}

/// Serves the admin endpoints on the current runtime until it ends.
fn spawn_admin(admin: Option<(std::net::TcpListener, Server)>) -> anyhow::Result<()> {
    if let Some((listener, server)) = admin {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tokio::spawn(catshost::admin::serve(listener, server));
    }
    Ok(())
}

/// Once `server` is ready: the ready line on stderr, the ready file, and
/// READY=1 to a systemd-style supervisor; STOPPING=1 once it stops.
fn announce_ready(server: &Server, tls: bool, ready_file: Option<PathBuf>) -> Supervisor {
    let scheme = if tls { "https" } else { "http" };
    let ready = server.ready();
    let stop = server.stop().clone();
    let supervisor = Supervisor::default();
    let announcer = supervisor.clone();
    tokio::spawn(async move {
        let Some(addr) = ready.await else { return };
        let url = format!("{scheme}://{addr}");
        if let Some(path) = ready_file
            && let Err(error) = write_ready_file(&path, &url)
        {
            tracing::warn!(path = %path.display(), %error, "failed to write the ready file");
        }
        say(format_args!("catshost: serving {url}"));
        announcer.ready();
        stop.switched().await;
        announcer.stopping();
    });
    supervisor
}

/// What a systemd-style supervisor has been told: READY=1 once, then
/// STOPPING=1 once, whichever of the announcing task and the serving code
/// gets there first.
#[derive(Clone, Default)]
struct Supervisor(Arc<AtomicU8>);

impl Supervisor {
    const STARTING: u8 = 0;
    const READY: u8 = 1;
    const STOPPING: u8 = 2;

    fn ready(&self) {
        self.advance(Self::STARTING, Self::READY, "READY=1");
    }

    /// STOPPING=1, if READY=1 was sent and STOPPING=1 was not.
    fn stopping(&self) {
        self.advance(Self::READY, Self::STOPPING, "STOPPING=1");
    }

    fn advance(&self, from: u8, to: u8, state: &str) {
        let advanced = self
            .0
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire);
        if advanced.is_ok() {
            catshost::lifecycle::notify_supervisor(state);
        }
    }
}

/// Writes `url` to `path` whole or not at all (a reader polling for the
/// file never sees it half written).
fn write_ready_file(path: &Path, url: &str) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, format!("{url}\n"))?;
    std::fs::rename(&partial, path)
}

/// Per-core mode: `workers` listeners on `addr` (SO_REUSEPORT), each served
/// by a single-threaded runtime on its own thread (the first one also serves
/// the admin endpoints).
#[allow(clippy::too_many_arguments)]
fn serve_per_core(
    server: Server,
    addr: SocketAddr,
    backlog: u32,
    workers: usize,
    tls: Option<Tls>,
    stop: Stop,
    ready_file: Option<PathBuf>,
    mut admin: Option<(std::net::TcpListener, Server)>,
) -> anyhow::Result<()> {
    let bind = |addr| {
        catshost::net::bind(addr, backlog, true)
            .with_context(|| format!("failed to listen on {addr} with SO_REUSEPORT"))
    };
    let first = bind(addr)?;
    // With port 0 the others must share the port the first one got.
    let bound = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(bind(bound)?);
    }
    let mut threads = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let (server, tls, stop) = (server.clone(), tls.clone(), stop.clone());
        let ready_file = ready_file.clone();
        let admin = if i == 0 { admin.take() } else { None };
        let thread = std::thread::Builder::new()
            .name("catshost-worker".into())
            .spawn(move || -> anyhow::Result<()> {
                let stop_on_error = stop.clone();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .event_interval(EVENT_INTERVAL)
                    .enable_all()
                    .build()
                    .context("failed to start an async runtime")?;
                let served = runtime.block_on(async move {
                    let mut supervisor = None;
                    if i == 0 {
                        tokio::spawn(catshost::lifecycle::stop_on_signals(stop));
                        spawn_admin(admin)?;
                        supervisor = Some(announce_ready(&server, tls.is_some(), ready_file));
                    }
                    let served = server.serve_listener(listener, tls).await;
                    supervisor.inspect(Supervisor::stopping);
                    Ok::<_, anyhow::Error>(served?)
                });
                // One worker failing stops the others: the process must
                // not go on half-served (or with its signal task gone).
                if served.is_err() {
                    stop_on_error.switch();
                }
                served
            })
            .context("failed to start a worker thread")?;
        threads.push(thread);
    }
    let mut result = Ok(());
    for thread in threads {
        let served = thread
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked")));
        if result.is_ok() {
            result = served;
        }
    }
    result
}

/// The socket systemd passed (LISTEN_FDS, for this process), if any.
fn systemd_listen_fd() -> Option<RawFd> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let count: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    // sd_listen_fds(3): the first passed socket is fd 3.
    (pid == std::process::id() && count >= 1).then_some(3)
}

/// A listener on a duplicate of `fd`: the caller's descriptor stays open
/// whatever catshost does with its own.
fn listener_from_fd(fd: RawFd) -> anyhow::Result<std::net::TcpListener> {
    if fd < 0 {
        anyhow::bail!("--listen-fd {fd} is not a file descriptor");
    }
    // SAFETY: the descriptor is only borrowed for the `dup`; if it is not
    // open, `try_clone_to_owned` fails with EBADF.
    let owned = unsafe { BorrowedFd::borrow_raw(fd) }
        .try_clone_to_owned()
        .with_context(|| format!("--listen-fd {fd} is not an open file descriptor"))?;
    let socket = socket2::Socket::from(owned);
    let is_listening_tcp = socket.r#type().ok() == Some(socket2::Type::STREAM)
        && socket.is_listener().unwrap_or(false)
        && socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some();
    if !is_listening_tcp {
        anyhow::bail!("--listen-fd {fd} is not a listening TCP socket");
    }
    Ok(socket.into())
}
