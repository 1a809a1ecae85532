//! The HTTP side: serving a connection with hyper, routing and admitting
//! each request, handing it to its tenant's guest (and deciding where the
//! guest runs and how its response is framed), and the responses the host
//! makes itself.

mod access;
mod admission;
mod body;
mod conn;
mod error;
mod guest;
mod h3;
mod host;
mod internal;
#[cfg(test)]
pub(crate) use host::request_host;
mod service;
mod tenant;
mod upgrade;
mod watchdog;
mod websocket;

pub(crate) use access::Recorder;
#[cfg(test)]
pub(crate) use body::IncomingBody;
pub use body::ResponseBody;
pub(crate) use conn::{ConnBuilder, ConnInfo, Protocol, SniName};
pub use error::{DefaultErrorHandler, ErrorHandler, Fault, HostError, Level};
pub(crate) use guest::GuestTasks;
pub(crate) use h3::H3_NO_ERROR;
pub(crate) use internal::InternalTenants;
pub(crate) use service::{Dispatch, TenantTable};
pub(crate) use tenant::{CarryOver, GuestSource, LiveTenant, Loader, ServerParts};
pub use upgrade::hook::{UpgradeHook, Upgraded};
