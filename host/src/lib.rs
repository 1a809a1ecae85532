//! catshost serves HTTP from sandboxed WebAssembly: it accepts connections,
//! speaks HTTP/1.1 and HTTP/2 itself (hyper), and hands every request to an
//! instance of a `wasi:http` component (wasmtime).
//!
//! ```no_run
//! # async fn example() -> Result<(), catshost::Error> {
//! let engine = catshost::Engine::new()?;
//! let component = engine.load_file("handler.wasm".as_ref())?;
//! let server = catshost::Server::builder().build(component);
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
//!
//! A request goes one way through the layers: `net` (listener, TLS) ->
//! `server` (a task per connection) -> `http` (hyper, routing, admission,
//! where the guest runs, framing) -> `wasm` (the tenant's instances) and
//! back as a response body; docs/architecture.md follows it file by file.

pub mod account;
pub mod admin;
mod bucket;
pub mod config;
mod error;
#[cfg(test)]
mod fuzz;
mod head;
pub mod http;
mod ids;
pub mod lifecycle;
mod log;
pub mod metrics;
pub mod net;
pub mod routing;
pub mod server;
pub mod wasm;

pub use config::{Pool, Reuse};
pub use error::{BoxError, Error};
pub use http::{UpgradeHook, Upgraded};
pub use ids::RequestId;
pub use lifecycle::{Ready, Stop};
pub use net::{Tls, TlsError};
pub use server::{
    Builder, DEFAULT_TENANT, EVENT_INTERVAL, InFlight, Server, Tenant, TenantComponent,
};
pub use wasm::{ComponentFile, Engine, GuestPre, Middleware, Wasi};

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
