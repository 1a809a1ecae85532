//! The ids that name a request in logs, in its guest's output lines and in
//! the host's error responses.

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
