//! The body of a guest's response, whatever instance strategy made it, and
//! how far the guest that writes it got.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body::{Frame, SizeHint};
use tokio::sync::Notify;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::error::BoxError;

/// The body of a guest's response, as the guest writes it.
///
/// If the guest fails before finishing the body, the body ends with an error
/// instead of a clean end (wasmtime-wasi-http ends it cleanly when the
/// guest's store goes away, even after a trap), so the HTTP side can cut the
/// response: the client never gets a short body that looks whole. A body
/// whose guest is stopped ends in that error at once, even when the
/// instance goes on serving other requests (WASI 0.3).
pub struct GuestBody {
    inner: Inner,
    progress: Arc<Progress>,
}

enum Inner {
    /// Written through WASI 0.2's `outgoing-body`.
    P2(HyperOutgoingBody),
    /// Written through a WASI 0.3 `stream<u8>`, read while the instance's
    /// event loop runs.
    P3(WasiBody),
}

impl GuestBody {
    pub(crate) fn p2(body: HyperOutgoingBody, progress: Arc<Progress>) -> Self {
        Self {
            inner: Inner::P2(body),
            progress,
        }
    }

    pub(crate) fn p3(body: WasiBody, progress: Arc<Progress>) -> Self {
        Self {
            inner: Inner::P3(body),
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
        self.progress.body_waker.register(cx.waker());
        if self.progress.failed_after_response() {
            return Poll::Ready(Some(Err(GUEST_FAILED.into())));
        }
        let frame = match &mut self.inner {
            Inner::P2(body) => ready!(Pin::new(body).poll_frame(cx)).map(|f| f.map_err(Into::into)),
            Inner::P3(body) => ready!(Pin::new(body).poll_frame(cx)).map(|f| f.map_err(Into::into)),
        };
        let frame = match frame {
            Some(Ok(frame)) => return Poll::Ready(Some(Ok(frame))),
            Some(Err(error)) => Some(Err(error)),
            None if self.progress.failed_after_response() => Some(Err(GUEST_FAILED.into())),
            None => None,
        };
        self.progress.body_ended();
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::P2(body) => body.is_end_stream(),
            Inner::P3(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::P2(body) => body.size_hint(),
            Inner::P3(body) => body.size_hint(),
        }
    }
}

impl std::fmt::Debug for GuestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestBody").finish_non_exhaustive()
    }
}

const GUEST_FAILED: &str = "the guest failed before finishing the response body";

/// How far a guest got: shared by its run and its response body.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    state: AtomicU8,
    /// How long its instance took to make, in nanoseconds (0: not made).
    instantiated_ns: AtomicU64,
    /// Woken when the guest fails: the body ends in an error at once.
    body_waker: AtomicWaker,
    /// The body reached its end (cleanly or not).
    ended: AtomicBool,
    ended_notify: Notify,
    /// Why the instance failed, when it failed with this request in flight
    /// (WASI 0.3): whether it ran out of memory, and its error.
    fault: std::sync::OnceLock<(bool, String)>,
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
        let after_response = self
            .state
            .compare_exchange(
                Self::RESPONDED,
                Self::FAILED_AFTER_RESPONSE,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        self.body_waker.wake();
        after_response
    }

    /// The instance failed while this request was in flight.
    pub(crate) fn instance_failed(&self, memory: bool, error: String) {
        let _ = self.fault.set((memory, error));
        self.fail();
    }

    /// Why the instance failed under this request, if it did.
    pub(crate) fn instance_fault(&self) -> Option<super::error::GuestError> {
        use super::error::GuestError;
        self.fault.get().map(|(memory, error)| match memory {
            true => GuestError::MemoryExhausted(error.clone().into()),
            false => GuestError::Trap(error.clone().into()),
        })
    }

    /// Whether nothing but the instance holds this request any more.
    pub(crate) fn is_done(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 1
    }

    fn body_ended(&self) {
        self.ended.store(true, Ordering::Release);
        self.ended_notify.notify_one();
    }

    /// Resolves once the response body has been read to its end.
    pub(crate) async fn body_read(&self) {
        while !self.ended.load(Ordering::Acquire) {
            self.ended_notify.notified().await;
        }
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
