//! catshost serves HTTP from sandboxed WebAssembly: it accepts connections,
//! speaks HTTP/1.1 and HTTP/2 itself (hyper), and hands every request to a
//! fresh instance of a `wasi:http` component (wasmtime).
//!
//! ```no_run
//! # async fn example() -> Result<(), catshost::Error> {
//! let runtime = catshost::Runtime::new()?;
//! let handler = runtime.load_file("handler.wasm".as_ref())?;
//! let server = catshost::Server::builder().build(handler);
//!
//! let stop = server.stop().clone();
//! let ready = server.ready();
//! let serving = tokio::spawn({
//!     let server = server.clone();
//!     async move { server.serve_clear("127.0.0.1:0".parse().unwrap()).await }
//! });
//! let addr = ready.await.expect("the server failed to start");
//! println!("serving http://{addr}");
//! stop.switch(); // graceful: in-flight requests finish
//! serving.await.unwrap()?;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod config;
mod error;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod net;
pub mod routing;
mod server;
pub mod tenants;
pub mod wasm;

pub use error::{BoxError, Error};
pub use lifecycle::{Ready, Stop};
pub use net::{Tls, TlsError};
pub use server::{
    Builder, DEFAULT_BACKLOG, DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_TENANT,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT, InFlight, Server, Tenant, TenantLimits, UNROUTED,
};
pub use wasm::{Handler, Pool, Runtime};

/// catshost's version, with the wasmtime it runs guests on and the WASI
/// version of the world it serves.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (wasmtime ",
    env!("CATSHOST_WASMTIME_VERSION"),
    ", WASI ",
    env!("CATSHOST_WASI_VERSION"),
    ": wasi:http/proxy)"
);

/// The demo component served by `catshost serve` with no file: it answers
/// with the method, path and protocol of the request. Built from
/// `host/demo/demo.wat` at build time.
pub const DEMO_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo.wasm"));
