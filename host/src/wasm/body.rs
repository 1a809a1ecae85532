//! The body of a guest's response, whatever instance strategy made it, and
//! how far the guest that writes it got.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::error::BoxError;

/// The body of a guest's response, as the guest writes it.
///
/// If the guest fails before finishing the body, the body ends with an error
/// instead of a clean end (wasmtime-wasi-http ends it cleanly when the
/// guest's store goes away, even after a trap), so the HTTP side can cut the
/// response: the client never gets a short body that looks whole.
pub struct GuestBody {
    inner: Inner,
    progress: Arc<Progress>,
}

enum Inner {
    /// Written through WASI 0.2's `outgoing-body`.
    P2(HyperOutgoingBody),
}

impl GuestBody {
    pub(crate) fn p2(body: HyperOutgoingBody, progress: Arc<Progress>) -> Self {
        Self {
            inner: Inner::P2(body),
            progress,
        }
    }
}

impl http_body::Body for GuestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match &mut self.inner {
            Inner::P2(body) => ready!(Pin::new(body).poll_frame(cx)),
        };
        Poll::Ready(match frame {
            Some(frame) => Some(frame.map_err(BoxError::from)),
            None if self.progress.failed_after_response() => Some(Err(
                "the guest failed before finishing the response body".into(),
            )),
            None => None,
        })
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::P2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::P2(body) => body.size_hint(),
        }
    }
}

impl std::fmt::Debug for GuestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestBody").finish_non_exhaustive()
    }
}

/// How far a guest got: shared by its run and its response body.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    state: AtomicU8,
    /// How long its instance took to make, in nanoseconds (0: not made).
    instantiated_ns: AtomicU64,
}

impl Progress {
    const RESPONDED: u8 = 1;
    const FAILED_AFTER_RESPONSE: u8 = 2;

    /// The guest has set its response.
    pub(crate) fn responded(&self) {
        self.state.store(Self::RESPONDED, Ordering::Release);
    }

    /// Whether the guest has set its response (and maybe failed since).
    pub(crate) fn has_responded(&self) -> bool {
        self.state.load(Ordering::Acquire) != 0
    }

    /// Records a failure; returns whether it came after the response head.
    /// Must come before the guest's store is dropped, which ends the body.
    pub(crate) fn fail(&self) -> bool {
        self.state
            .compare_exchange(
                Self::RESPONDED,
                Self::FAILED_AFTER_RESPONSE,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The instance was made, in `took`.
    pub(crate) fn instantiated(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.instantiated_ns.store(ns, Ordering::Release);
    }

    /// How long the instance took to make, once it was.
    pub(crate) fn instantiated_in(&self) -> Option<Duration> {
        match self.instantiated_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    fn failed_after_response(&self) -> bool {
        self.state.load(Ordering::Acquire) == Self::FAILED_AFTER_RESPONSE
    }
}
