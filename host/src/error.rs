//! The library's error type for starting a server: loading components and
//! binding listeners. Failures while serving a request are not errors of the
//! server: they become responses (see [`crate::http::HostError`]).

use std::net::SocketAddr;
use std::path::PathBuf;

/// A boxed error, the `source` of errors that come from wasmtime.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a server could not start.
///
/// `Display` says what failed at this level; the cause is in
/// [`source()`](std::error::Error::source). Print the whole chain with
/// `anyhow`'s `{:#}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The WebAssembly engine could not be configured.
    #[error("failed to configure the WebAssembly engine")]
    Engine(#[source] BoxError),
    /// A component file could not be read.
    #[error("failed to read the component '{}'", path.display())]
    ReadComponent {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A `.wat` file is not valid WebAssembly text.
    #[error("'{name}' is not valid WebAssembly text")]
    Wat {
        /// The component's name (its path for files).
        name: String,
        /// Where and why the text does not parse.
        #[source]
        source: wat::Error,
    },
    /// The file is WebAssembly but not a component.
    #[error(
        "'{name}' is {what}, not a WebAssembly component: build it as a `wasi:http` component \
         (for example `cargo build --target wasm32-wasip2`, or `wasm-tools component new`)"
    )]
    NotAComponent {
        /// The component's name (its path for files).
        name: String,
        /// What it is instead.
        what: &'static str,
    },
    /// The component failed to compile.
    #[error("failed to compile '{name}'")]
    Compile {
        /// The component's name (its path for files).
        name: String,
        /// Wasmtime's reason.
        #[source]
        source: BoxError,
    },
    /// The component does not export `wasi:http/incoming-handler`.
    #[error(
        "'{name}' does not export `wasi:http/incoming-handler@0.2.x` or `wasi:http/handler@0.3.x`, so catshost cannot serve it; \
         it exports: {exports}"
    )]
    NoHandlerExport {
        /// The component's name (its path for files).
        name: String,
        /// What it exports instead.
        exports: String,
    },
    /// The component exports `catshost:websocket/handler` in a way catshost
    /// cannot serve.
    #[error(
        "'{name}' exports a WebSocket handler catshost cannot serve: {reason} (docs/websockets.md)"
    )]
    WebSocketHandler {
        /// The component's name (its path for files).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The component imports something the host does not provide.
    #[error(
        "'{name}' needs imports that catshost does not provide: {missing} \
         (`catshost check` lists every import)"
    )]
    Link {
        /// The component's name (its path for files).
        name: String,
        /// The imports the host does not provide, by name, or what else is
        /// wrong when every name is provided (a function's type, say).
        missing: String,
        /// Wasmtime's reason, naming the import.
        #[source]
        source: BoxError,
    },
    /// A middleware component given where a handler was expected.
    #[error(
        "'{name}' is a middleware (it imports wasi:http/handler@0.3.x, its next hop): serve \
         it in front of a handler, with --middleware or a tenant's `middleware` \
         (docs/middleware.md)"
    )]
    IsMiddleware {
        /// The component's name (its path for files).
        name: String,
    },
    /// A component given as a middleware that is not one.
    #[error("'{name}' is not a middleware: {reason} (docs/middleware.md)")]
    NotMiddleware {
        /// The component's name (its path for files).
        name: String,
        /// What it is instead.
        reason: String,
    },
    /// A middleware chain that cannot be built: a middleware that is not
    /// one, or a handler it cannot stand in front of.
    #[error(
        "the middleware chain in front of '{handler}' cannot be built: '{name}' {reason} (docs/middleware.md)"
    )]
    Chain {
        /// The tenant's handler component.
        handler: String,
        /// The component at fault (a middleware, or the handler itself).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Precompiled native code (a `.cwasm`) given where it was not allowed.
    #[error(
        "'{name}' is precompiled native code (a `.cwasm` from `catshost compile`), which runs \
         outside the sandbox: whoever wrote it runs code in catshost. Serve the `.wasm` instead, \
         or, if you compiled this file yourself, allow it with --unsafe-allow-precompiled \
         (`unsafe_allow_precompiled = true` in its [[tenant]])"
    )]
    PrecompiledRefused {
        /// The component's name (its path for files).
        name: String,
    },
    /// A precompiled component (`.cwasm`) that this build cannot load.
    #[error(
        "'{name}' is a precompiled component this catshost cannot load (made by another \
         catshost build or engine configuration): compile it again with `catshost compile`"
    )]
    Precompiled {
        /// The component's name (its path for files).
        name: String,
        /// Wasmtime's reason.
        #[source]
        source: BoxError,
    },
    /// A listener could not be bound.
    #[error("failed to listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// HTTP/3's UDP socket could not be bound on the TCP listener's port.
    #[error("failed to serve HTTP/3 on UDP {addr}")]
    BindUdp {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// HTTP/3 was asked for without TLS, or where it is not served.
    #[error("{0}")]
    Http3(&'static str),
    /// HTTP/3's TLS configuration could not be made from the server's.
    #[error("failed to configure TLS for HTTP/3")]
    Http3Tls(#[source] BoxError),
    /// The listener failed in a way the server cannot recover from.
    #[error("the listener failed")]
    Listener(#[source] std::io::Error),
    /// A worker thread or its async runtime could not be started.
    #[error("failed to start a worker")]
    Worker(#[source] std::io::Error),
    /// A worker thread of per-core mode panicked.
    #[error("a worker thread panicked")]
    WorkerPanicked,
}
