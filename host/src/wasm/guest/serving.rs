//! Which instance a store holds and which request it serves: what the
//! guest's output lines and outgoing requests are logged as.

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::ids::{InstanceId, RequestId};

/// Which instance a store holds, and the request it serves when that is
/// unambiguous: what its output lines and outgoing requests are logged as.
/// An instance reused for several requests at once (WASI 0.3) shares one
/// WASI context between them, so its lines name the request only while it
/// serves one.
#[derive(Debug)]
pub(crate) struct Serving {
    pub(crate) instance: InstanceId,
    /// The request's id, or 0 while it serves none or several.
    request: AtomicU64,
    in_flight: AtomicUsize,
    /// The deepest tenant-to-tenant call depth of the requests it serves
    /// (since it last served none): what its own calls count from. An
    /// instance serving several requests at once cannot tell which one
    /// makes a call, so it counts from the deepest, never less.
    depth: AtomicU8,
}

impl Serving {
    pub(crate) fn new(instance: InstanceId) -> Self {
        Self {
            instance,
            request: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            depth: AtomicU8::new(0),
        }
    }

    /// The instance starts serving `id`, `depth` tenant-to-tenant calls
    /// deep.
    pub(crate) fn start(&self, id: RequestId, depth: u8) {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let request = if before == 0 { id.get() } else { 0 };
        self.request.store(request, Ordering::Release);
        match before {
            0 => self.depth.store(depth, Ordering::Release),
            _ => _ = self.depth.fetch_max(depth, Ordering::AcqRel),
        }
    }

    /// How many tenant-to-tenant calls deep its requests are, at most.
    pub(crate) fn depth(&self) -> u8 {
        self.depth.load(Ordering::Acquire)
    }

    /// The instance is done with one of its requests. Output after the
    /// last one ends (a stream the guest drops late, a task it left
    /// running) is still that request's, until the next starts.
    pub(crate) fn end(&self) {
        let before = self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if before == 2 {
            // One left, whose id is not known here.
            self.request.store(0, Ordering::Release);
        }
    }

    /// The request being served, when it is the only one.
    pub(crate) fn request(&self) -> Option<u64> {
        match self.request.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }
}
