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

impl RequestId {
    /// The id of the number `id`, one [`RequestId::get`] gave.
    pub(crate) fn from_raw(id: u64) -> Self {
        Self(id)
    }

    /// The id as a number (never 0).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Names one instance of a component in logs: the requests it served share
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InstanceId(u64);

impl InstanceId {
    /// The next id of this process (ids start at 1 and never repeat).
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
