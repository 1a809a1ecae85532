//! The HTTP side: serving a connection with hyper, turning each request into
//! a guest call, and the responses the host makes itself.

mod access;
mod body;
mod conn;
mod error;
mod service;

pub(crate) use access::{Recorder, millis};
pub use body::ResponseBody;
pub(crate) use conn::{ConnBuilder, Protocol};
pub use conn::{DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_HEADER_SIZE, HttpSettings, HttpVersions};
pub use error::{DefaultErrorHandler, ErrorHandler, HostError};
pub(crate) use service::{Dispatch, Policy, Service, Site};

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Names one request in logs and in its guest's output lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(u64);

impl RequestId {
    /// The next id of this process (ids start at 1 and never repeat).
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
