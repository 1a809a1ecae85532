//! The WebAssembly side: one engine per process, each component compiled and
//! pre-instantiated once ([`GuestPre`]), and a tenant's instances
//! ([`Instances`]) that serve its requests through one interface
//! ([`Strategy`]): a fresh store and instance for every request (WASI 0.2's
//! default), WASI 0.2 instances reused one request at a time, or WASI 0.3
//! instances that serve several at once.
//!
//! Nothing here sees a socket, a connection or an HTTP version, and nothing
//! here imports the HTTP side: it hands over a request and gets back a
//! response whose body the guest may still be writing, and the guest's run.

mod body;
mod cache;
mod call;
pub mod check;
mod component;
mod cpu;
mod ctx;
mod engine;
mod error;
mod fresh;
mod limits;
mod outbound;
mod output;
mod pre;
mod recycle;
mod sandbox;
mod shared;
mod websocket;

pub use body::GuestBody;
pub use call::{
    Answer, BodySizeExceeded, Call, CallInfo, GuestRequest, Instances, Ran, RequestBody, Run,
    Strategy,
};
pub use cpu::CpuShare;
pub use engine::{Engine, Pool, Wasi};
pub use error::GuestError;
pub use limits::{
    DEFAULT_IDLE_INSTANCE_TIMEOUT, DEFAULT_MAX_MEMORY, DEFAULT_P3_CONCURRENT_REUSE_COUNT,
    DEFAULT_P3_REUSE_COUNT, DEFAULT_REQUEST_TIMEOUT, InstanceLimits, MemoryExhausted, Reuse,
};
pub use outbound::{
    BadOrigin, ConnectionPermit, IoFuture, MAX_OUTBOUND_PER_INSTANCE, MAX_OUTBOUND_PER_TENANT,
    Origin, Outbound, OutboundConnections, Upstream, is_public,
};
pub use output::{DEFAULT_LOG_LINES_PER_SECOND, LogBudget};
pub use pre::GuestPre;
pub use sandbox::{InstanceEvents, OpenedDir, Preopen, Sandbox, WasiAccess};
pub use websocket::{
    InstanceGone, OpenError, OpenRequest, Opened, Outbox, Outgoing, SocketEvents, SocketLimits,
    SocketMessage, Sockets,
};
