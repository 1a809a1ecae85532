//! Reloading a config file while serving: on SIGHUP, and with `--watch`
//! when a file it names changes. The new config is checked and its new
//! components compiled off the serving threads; only then are the tenants
//! (and certificates) swapped, all at once. A config that fails keeps the
//! old one serving.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use catshost::config::file::FileConfig;
use catshost::net::SniCerts;
use catshost::server::load::{self, Components};
use catshost::{Engine, Server};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// How often `--watch` looks at the files.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What a reload needs, and what the last good config left.
pub struct Reloader {
    path: PathBuf,
    engine: Engine,
    server: Server,
    sni: SniCerts,
    components: Components,
    threads: usize,
    /// The compile cache, which no tenant's writable preopen may reach.
    cache: Option<PathBuf>,
    /// The file as it was at start: its settings a reload cannot change
    /// (the listener, HTTP, the pool) are those, and TLS stays on or off.
    first: FileConfig,
    /// The instance pool's memory per slot, sized at start.
    slot_memory: usize,
    /// The files `--watch` looks at.
    watched: Vec<PathBuf>,
}

/// A [`Reloader`] that receives SIGHUP.
pub struct Listening {
    reloader: Reloader,
    hangup: Signal,
}

impl Reloader {
    pub fn new(
        file: &FileConfig,
        engine: Engine,
        server: Server,
        sni: SniCerts,
        components: Components,
        threads: usize,
        cache: Option<PathBuf>,
    ) -> Self {
        Self {
            path: file.path.clone(),
            engine,
            server,
            first: file.clone(),
            slot_memory: file.max_memory(),
            watched: watched_files(file),
            sni,
            components,
            threads,
            cache,
        }
    }

    /// Takes SIGHUP from now on. Call it on the runtime that will run it.
    pub fn listen(self) -> std::io::Result<Listening> {
        Ok(Listening {
            hangup: signal(SignalKind::hangup())?,
            reloader: self,
        })
    }
}

impl Listening {
    /// Reloads on every SIGHUP, and when `watch`, whenever a watched file
    /// changes. Runs until the runtime ends.
    pub async fn run(mut self, watch: bool) {
        let mut stamps = file_stamps(&self.reloader.watched);
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reason = tokio::select! {
                received = self.hangup.recv() => match received {
                    Some(()) => "SIGHUP",
                    None => return,
                },
                _ = tick.tick(), if watch => {
                    if file_stamps(&self.reloader.watched) == stamps {
                        continue;
                    }
                    "a watched file changed"
                }
            };
            // Taken before the files are read: a change that lands while
            // the reload reads or compiles is seen at the next tick.
            let before = file_stamps(&self.reloader.watched);
            self.reloader.reload(reason).await;
            // Files the reload added to the watch are stamped as it found
            // them (they are new to it).
            stamps = file_stamps(&self.reloader.watched);
            for (path, stamp) in &mut stamps {
                if let Some(old) = before.get(path) {
                    *stamp = *old;
                }
            }
        }
    }
}

impl Reloader {
    async fn reload(&mut self, reason: &'static str) {
        tracing::info!(config = %self.path.display(), reason, "reloading the config");
        let started = Instant::now();
        let (path, engine, components, threads, cache) = (
            self.path.clone(),
            self.engine.clone(),
            self.components.clone(),
            self.threads,
            self.cache.clone(),
        );
        let loaded = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let file = FileConfig::load(&path)?;
            // Before anything is compiled (or loaded from the compile
            // cache), as at start.
            file.check_preopens(cache.as_deref())?;
            // A tenant whose new version cannot be served keeps its old
            // one: the others' updates (and certificates) still apply.
            let loaded = load::tenants(&engine, &file, &components, threads, true)?;
            Ok((file, loaded))
        })
        .await;
        let (file, mut loaded) = match loaded {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(error)) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "config reload failed: the previous config keeps serving"
                );
                return;
            }
            Err(panicked) => {
                tracing::error!(error = %panicked, "config reload failed: the previous config keeps serving");
                return;
            }
        };
        self.watched = watched_files(&file);
        let tls = self.first.has_tls();
        if file.has_tls() != tls {
            tracing::error!(
                "config reload refused: it turns TLS {}, which takes a restart; the previous config keeps serving",
                if tls { "off" } else { "on" }
            );
            return;
        }
        if file.max_memory() > self.slot_memory {
            tracing::error!(
                "config reload refused: a tenant's max_memory ({} bytes) is larger than the \
                 instance slots sized at start ({} bytes), which takes a restart; the previous \
                 config keeps serving",
                file.max_memory(),
                self.slot_memory
            );
            return;
        }
        super::serve::warn_overcommitted(&file);
        if fixed_settings(&file) != fixed_settings(&self.first) {
            tracing::warn!(
                "the [server] settings changed: they apply at the next restart (tenants and certificates are reloaded now)"
            );
        }
        let count = loaded.tenants.len();
        let compiled = loaded.compiled;
        let tenants = std::mem::take(&mut loaded.tenants);
        if let Err(error) = self.server.replace_tenants(tenants) {
            tracing::error!(%error, "config reload failed: the previous config keeps serving");
            return;
        }
        loaded.install_certs(&self.sni);
        self.components = loaded.components;
        self.server.metrics().set_stale_tenants(loaded.stale.len());
        let stale = loaded.stale.len();
        for (tenant, error) in loaded.stale {
            tracing::error!(
                tenant,
                error = format!("{:#}", anyhow::Error::from(error)),
                "tenant reload failed: it keeps serving its previous component"
            );
        }
        tracing::info!(
            tenants = count,
            compiled,
            stale,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "config reloaded"
        );
    }
}

/// The settings a running server keeps until it restarts.
fn fixed_settings(file: &FileConfig) -> impl PartialEq + '_ {
    (
        file.addr,
        &file.server,
        file.max_concurrent_requests,
        file.tenant_workers,
    )
}

fn watched_files(file: &FileConfig) -> Vec<PathBuf> {
    let mut files = vec![file.path.clone()];
    let certs = file
        .tls
        .iter()
        .chain(file.tenants.iter().filter_map(|t| t.tls.as_ref()));
    for tls in certs {
        files.push(tls.cert.clone());
        files.push(tls.key.clone());
    }
    files.extend(file.tenants.iter().map(|t| t.component.clone()));
    files.extend(
        file.tenants
            .iter()
            .flat_map(|t| t.middleware.iter().cloned()),
    );
    files.sort();
    files.dedup();
    files
}

/// What a file looks like: its inode (a file replaced by a rename, as a
/// Kubernetes ConfigMap's are, is another), modification time and size.
type Stamp = Option<(u64, SystemTime, u64)>;

/// The stamp of each file (`None` when it is missing); symbolic links are
/// followed.
fn file_stamps(files: &[PathBuf]) -> HashMap<PathBuf, Stamp> {
    files
        .iter()
        .map(|path| {
            let stamp = std::fs::metadata(path)
                .ok()
                .and_then(|meta| Some((meta.ino(), meta.modified().ok()?, meta.len())));
            (path.clone(), stamp)
        })
        .collect()
}
