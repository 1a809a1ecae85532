//! Tenants whose component is loaded when their first request comes
//! ([`Slot`]), and the server's [`Loader`] that bounds how many load at
//! once and unloads the idle and the least recently used.
//!
//! A slot is unloaded, loading, loaded or failed. A request that finds it
//! unloaded starts its load once one of the loader's `max_concurrent_loads`
//! permits is free, and waits for it up to `load_timeout`; the load goes on
//! when the request gives up, for the next one. Loads run on the loader's
//! threads at a low priority (nice 19), and so do the compiles wasmtime
//! spreads over cores from them: a storm of cold tenants takes the cores
//! the warm tenants leave idle, not theirs. Unloading drops the slot's handle on
//! what it serves with: requests in flight and open WebSockets hold their
//! own, so nothing running is cut, and the compiled code and the tenant's
//! idle instances go when the last of them ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use super::Served;
use crate::config::LoadSettings;
use crate::http::HostError;
use crate::metrics::Metrics;
use crate::wasm::{ComponentFile, FileStamp, GuestPre};

/// The nice value of the load threads: the lowest, so that compiling cold
/// tenants waits for warm tenants' requests (a nice 19 thread gets about
/// 1.5% of a core its serving threads want, and any core they leave
/// idle). At nice 10 a storm of 200 cold tenants still took a warm
/// tenant's p99 from 0.50 to 2.17 ms; at 19, 0.76 to 1.00 (bench/density.sh).
/// Not `SCHED_IDLE`: under full load cold tenants would never load.
const LOAD_NICE: libc::c_int = 19;

/// Makes what a tenant serves with from its loaded component.
pub(crate) type Serve = Box<dyn Fn(&GuestPre) -> Result<Served, crate::Error> + Send + Sync>;

/// One tenant's component, loaded on demand.
pub(crate) struct Slot {
    tenant: Arc<str>,
    file: ComponentFile,
    serve: Serve,
    state: Mutex<State>,
    /// When it last served a request, in ms of the loader's clock.
    last_used: AtomicU64,
    loader: Arc<Loader>,
}

enum State {
    Unloaded,
    Loading(watch::Receiver<bool>),
    Loaded {
        served: Arc<Served>,
        /// The component, handed on to a reload's tenant of the same file
        /// (when it is still `stamp`).
        pre: GuestPre,
        stamp: Option<FileStamp>,
    },
    /// The load failed; tried again once the file is no longer `stamp`.
    Failed {
        stamp: Option<FileStamp>,
        error: Arc<crate::Error>,
    },
}

impl Slot {
    /// The slot of `tenant`'s component `file`, served with `serve` once
    /// loaded; `loaded` when a reload hands on the component (of the same
    /// file, unchanged) its tenant's previous version had loaded.
    pub(crate) fn new(
        tenant: Arc<str>,
        file: ComponentFile,
        serve: Serve,
        loader: &Arc<Loader>,
        loaded: Option<GuestPre>,
    ) -> Arc<Self> {
        let slot = Arc::new(Self {
            tenant,
            file,
            serve,
            state: Mutex::new(State::Unloaded),
            last_used: AtomicU64::new(loader.now()),
            loader: loader.clone(),
        });
        if let Some(pre) = loaded {
            let stamp = slot.file.stamp();
            slot.finish(Ok(pre), stamp, None);
        }
        slot
    }

