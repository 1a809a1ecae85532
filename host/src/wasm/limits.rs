//! What one instance may use: memory, tables, instances, and time. Time is
//! enforced by the handler's deadline; epoch interruption makes a guest that
//! computes without calling the host yield to it.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter};

/// How long a guest may run by default (response and body included).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The deadline of a request whose timeout is past what the clock can hold:
/// about 30 years, which it can.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);
/// The largest linear memory an instance may have by default: 128 MiB.
pub const DEFAULT_MAX_MEMORY: usize = 128 << 20;
/// The most elements a table of an instance may have (also the pool's
/// table size).
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;
/// The most core instances, tables and linear memories one component
/// instance may create (a component is made of a few core instances; the
/// pool caps the same per component). The guests of every language here use
/// at most 3 memories and 8 tables.
const MAX_INSTANCES: usize = 50;
pub(crate) const MAX_TABLES: usize = 32;
pub(crate) const MAX_MEMORIES: usize = 8;

/// How often the epoch advances: how long a busy guest runs before it yields
/// to the executor (so it cannot pin a worker) and its deadline is checked.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// How long an idle instance is kept for its next request by default.
pub const DEFAULT_IDLE_INSTANCE_TIMEOUT: Duration = Duration::from_secs(1);
/// How many requests one WASI 0.3 instance serves by default, in all and at
/// once (`wasmtime serve`'s defaults).
pub const DEFAULT_P3_REUSE_COUNT: u32 = 128;
pub const DEFAULT_P3_CONCURRENT_REUSE_COUNT: u32 = 16;

/// How an instance is reused: how many requests it serves in all and at
/// once, and how long it is kept idle. Unset counts take the component's
/// default: a fresh instance for every request for WASI 0.2 components
/// (nothing one request leaves in memory is seen by the next), and
/// [`DEFAULT_P3_REUSE_COUNT`] / [`DEFAULT_P3_CONCURRENT_REUSE_COUNT`] for
/// WASI 0.3 ones, whose world is made for it. Reuse gives up that
/// isolation between the requests of one tenant: what a request leaves in
/// the instance's memory (globals, caches, files it wrote to a preopen it
/// could already write) the next request of the same tenant may see.
/// Instances are never shared between tenants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reuse {
    /// The most requests one instance serves, in all.
    pub max_instance_reuse_count: Option<u32>,
    /// The most requests one instance serves at once (WASI 0.3 only; a WASI
    /// 0.2 instance serves one at a time).
    pub max_instance_concurrent_reuse_count: Option<u32>,
    /// How long an instance with no request is kept for the next one.
    pub idle_instance_timeout: Duration,
}

impl Default for Reuse {
    fn default() -> Self {
        Self {
            max_instance_reuse_count: None,
            max_instance_concurrent_reuse_count: None,
            idle_instance_timeout: DEFAULT_IDLE_INSTANCE_TIMEOUT,
        }
    }
}

impl Reuse {
    /// The most requests an instance serves in all: for a WASI 0.3
    /// component when `p3`.
    pub fn reuse_count(&self, p3: bool) -> u32 {
        let default = if p3 { DEFAULT_P3_REUSE_COUNT } else { 1 };
        self.max_instance_reuse_count.unwrap_or(default).max(1)
    }

    /// The most requests a WASI 0.3 instance serves at once.
    pub fn concurrent_reuse_count(&self) -> u32 {
        self.max_instance_concurrent_reuse_count
            .unwrap_or(DEFAULT_P3_CONCURRENT_REUSE_COUNT)
            .max(1)
    }
}

/// Limits of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceLimits {
    /// How long the guest may run, from the start of the request to the end
    /// of its response body. Past it: 504 before the response head, a cut
    /// response after.
    pub request_timeout: Duration,
    /// The largest linear memory, in bytes. A guest that grows past it traps
    /// (500).
    pub max_memory: usize,
    /// How the instance is reused.
    pub reuse: Reuse,
}

impl Default for InstanceLimits {
    fn default() -> Self {
        Self {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_memory: DEFAULT_MAX_MEMORY,
            reuse: Reuse::default(),
        }
    }
}

/// The error a guest traps with when it grows its memory past the limit.
#[derive(Debug, thiserror::Error)]
#[error("the guest's memories would grow to {desired} bytes, past its limit of {limit} bytes")]
pub struct MemoryExhausted {
    desired: usize,
    limit: usize,
}

/// The store's resource limiter. `max_memory` bounds all the linear
/// memories of an instance together: a component of several core modules,
/// each with its own memory, gets one budget, not one per memory.
pub(crate) struct Limiter {
    max_memory: usize,
    /// The bytes of every memory of the instance.
    used: usize,
}

impl Limiter {
    pub(crate) fn new(limits: &InstanceLimits) -> Self {
        Self {
            max_memory: limits.max_memory,
            used: 0,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.max_memory {
            // A trap, not a failed `memory.grow`: most guests cannot recover
            // from running out of memory, and the trap says why.
            return Err(MemoryExhausted {
                desired: total,
                limit: self.max_memory,
            }
            .into());
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// One thread that advances the engine's epoch every [`EPOCH_TICK`]; dropping
/// it stops and joins the thread.
pub(crate) struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("catshost-epoch".into())
            .spawn(move || {
                // Ends when the sender is dropped.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
