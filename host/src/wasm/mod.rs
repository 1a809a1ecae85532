//! The WebAssembly side: one engine per process, each component compiled and
//! pre-instantiated once, and a fresh store and instance for every request.
//!
//! Nothing here sees a socket: the HTTP layer hands over a request and gets
//! back a response whose body the guest may still be writing.

mod component;
mod ctx;
mod handler;
mod output;

pub use component::Runtime;
pub use handler::{GuestBody, GuestError, GuestTasks, Handler, RequestInfo};
