//! What goes into a guest call and what comes out, whatever the strategy:
//! the request ([`GuestRequest`], [`CallInfo`]) and the [`Call`]: an
//! [`Answer`] (the response head, once the guest sets it, with a
//! [`GuestBody`]) and a [`Run`] (the guest's work, to be polled wherever the
//! caller chooses, until it ends).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::oneshot;

use crate::error::BoxError;
use crate::ids::RequestId;
use crate::wasm::guest::{GuestBody, GuestError, Progress};

/// A request as a guest is given it.
pub type GuestRequest = http::Request<RequestBody>;

/// A request body as a guest reads it. An error of type [`BodySizeExceeded`]
/// reaches the guest as `HTTP-request-body-size`; any other as a protocol
/// error.
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

/// The error a request body ends with when it grows past its limit.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the request body grew past its limit, to {0} bytes")]
pub struct BodySizeExceeded(pub u64);

/// What the guest is told about a request besides the request itself.
#[derive(Clone, Copy, Debug)]
pub struct CallInfo {
    /// Names the request in the guest's output lines and the host's logs.
    pub id: RequestId,
    /// Whether the request came over TLS: the guest sees `https`.
    pub https: bool,
    /// How many tenant-to-tenant calls deep it is: 0 from a client, 1 from
    /// a guest that a client's request runs, ...
    pub depth: u8,
}

/// A guest call under way: poll [`Call::run`] for the guest to make
/// progress, and [`Call::answer`] for its response head.
pub struct Call {
    /// The guest's response head, once it sets one.
    pub answer: Answer,
    /// The guest's work; it ends when the guest does.
    pub run: Run,
}

/// The guest's response, once it sets one. Resolves to `None` when the
/// guest ended without one: its [`Run`]'s result says why.
pub struct Answer {
    rx: oneshot::Receiver<Result<http::Response<GuestBody>, GuestError>>,
}

/// What the strategy's response callback sends the [`Answer`] on.
pub(crate) type AnswerSender = oneshot::Sender<Result<http::Response<GuestBody>, GuestError>>;

impl Answer {
    pub(crate) fn channel() -> (AnswerSender, Self) {
        let (tx, rx) = oneshot::channel();
        (tx, Self { rx })
    }
}

impl Future for Answer {
    type Output = Option<Result<http::Response<GuestBody>, GuestError>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(Result::ok)
    }
}

/// A guest's work for one request: instantiating (for a fresh instance),
/// its `handle`, and writing the response body, under the request deadline.
/// Dropped (or [`Run::stop`]ped) before it ends, it stops the guest where
/// it is, and a response body the guest was writing ends in an error.
pub struct Run {
    guest: Option<BoxFuture<'static, RunResult>>,
    progress: Arc<Progress>,
}

/// How a guest's run ended: whether the guest finished, or why not.
pub type RunResult = Result<(), GuestError>;

impl Run {
    pub(crate) fn new(guest: BoxFuture<'static, RunResult>, progress: Arc<Progress>) -> Self {
        Self {
            guest: Some(guest),
            progress,
        }
    }

    /// Whether the run has ended (or was stopped): it must not be polled
    /// again.
    pub fn is_finished(&self) -> bool {
        self.guest.is_none()
    }

    /// How long the instance took to make, once this run made one (also
    /// after it was stopped).
    pub fn instantiated_in(&self) -> Option<Duration> {
        self.progress.instantiated_in()
    }

    /// Whether the guest has set its response head.
    pub fn answered(&self) -> bool {
        self.progress.has_responded()
    }

    /// Stops the guest where it is, unless it has ended.
    pub fn stop(&mut self) {
        if self.guest.is_some() {
            // First the failure, then the store: the body must see it.
            self.progress.fail();
            self.guest = None;
        }
    }
}

impl Future for Run {
    type Output = RunResult;

    /// # Panics
    ///
    /// When polled after it ended or was stopped ([`Run::is_finished`]).
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<RunResult> {
        let guest = self
            .guest
            .as_mut()
            .expect("a guest's run polled after it ended");
        let ran = std::task::ready!(guest.as_mut().poll(cx));
        self.guest = None;
        Poll::Ready(ran)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A request body's error as the guest sees it.
pub(crate) fn body_error(error: BoxError) -> wasmtime_wasi_http::Error {
    if let Some(exceeded) = error.downcast_ref::<BodySizeExceeded>() {
        return wasmtime_wasi_http::Error::HttpRequestBodySize(Some(exceeded.0));
    }
    match error.downcast::<hyper::Error>() {
        Ok(hyper) => (*hyper).into(),
        Err(_) => wasmtime_wasi_http::Error::HttpProtocolError,
    }
}
