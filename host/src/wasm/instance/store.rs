//! A store for an instance, and making the instance in it: what every
//! strategy (and the WebSocket layer) does the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;

use crate::ids::InstanceId;
use crate::wasm::compile::GuestPre;
use crate::wasm::guest::{GuestCtx, GuestError, Sandbox, Serving};

/// A WASI 0.2 store for the instance `id` of `pre`, held to its sandbox's
/// memory limit and yielding at every epoch tick.
pub(crate) fn new(
    pre: &GuestPre,
    sandbox: &Arc<Sandbox>,
    id: InstanceId,
) -> Result<Store<GuestCtx>, GuestError> {
    let serving = Arc::new(Serving::new(id));
    let ctx = GuestCtx::new(serving, sandbox).map_err(|e| GuestError::Preopen(e.into()))?;
    let mut store = Store::new(pre.engine(), ctx);
    store.limiter(|ctx| &mut ctx.limiter);
    // Yield to the executor at every epoch tick (see `EPOCH_TICK`).
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Yield(1)));
    Ok(store)
}

/// Makes an instance with `make` (an `instantiate_async` on a store from
/// [`new`]) and tells the sandbox's events how long it took; the caller
/// times it out and records what a failure means for its request.
pub(crate) async fn instantiate<T>(
    sandbox: &Sandbox,
    make: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<(T, Duration)> {
    let started = Instant::now();
    let made = make.await?;
    let took = started.elapsed();
    if let Some(events) = &sandbox.events {
        events.created(took);
    }
    Ok((made, took))
}
