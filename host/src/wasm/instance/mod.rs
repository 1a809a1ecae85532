//! A tenant's instances, and the one interface between the HTTP side and
//! the WebAssembly side: "serve this request with this tenant's component"
//! ([`Instances::serve`]), which gives back the guest's answer and its run
//! ([`Call`]).
//!
//! A [`Strategy`] decides where the instance comes from: `Fresh` makes one
//! per request (WASI 0.2's default), `Recycle` reuses WASI 0.2 instances
//! one request at a time, `Shared` serves several requests at once on each
//! WASI 0.3 instance. The pieces they share: the store (`store.rs`) and WASI
//! 0.2's request and answer (`p2.rs`). This layer stands on `compile`
//! (the [`GuestPre`] it instantiates) and `guest` (the store's context).

mod call;
mod fresh;
mod p2;
mod recycle;
mod shared;
pub(crate) mod store;

use std::sync::Arc;

pub use call::{
    Answer, BodySizeExceeded, Call, CallInfo, GuestRequest, RequestBody, Run, RunResult,
};
use fresh::Fresh;
use recycle::Recycle;
use shared::Shared;

use crate::wasm::compile::{GuestPre, Wasi};
use crate::wasm::guest::{GuestError, Sandbox};

/// How a tenant's requests get instances of its component.
pub trait Strategy: Send + Sync + 'static {
    /// Starts serving `request`: the call is under way once this returns,
    /// and goes on while its [`Run`] is polled.
    fn serve(&self, request: GuestRequest, info: CallInfo) -> Result<Call, GuestError>;
}

/// One tenant's instances: a component, the strategy that gives out its
/// instances, and the sandbox they run in. Cheap to clone.
#[derive(Clone)]
pub struct Instances {
    strategy: Arc<dyn Strategy>,
    sandbox: Arc<Sandbox>,
}

impl Instances {
    /// Instances of `pre` for one tenant, as its sandbox's
    /// [`Reuse`](crate::config::Reuse) says: for a WASI 0.2 component by default one fresh
    /// instance per request (nothing one request leaves in guest memory is
    /// seen by the next), else instances reused one request at a time; for
    /// a WASI 0.3 component instances that serve several requests at once.
    /// The instances are this tenant's alone, even when another tenant
    /// serves the same compiled component.
    pub fn new(pre: &GuestPre, sandbox: Sandbox) -> Self {
        let sandbox = Arc::new(sandbox);
        let reuse = sandbox.limits.reuse;
        let strategy: Arc<dyn Strategy> = match pre.wasi() {
            Wasi::P2 if reuse.reuse_count(false) == 1 => {
                Arc::new(Fresh::new(pre.clone(), sandbox.clone()))
            }
            Wasi::P2 => Arc::new(Recycle::new(pre.clone(), sandbox.clone())),
            Wasi::P3 => Arc::new(Shared::new(pre.clone(), sandbox.clone())),
        };
        Self { strategy, sandbox }
    }

    /// Serves `request` with an instance of the tenant's component.
    pub fn serve(&self, request: GuestRequest, info: CallInfo) -> Result<Call, GuestError> {
        self.strategy.serve(request, info)
    }

    /// What the instances are given and held to.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instances")
            .field("sandbox", &self.sandbox)
            .finish_non_exhaustive()
    }
}
