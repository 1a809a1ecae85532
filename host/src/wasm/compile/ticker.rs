//! The engine's epoch: one thread that advances it, so guests that compute
//! without calling the host yield and meet their deadlines.

use std::sync::mpsc;
use std::thread::JoinHandle;

use wasmtime::Engine;

use crate::wasm::guest::EPOCH_TICK;

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
