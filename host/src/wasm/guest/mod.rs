//! The bottom of the WebAssembly layer: what one instance's store holds
//! (`GuestCtx`: WASI, `wasi:http` and their resource table, the outbound
//! policy's hooks, the guest's output lines) and what it runs within (the
//! tenant's [`Sandbox`]: limits, CPU share, access), the response body a
//! guest writes ([`GuestBody`]) and why a guest gave no answer
//! ([`GuestError`]). It imports nothing from the layers above
//! (`compile`, `instance`, `websocket`).

mod body;
pub(crate) mod busy;
mod calls;
mod cpu;
mod ctx;
mod error;
mod limits;
mod outbound;
mod output;
mod sandbox;
mod serving;

pub use body::GuestBody;
pub(crate) use body::Progress;
pub use cpu::CpuShare;
pub(crate) use ctx::GuestCtx;
pub use error::GuestError;
pub(crate) use error::guest_text;
pub use limits::MemoryExhausted;
pub(crate) use limits::{EPOCH_TICK, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES};
pub use outbound::{
    ConnectionPermit, InternalCall, MAX_CALL_DEPTH, MAX_OUTBOUND_PER_INSTANCE,
    MAX_OUTBOUND_PER_TENANT, OutboundConnections, Tenants, Upstream,
};
pub use output::LogBudget;
pub use sandbox::{InstanceCap, InstanceEvents, OpenedDir, Sandbox};
pub(crate) use serving::Serving;
