//! A component compiled and pre-instantiated: what every instance strategy
//! makes its instances from.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime_wasi_http::handler::{Proxy, ProxyPre};
use wasmtime_wasi_http::p3::bindings::ServicePre;

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
    /// Behind `proxy` when it is a middleware chain's first hop: the other
    /// hops in order, the handler last (chain.rs). Empty otherwise.
    next: Arc<[ServicePre<GuestCtx>]>,
    /// The names of a chain's middleware, in order.
    middleware: Arc<[Arc<str>]>,
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
            next: Arc::new([]),
            middleware: Arc::new([]),
            websocket: websocket.map(Arc::new),
            code,
            _ticker: ticker,
        }
    }

    /// A middleware chain: `first` takes the requests, `next` are the other
    /// hops in order (the handler, `handler`, last), `middleware` their
    /// names. Its name is the handler's; its code size all of theirs.
    pub(super) fn chain(
        first: ServicePre<GuestCtx>,
        next: Vec<ServicePre<GuestCtx>>,
        middleware: Vec<Arc<str>>,
        code: usize,
        handler: &GuestPre,
    ) -> Self {
        Self {
            name: handler.name.clone(),
            proxy: Arc::new(ProxyPre::P3(first)),
            next: next.into(),
            middleware: middleware.into(),
            websocket: None,
            code,
            _ticker: handler._ticker.clone(),
        }
    }

    /// How many components an instance of it holds: 1, or a middleware
    /// chain's hops.
    pub fn hops(&self) -> usize {
        1 + self.next.len()
    }

    /// The names of the middleware in front of its handler, in order.
    pub fn middleware(&self) -> &[Arc<str>] {
        &self.middleware
    }

    /// Makes an instance in `store`: of a chain, the hops after the first
    /// in order, each put in the store for the hop before it to call; then
    /// the first, which takes the requests.
    pub(crate) async fn instantiate(&self, store: &mut Store<GuestCtx>) -> wasmtime::Result<Proxy> {
        for pre in self.next.iter() {
            let hop = pre.instantiate_async(&mut *store).await?;
            let handle = hop.wasi_http_handler().func_handle();
            store.data_mut().add_hop(handle);
        }
        self.proxy.instantiate_async(store).await
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
