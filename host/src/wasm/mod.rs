//! The WebAssembly side: one engine per process, each component compiled and
//! pre-instantiated once, and a fresh store and instance for every request.
//!
//! Nothing here sees a socket: the HTTP layer hands over a request and gets
//! back a response whose body the guest may still be writing.

mod cache;
pub mod check;
mod component;
mod ctx;
mod handler;
mod limits;
mod outbound;
mod output;

pub use component::{Pool, Runtime};
pub use ctx::{Preopen, WasiAccess};
pub use handler::{BodyLimit, GuestBody, GuestError, GuestTasks, Handler, RequestInfo};
pub use limits::{DEFAULT_MAX_MEMORY, DEFAULT_REQUEST_TIMEOUT, InstanceLimits, MemoryExhausted};
pub use outbound::{BadOrigin, Origin, Outbound, is_public};
