//! A component compiled and pre-instantiated: what every instance strategy
//! makes its instances from.

use std::sync::Arc;

use wasmtime_wasi_http::handler::ProxyPre;

use super::component::Wasi;
use super::ticker::EpochTicker;
use super::websocket_wit::WebsocketPre;
use crate::wasm::guest::GuestCtx;

/// A `wasi:http` component compiled and pre-instantiated, ready to make
/// instances. Cloning is cheap: clones share the compiled code.
#[derive(Clone)]
pub struct GuestPre {
    name: Arc<str>,
    proxy: Arc<ProxyPre<GuestCtx>>,
    /// Its WebSocket handler, when it exports one (WASI 0.2 only).
    websocket: Option<Arc<WebsocketPre<GuestCtx>>>,
    /// The size of its compiled code image, in bytes.
    code: usize,
    /// Keeps the engine's epoch advancing while this component lives, even
    /// if the [`Engine`](super::Engine) that loaded it is gone.
    _ticker: Arc<EpochTicker>,
}

impl GuestPre {
    pub(crate) fn new(
        name: &str,
        proxy: ProxyPre<GuestCtx>,
        websocket: Option<WebsocketPre<GuestCtx>>,
        code: usize,
        ticker: Arc<EpochTicker>,
    ) -> Self {
        Self {
            name: name.into(),
            proxy: Arc::new(proxy),
            websocket: websocket.map(Arc::new),
            code,
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

    /// The size of its compiled code image in bytes (native code and the
    /// data wasmtime keeps beside it), shared by its clones.
    pub fn code_size(&self) -> usize {
        self.code
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

    /// Its `wasi:http` handler, pre-instantiated.
    pub(crate) fn proxy(&self) -> &ProxyPre<GuestCtx> {
        &self.proxy
    }

    /// Its WebSocket handler, pre-instantiated, when it exports one.
    pub(crate) fn websocket(&self) -> Option<&WebsocketPre<GuestCtx>> {
        self.websocket.as_deref()
    }

    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match &*self.proxy {
            ProxyPre::P2(pre) => pre.engine(),
            ProxyPre::P3(pre) => pre.engine(),
        }
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
