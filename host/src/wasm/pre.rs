//! A component compiled and pre-instantiated: what every instance strategy
//! makes its instances from.

use std::sync::Arc;

use wasmtime_wasi_http::handler::ProxyPre;

use super::call::{Instances, Strategy};
use super::ctx::GuestCtx;
use super::engine::Wasi;
use super::fresh::Fresh;
use super::limits::EpochTicker;
use super::recycle::Recycle;
use super::sandbox::Sandbox;
use super::shared::Shared;
use super::websocket::{SocketLimits, Sockets, WebsocketPre};

/// A `wasi:http` component compiled and pre-instantiated, ready to make
/// instances. Cloning is cheap: clones share the compiled code.
#[derive(Clone)]
pub struct GuestPre {
    name: Arc<str>,
    pub(crate) proxy: Arc<ProxyPre<GuestCtx>>,
    /// Its WebSocket handler, when it exports one (WASI 0.2 only).
    websocket: Option<Arc<WebsocketPre<GuestCtx>>>,
    /// Keeps the engine's epoch advancing while this component lives, even
    /// if the [`super::Engine`] that loaded it is gone.
    _ticker: Arc<EpochTicker>,
}

impl GuestPre {
    pub(crate) fn new(
        name: &str,
        proxy: ProxyPre<GuestCtx>,
        websocket: Option<WebsocketPre<GuestCtx>>,
        ticker: Arc<EpochTicker>,
    ) -> Self {
        Self {
            name: name.into(),
            proxy: Arc::new(proxy),
            websocket: websocket.map(Arc::new),
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

    /// The WASI version the component is served as.
    pub fn wasi(&self) -> Wasi {
        match &*self.proxy {
            ProxyPre::P2(_) => Wasi::P2,
            ProxyPre::P3(_) => Wasi::P3,
        }
    }

    /// Whether the component exports a WebSocket handler
    /// (`catshost:websocket/handler`).
    pub fn serves_websockets(&self) -> bool {
        self.websocket.is_some()
    }

    /// The WebSocket side of one tenant, when the component exports a
    /// handler: instances made as they are needed, in `sandbox`, apart from
    /// those that serve its HTTP requests.
    /// Its instances run on `tasks`, for a stop to wait on.
    pub fn sockets(
        &self,
        sandbox: Sandbox,
        limits: SocketLimits,
        tasks: tokio_util::task::TaskTracker,
    ) -> Option<Sockets> {
        let pre = self.websocket.as_deref()?.clone();
        Some(Sockets::new(
            self.clone(),
            pre,
            Arc::new(sandbox),
            limits,
            tasks,
        ))
    }

    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match &*self.proxy {
            ProxyPre::P2(pre) => pre.engine(),
            ProxyPre::P3(pre) => pre.engine(),
        }
    }

    /// Instances of this component for one tenant, as its sandbox's
    /// [`super::Reuse`] says: for a WASI 0.2 component by default one fresh
    /// instance per request (nothing one request leaves in guest memory is
    /// seen by the next), else instances reused one request at a time; for
    /// a WASI 0.3 component instances that serve several requests at once.
    /// The instances are this tenant's alone, even when another tenant
    /// serves the same compiled component.
    pub fn instances(&self, sandbox: Sandbox) -> Instances {
        let sandbox = Arc::new(sandbox);
        let reuse = sandbox.limits.reuse;
        let strategy: Arc<dyn Strategy> = match self.wasi() {
            Wasi::P2 if reuse.reuse_count(false) == 1 => {
                Arc::new(Fresh::new(self.clone(), sandbox.clone()))
            }
            Wasi::P2 => Arc::new(Recycle::new(self.clone(), sandbox.clone())),
            Wasi::P3 => Arc::new(Shared::new(self.clone(), sandbox.clone())),
        };
        Instances::new(strategy, sandbox)
    }
}

impl std::fmt::Debug for GuestPre {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestPre")
            .field("name", &self.name)
            .field("wasi", &self.wasi())
            .finish_non_exhaustive()
    }
}
