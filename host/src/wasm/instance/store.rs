//! A store for an instance, and reporting the instance made in it: what
//! every strategy (and the WebSocket layer) does the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;

use crate::ids::InstanceId;
use crate::wasm::compile::GuestPre;
use crate::wasm::guest::{GuestCtx, GuestError, Sandbox, Serving};

/// A store for the instance `id` of `pre`, counted in its tenant's
/// [instance cap](crate::wasm::guest::InstanceCap), held to its sandbox's
/// memory limit and yielding at every epoch tick.
pub(crate) fn new(
    pre: &GuestPre,
    sandbox: &Arc<Sandbox>,
    id: InstanceId,
) -> Result<Store<GuestCtx>, GuestError> {
    let permit = sandbox.instance_cap.take()?;
    let serving = Arc::new(Serving::new(id));
    let ctx = GuestCtx::new(serving, sandbox, permit).map_err(|e| GuestError::Preopen(e.into()))?;
    let mut store = Store::new(pre.engine(), ctx);
    store.data_mut().limiter.components(pre.hops());
    store.limiter(|ctx| &mut ctx.limiter);
    // Yield to the executor at every epoch tick (see `EPOCH_TICK`).
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Yield(1)));
    Ok(store)
}

/// Tells the sandbox's events that an instance was made, its making
/// `started` then, and returns how long it took. (A function, not a wrapper
/// around the instantiation: wrapping it would move its large future once
/// more per request.)
pub(crate) fn instantiated(sandbox: &Sandbox, started: Instant) -> Duration {
    let took = started.elapsed();
    if let Some(events) = &sandbox.events {
        events.created(took);
    }
    took
}
