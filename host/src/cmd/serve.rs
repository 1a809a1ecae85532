//! `catshost serve`: everything that can fail is checked before anything is
//! bound (the config file, the certificates, the components, the socket
//! passed in); then the server runs until it is stopped.

use std::net::SocketAddr;

use anyhow::Context;
use catshost::config::file::FileConfig;
use catshost::config::{Listen, ServeSettings, TlsSource};
use catshost::net::SniCerts;
use catshost::server::load::{self, Components};
use catshost::{Engine, Server, Tls};

use super::announce::announce_ready;
use super::logging::with_spinner;
use super::reload::Reloader;
use super::say;
use super::signals::StopSignals;

/// Everything `serve` set up before serving: what it serves and how.
struct Prepared {
    server: Server,
    tls: Option<Tls>,
    reloader: Option<Reloader>,
    admin: Option<std::net::TcpListener>,
    listener: Option<std::net::TcpListener>,
}

/// Runs `catshost serve` with `settings` until it is stopped.
pub fn run(mut settings: ServeSettings) -> anyhow::Result<()> {
    if settings.config.is_some() {
        // SIGHUP reloads the config once serving; until its handler is in
        // place (components may take a while to compile), it must not end
        // the process.
        // SAFETY: setting a signal's disposition to "ignore" is
        // async-signal-safe and touches no Rust state.
        unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    }
    let file = settings
        .config
        .as_deref()
        .map(FileConfig::load)
        .transpose()?;
    if let Some(file) = &file {
        settings.apply_file(file);
    }
    // Before anything is compiled (or loaded from the compile cache).
    settings.check_preopens(file.as_ref())?;
    if settings.server.http.http3 {
        anyhow::ensure!(
            !settings.reuse_port,
            "--http3 is not served in per-core mode (--reuse-port): serve it without"
        );
        anyhow::ensure!(
            settings.tls.is_some() || file.is_some(),
            "--http3 needs TLS (QUIC is encrypted): add --tls-cert and --tls-key, or \
             --tls-self-signed"
        );
    }
    let prepared = prepare(&settings, file.as_ref())?;
    if settings.reuse_port {
        return serve_per_core(&settings, prepared);
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.workers.get())
        .thread_name("catshost-worker")
        .event_interval(catshost::EVENT_INTERVAL)
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    tokio.block_on(serve(&settings, prepared))
}

