//! A component compiled and pre-instantiated: what every instance strategy
//! makes its instances from.

use std::sync::Arc;

use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::call::Instances;
use super::ctx::GuestCtx;
use super::fresh::Fresh;
use super::limits::EpochTicker;
use super::sandbox::Sandbox;

/// A `wasi:http` component compiled and pre-instantiated, ready to make
/// instances. Cloning is cheap: clones share the compiled code.
#[derive(Clone)]
pub struct GuestPre {
    name: Arc<str>,
    pub(crate) proxy: ProxyPre<GuestCtx>,
    /// Keeps the engine's epoch advancing while this component lives, even
    /// if the [`super::Engine`] that loaded it is gone.
    _ticker: Arc<EpochTicker>,
}

impl GuestPre {
    pub(crate) fn new(name: &str, proxy: ProxyPre<GuestCtx>, ticker: Arc<EpochTicker>) -> Self {
        Self {
            name: name.into(),
            proxy,
            _ticker: ticker,
        }
    }

    /// The name the component was loaded under (its path for files).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same compiled component under another name.
    pub fn with_name(&self, name: &str) -> Self {
        Self {
            name: name.into(),
            ..self.clone()
        }
    }

    /// Instances of this component for one tenant, one fresh instance per
    /// request: nothing one request leaves in guest memory is seen by the
    /// next.
    pub fn fresh(&self, sandbox: Sandbox) -> Instances {
        let sandbox = Arc::new(sandbox);
        Instances::new(Arc::new(Fresh::new(self.clone(), sandbox.clone())), sandbox)
    }
}

impl std::fmt::Debug for GuestPre {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestPre")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
