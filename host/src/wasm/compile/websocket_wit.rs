//! The Rust side of wit/websocket's `catshost:websocket/websocket` world,
//! made by wasmtime's bindgen: the `sockets` interface a WebSocket handler
//! imports (implemented for the store's context by the WebSocket layer,
//! `wasm/websocket/link.rs`) and the `handler` it exports; linking the one
//! and finding the other in a component.

use wasmtime::component::HasSelf;

use crate::wasm::guest::GuestCtx;

wasmtime::component::bindgen!({
    path: "../wit/websocket",
    world: "catshost:websocket/websocket",
    exports: { default: async },
    require_store_data_send: true,
});

/// The interface a WebSocket handler exports, without its patch version.
const HANDLER: &str = "catshost:websocket/handler@0.1";

/// Links the host side of `catshost:websocket/sockets` into `linker`.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<GuestCtx>,
) -> wasmtime::Result<()> {
    catshost::websocket::sockets::add_to_linker::<GuestCtx, HasSelf<GuestCtx>>(linker, |ctx| ctx)
}

/// Whether `component` exports a WebSocket handler.
fn exports_handler(engine: &wasmtime::Engine, component: &wasmtime::component::Component) -> bool {
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| name.starts_with(HANDLER))
}

/// The WebSocket handler of `component` (pre-instantiated as `pre`), when
/// it exports one: a WASI 0.2 component's alone (a WASI 0.3 one is
/// refused, not served half).
pub(crate) fn handler_pre(
    engine: &wasmtime::Engine,
    name: &str,
    component: &wasmtime::component::Component,
    pre: &wasmtime_wasi_http::handler::ProxyPre<GuestCtx>,
) -> Result<Option<WebsocketPre<GuestCtx>>, crate::Error> {
    use wasmtime_wasi_http::handler::ProxyPre;
    if !exports_handler(engine, component) {
        return Ok(None);
    }
    match pre {
        ProxyPre::P2(pre) => WebsocketPre::new(pre.instance_pre().clone())
            .map(Some)
            .map_err(|e| crate::Error::WebSocketHandler {
                name: name.into(),
                reason: format!(
                    "not as catshost:websocket/handler@0.1.0 (wit/websocket) defines it: {e:#}"
                ),
            }),
        ProxyPre::P3(_) => Err(crate::Error::WebSocketHandler {
            name: name.into(),
            reason: "it is a WASI 0.3 component; WebSocket handlers are WASI 0.2 ones".into(),
        }),
    }
}