/// The server, its certificates and its sockets, checked and bound.
fn prepare(settings: &ServeSettings, file: Option<&FileConfig>) -> anyhow::Result<Prepared> {
    let versions = settings.server.http.versions;
    let mut tls = match &settings.tls {
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
    let mut engine = Engine::with_pool(settings.pool)?;
    if let Some(dir) = settings.cache.clone() {
        engine = engine.with_compile_cache(dir);
    }
    let mut builder = Server::builder();
    builder
        .settings(settings.server.clone())
        .limits(settings.limits)
        .access(settings.access.clone());
    let (server, reloader) = match file {
        None => {
            let component = match &settings.component {
                Some(path) if settings.unsafe_allow_precompiled => with_spinner(path, || {
                    // SAFETY: --unsafe-allow-precompiled: the operator
                    // vouches for the file.
                    unsafe { engine.load_file_allowing_precompiled(path) }
                })?,
                Some(path) => with_spinner(path, || engine.load_file(path))?,
                None => engine.load_bytes("built-in demo", catshost::DEMO_COMPONENT)?,
            };
            let middleware = settings
                .middleware
                .iter()
                .map(|path| with_spinner(path, || engine.load_middleware_file(path)))
                .collect::<Result<Vec<_>, _>>()?;
            let component = engine.chain(&middleware, &component)?;
            (builder.build(component), None)
        }
        Some(file) => {
            let sni = SniCerts::default();
            let (server, components, certs) =
                build_tenants(&builder, &engine, file, &sni, settings)?;
            if certs {
                tls = Some(Tls::with_sni(sni.clone(), versions)?);
            }
            let reloader = Reloader::new(
                file,
                engine.clone(),
                server.clone(),
                sni,
                components,
                settings.workers.get(),
                settings.cache.clone(),
            );
            (server, Some(reloader))
        }
    };
    anyhow::ensure!(
        !settings.server.http.http3 || tls.is_some(),
        "[server] http3 needs TLS (QUIC is encrypted): give a tenant a certificate ([[tenant]] \
         tls_cert and tls_key)"
    );
    let admin = settings.admin_addr.map(bind_admin).transpose()?;
    let listen = match (settings.listen, catshost::net::systemd_listen_fd()) {
        (Listen::Addr(_), Some(fd)) | (Listen::Fd(fd), _) => Some(fd),
        (Listen::Addr(_), None) => None,
    };
    let listener = listen.map(catshost::net::listener_from_fd).transpose()?;
    Ok(Prepared {
        server,
        tls,
        reloader,
        admin,
        listener,
    })
}

/// The config file's tenants, loaded into a server; whether any
/// certificate was installed in `sni`.
fn build_tenants(
    builder: &catshost::Builder,
    engine: &Engine,
    file: &FileConfig,
    sni: &SniCerts,
    settings: &ServeSettings,
) -> anyhow::Result<(Server, Components, bool)> {
    let started = std::time::Instant::now();
    let loaded = with_spinner(&file.path, || {
        load::tenants(
            engine,
            file,
            &Components::default(),
            settings.workers.get(),
            false,
        )
    })?;
    warn_overcommitted(file);
    tracing::info!(
        tenants = loaded.tenants.len(),
        components = loaded.components.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "tenants loaded"
    );
    let certs = loaded.certs.is_some();
    loaded.install_certs(sni);
    let server = builder.build_tenants(loaded.tenants)?;
    Ok((server, loaded.components, certs))
}

/// Serves on the current (multi-threaded) runtime until the server stops.
async fn serve(settings: &ServeSettings, prepared: Prepared) -> anyhow::Result<()> {
    let Prepared {
        server,
        tls,
        reloader,
        admin,
        listener,
    } = prepared;
    let signals = tokio::spawn(StopSignals::catch()?.stop(server.stop().clone()));
    if let Some(reloader) = reloader {
        // SIGHUP is handled from here on (it would end the process).
        tokio::spawn(reloader.listen()?.run(settings.watch));
    }
    spawn_admin(admin, &server, settings.admin_max_connections)?;
    let http3 = tls.is_some() && settings.server.http.http3;
    let announced = announce_ready(&server, tls.is_some(), http3, settings.ready_file.clone());
    let served = match (listener, settings.listen, tls) {
        (Some(listener), _, tls) => server.serve_listener(listener, tls).await,
        (None, Listen::Addr(addr), None) => server.serve_clear(addr).await,
        (None, Listen::Addr(addr), Some(tls)) => server.serve_tls(addr, tls).await,
        (None, Listen::Fd(_), _) => unreachable!("a listener was made for the fd"),
    };
    signals.abort();
    drop(announced);
    Ok(served?)
}

/// Per-core mode: the first worker also handles the signals, serves the
/// admin endpoints and announces readiness.
fn serve_per_core(settings: &ServeSettings, prepared: Prepared) -> anyhow::Result<()> {
    let (Listen::Addr(addr), None) = (settings.listen, &prepared.listener) else {
        anyhow::bail!(
            "--reuse-port binds its own sockets: it cannot serve on --listen-fd or a socket \
             systemd passed (LISTEN_FDS)"
        );
    };
    let Prepared {
        server, tls, admin, ..
    } = prepared;
    let (first, https, ready_file) = (server.clone(), tls.is_some(), settings.ready_file.clone());
    let admin_max_connections = settings.admin_max_connections;
    server
        .serve_per_core(addr, settings.workers.get(), tls, move || {
            let signals = tokio::spawn(StopSignals::catch()?.stop(first.stop().clone()));
            spawn_admin(admin, &first, admin_max_connections)?;
            Ok((
                announce_ready(&first, https, false, ready_file),
                AbortOnDrop(signals),
            ))
        })
        .with_context(|| format!("failed to serve on {addr} with SO_REUSEPORT"))
}

/// Stops a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Warns when the tenants' instance caps add up to more than the instance
/// pool: busy tenants together could then take every slot.
pub fn warn_overcommitted(file: &FileConfig) {
    if let Some(sum) = file.overcommitted() {
        tracing::warn!(
            tenants_total = sum,
            pool = file.max_concurrent_requests.get(),
            "the tenants' instance caps (max_concurrent_requests, plus max_websockets / \
             websocket_sockets_per_instance for a WebSocket handler) add up to more than \
             [server] max_concurrent_requests: busy tenants together can take every \
             instance slot"
        );
    }
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

/// Serves the admin endpoints on the current runtime until it ends, at most
/// `max_connections` open at once.
fn spawn_admin(
    admin: Option<std::net::TcpListener>,
    server: &Server,
    max_connections: usize,
) -> std::io::Result<()> {
    if let Some(listener) = admin {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tokio::spawn(catshost::admin::serve(
            listener,
            server.clone(),
            max_connections,
        ));
    }
    Ok(())
}
