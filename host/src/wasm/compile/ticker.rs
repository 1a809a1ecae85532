//! The engine's epoch: one thread that advances it, so guests that compute
//! without calling the host yield and meet their deadlines. It ticks only
//! while a guest may run ([`busy`]): with none for [`IDLE_TICKS`] ticks it
//! sleeps, so an idle server's core is never woken for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use wasmtime::Engine;

use crate::wasm::guest::{EPOCH_TICK, busy};

/// Ticks without a guest running or started before the ticker sleeps
/// (100 ms): a server between two requests keeps ticking, one left idle
/// stops.
const IDLE_TICKS: u32 = 50;

/// One thread that advances the engine's epoch every [`EPOCH_TICK`] while
/// a guest may run; dropping it stops and joins the thread.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("catshost-epoch".into())
            .spawn(move || {
                let stopped = || stopped.load(Ordering::SeqCst);
                let mut idle = 0;
                let mut seen = busy::Seen::default();
                while !stopped() {
                    // A sleep, not a wait on a lock a stop would wake (a
                    // futex): a stop waits for the tick to end.
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                    let (active, now) = busy::active_since(seen);
                    seen = now;
                    if active {
                        idle = 0;
                        continue;
                    }
                    idle += 1;
                    if idle >= IDLE_TICKS {
                        busy::sleep_until_busy(stopped);
                        idle = 0;
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
