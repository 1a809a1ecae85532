//! The WebAssembly side, in four layers that each import only the ones
//! below them (`.ci/layers` checks it):
//!
//! 1. [`guest`]: what one instance's store holds and runs within (the
//!    store's context, the tenant's [`Sandbox`], the guest's response body
//!    and errors);
//! 2. [`compile`]: the process's [`Engine`], components compiled and
//!    pre-instantiated ([`GuestPre`]);
//! 3. [`instance`]: a tenant's [`Instances`] and the [`Strategy`] that
//!    gives them out: a fresh store and instance for every request (WASI
//!    0.2's default), WASI 0.2 instances reused one request at a time, or
//!    WASI 0.3 instances that serve several at once;
//! 4. [`websocket`]: WebSocket handlers' instances, events and rooms.
//!
//! Nothing here sees a socket, a connection or an HTTP version, and nothing
//! here imports the HTTP side: it hands over a request and gets back a
//! response whose body the guest may still be writing, and the guest's run.
//! Below it are only plain data (`config`) and the outgoing HTTP client
//! (`net::Client`). The names below are the library's; inside `wasm/`, code
//! imports them from their layer.

pub mod compile;
pub mod guest;
pub mod instance;
pub mod websocket;

pub use compile::{ComponentFile, Engine, FileStamp, GuestPre, Middleware, Wasi, check};
pub use guest::{
    ConnectionPermit, CpuShare, GuestBody, GuestError, InstanceCap, InstanceEvents, InternalCall,
    LogBudget, MAX_CALL_DEPTH, MAX_OUTBOUND_PER_INSTANCE, MAX_OUTBOUND_PER_TENANT, MemoryExhausted,
    OpenedDir, OutboundConnections, Sandbox, Tenants, Upstream,
};
pub use instance::{
    Answer, BodySizeExceeded, Call, CallInfo, GuestRequest, Instances, RequestBody, Run, RunResult,
    Strategy,
};
pub use websocket::{
    InstanceGone, OpenError, OpenRequest, Opened, Outbox, Outgoing, SocketEvents, SocketMessage,
    Sockets,
};
