//! Components, from bytes to something instances can be made of: the
//! process's [`Engine`] (wasmtime engines, the linkers that give guests
//! WASI, `wasi:http` and `catshost:websocket/sockets`, the epoch ticker),
//! reading and checking a component, the compile cache, `catshost check`'s
//! report, and the pre-instantiated [`GuestPre`]. It stands on the guest
//! layer (the store's context the linkers are for) and nothing above.

mod cache;
mod chain;
pub mod check;
mod component;
mod engine;
mod file;
mod pre;
mod ticker;
mod wasi_engine;
pub(crate) mod websocket_wit;

pub use chain::Middleware;
pub use component::Wasi;
pub use engine::Engine;
pub use file::{ComponentFile, FileStamp};
pub use pre::GuestPre;