    /// What the tenant serves with: at once when loaded; else after its
    /// load, waited for up to the load timeout.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Arc<Served>, HostError> {
        let deadline = tokio::time::Instant::now() + self.loader.settings.load_timeout;
        let mut counted = false;
        loop {
            let mut done = {
                let mut state = self.lock();
                match &*state {
                    State::Loaded { served, .. } => {
                        self.last_used.store(self.loader.now(), Ordering::Relaxed);
                        return Ok(served.clone());
                    }
                    State::Failed { stamp, error } if *stamp == self.file.stamp() => {
                        return Err(HostError::Unloadable(error.clone()));
                    }
                    State::Loading(done) => done.clone(),
                    State::Unloaded | State::Failed { .. } => {
                        let (tell, done) = watch::channel(false);
                        *state = State::Loading(done.clone());
                        self.start_load(tell);
                        done
                    }
                }
            };
            if !counted {
                self.loader.metrics.cold_request();
                counted = true;
            }
            match tokio::time::timeout_at(deadline, done.wait_for(|done| *done)).await {
                Ok(Ok(_)) => continue,
                // Out of time; or the load's task was dropped (the runtime
                // is shutting down).
                Err(_) | Ok(Err(_)) => return Err(HostError::Loading),
            }
        }
    }

    /// The component it has loaded, for a reload's tenant of `file`: when
    /// it is the same file, unchanged since.
    pub(crate) fn hand_on(&self, file: &ComponentFile) -> Option<GuestPre> {
        let same = self.file.path == file.path
            && self.file.middleware == file.middleware
            && self.file.unsafe_allow_precompiled == file.unsafe_allow_precompiled;
        match &*self.lock() {
            State::Loaded { pre, stamp, .. }
                if same && stamp.is_some() && *stamp == file.stamp() =>
            {
                Some(pre.clone())
            }
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the component on a thread of its own once the loader lets it,
    /// then says so on `tell`.
    fn start_load(self: &Arc<Self>, tell: watch::Sender<bool>) {
        let slot = self.clone();
        tokio::spawn(async move {
            let permit = slot.loader.permits.clone().acquire_owned().await;
            let started = Instant::now();
            // Before the read: a file changed while it loads is loaded again.
            let stamp = slot.file.stamp();
            let (sent, loaded) = tokio::sync::oneshot::channel();
            let file = slot.file.clone();
            let loaded = match slot.loader.threads() {
                Ok(threads) => {
                    threads.spawn(move || {
                        let _permit = permit;
                        let _ = sent.send(file.load());
                    });
                    loaded.await.unwrap_or_else(|_| {
                        Err(crate::Error::Engine("the component's load panicked".into()))
                    })
                }
                Err(error) => Err(crate::Error::Engine(error.clone().into())),
            };
            slot.finish(loaded, stamp, Some(started));
            let _ = tell.send(true);
        });
    }

    /// Records the end of a load of the file as it was at `stamp`, that
    /// `started` (`None`: a component handed on, not loaded now).
    fn finish(
        self: &Arc<Self>,
        loaded: Result<GuestPre, crate::Error>,
        stamp: Option<FileStamp>,
        started: Option<Instant>,
    ) {
        let served = loaded.and_then(|pre| Ok(((self.serve)(&pre)?, pre)));
        let metrics = &self.loader.metrics;
        let took = started.map(|s| s.elapsed());
        match served {
            Ok((served, pre)) => {
                if let Some(took) = took {
                    metrics.component_load("loaded", took);
                    tracing::info!(
                        tenant = %self.tenant,
                        component = %self.file.path.display(),
                        elapsed_ms = crate::log::millis(took),
                        code_bytes = pre.code_size(),
                        "tenant's component loaded"
                    );
                }
                let code = pre.code_size();
                *self.lock() = State::Loaded {
                    served: Arc::new(served),
                    pre,
                    stamp,
                };
                self.last_used.store(self.loader.now(), Ordering::Relaxed);
                self.loader.loaded(self, code);
            }
            Err(error) => {
                if let Some(took) = took {
                    metrics.component_load("failed", took);
                }
                tracing::error!(
                    tenant = %self.tenant,
                    component = %self.file.path.display(),
                    error = %crate::log::chain(&error),
                    "tenant's component cannot be loaded: its requests get 500 until the file changes"
                );
                *self.lock() = State::Failed {
                    stamp,
                    error: Arc::new(error),
                };
            }
        }
    }

    /// Unloads it if it is loaded: its code size then.
    fn unload(&self) -> Option<usize> {
        let mut state = self.lock();
        let State::Loaded { pre, .. } = &*state else {
            return None;
        };
        let code = pre.code_size();
        *state = State::Unloaded;
        Some(code)
    }

    fn idle_since(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }
}

/// A server's loads of on-demand tenants: a few at a time, and unloaded
/// when idle or past the budget of loaded code.
pub(crate) struct Loader {
    settings: LoadSettings,
    permits: Arc<Semaphore>,
    /// Where loads run, and the compiles wasmtime spreads out from them
    /// (rayon's `par_iter` stays in the pool it is called from); started
    /// by the first load.
    threads: std::sync::OnceLock<Result<rayon::ThreadPool, String>>,
    /// The slots that are loaded (or were: gone ones are skipped), with
    /// the code each holds.
    loaded: Mutex<Vec<(Weak<Slot>, usize)>>,
    metrics: Arc<Metrics>,
    clock: Instant,
    sweeping: std::sync::atomic::AtomicBool,
}

impl Loader {
    pub(crate) fn new(settings: LoadSettings, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            settings,
            permits: Arc::new(Semaphore::new(settings.max_concurrent_loads.max(1))),
            threads: std::sync::OnceLock::new(),
            loaded: Mutex::default(),
            metrics,
            clock: Instant::now(),
            sweeping: Default::default(),
        })
    }

    /// The load threads, one per core, started when first asked for.
    fn threads(&self) -> &Result<rayon::ThreadPool, String> {
        self.threads.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(
                    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
                )
                .thread_name(|_| "catshost-load".into())
                .start_handler(|_| {
                    // On Linux a thread's nice value is its own (who = 0:
                    // the calling thread). Best effort: a failure leaves it
                    // at 0.
                    // SAFETY: setpriority has no memory preconditions.
                    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, LOAD_NICE) };
                })
                .build()
                .map_err(|e| format!("the load threads cannot be started: {e}"))
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Weak<Slot>, usize)>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `slot` has loaded `code` bytes: past the budget, the least recently
    /// used others are unloaded.
    fn loaded(self: &Arc<Self>, slot: &Arc<Slot>, code: usize) {
        self.start_sweeping();
        let mut loaded = self.lock();
        loaded.retain(|(other, _)| {
            other.strong_count() > 0 && !std::ptr::eq(other.as_ptr(), &**slot)
        });
        loaded.push((Arc::downgrade(slot), code));
        if let Some(budget) = Some(self.settings.max_loaded_code).filter(|&b| b > 0) {
            let mut total: usize = loaded.iter().map(|(_, code)| code).sum();
            while total > budget {
                let lru = loaded
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (other, _))| Some((i, other.upgrade()?)))
                    .filter(|(_, other)| !Arc::ptr_eq(other, slot))
                    .min_by_key(|(_, other)| other.idle_since());
                let Some((i, lru)) = lru else { break };
                loaded.swap_remove(i);
                if let Some(code) = lru.unload() {
                    total -= code;
                    self.unloaded(&lru, "budget");
                }
            }
        }
        self.publish(&loaded);
    }

    /// Unloads the slots idle for `idle_unload`.
    fn unload_idle(&self) {
        let idle = u64::try_from(self.settings.idle_unload.as_millis()).unwrap_or(u64::MAX);
        let now = self.now();
        let mut loaded = self.lock();
        loaded.retain(|(slot, _)| {
            let Some(slot) = slot.upgrade() else {
                return false;
            };
            if now.saturating_sub(slot.idle_since()) < idle {
                return true;
            }
            if slot.unload().is_some() {
                self.unloaded(&slot, "idle");
            }
            false
        });
        self.publish(&loaded);
    }

    fn unloaded(&self, slot: &Slot, reason: &'static str) {
        self.metrics.component_unloaded(reason);
        tracing::info!(tenant = %slot.tenant, reason, "tenant's component unloaded");
    }

    fn publish(&self, loaded: &[(Weak<Slot>, usize)]) {
        let live = loaded.iter().filter(|(slot, _)| slot.strong_count() > 0);
        let (count, code) = live.fold((0, 0), |(n, sum), (_, code)| (n + 1, sum + code));
        self.metrics.set_loaded(count, code);
    }

    /// Once: a task that unloads idle slots, every quarter of the idle
    /// time (between 100 ms and a minute), while the loader lives.
    fn start_sweeping(self: &Arc<Self>) {
        if self.settings.idle_unload.is_zero() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let every = (self.settings.idle_unload / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(60));
        let loader = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match loader.upgrade() {
                    Some(loader) => loader.unload_idle(),
                    None => break,
                }
            }
        });
    }
}
