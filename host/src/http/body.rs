//! Bodies: every response's (a guest's, or one the host made itself; an enum
//! rather than a box, so no allocation per host response), every request's
//! as it enters the host ([`IncomingBody`], whatever its source), and
//! request bodies counted against their size limit ([`LimitedBody`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tokio::sync::Notify;

use super::access::Exchange;
use super::guest::GuestResponse;
use crate::error::BoxError;
use crate::wasm::BodySizeExceeded;

/// A response body: a guest's or the host's, carrying its request's
/// record (see `Exchange`) until it ends.
pub struct ResponseBody {
    kind: Kind,
    exchange: Option<Exchange>,
}

enum Kind {
    /// Written by a guest while it runs.
    Guest(Box<GuestResponse>),
    /// Made by the host (an error response).
    Host(Full<Bytes>),
}

impl ResponseBody {
    pub(crate) fn guest(body: GuestResponse) -> Self {
        Self {
            kind: Kind::Guest(Box::new(body)),
            exchange: None,
        }
    }

    pub(crate) fn host(body: Full<Bytes>) -> Self {
        Self {
            kind: Kind::Host(body),
            exchange: None,
        }
    }

    /// Records the request with this response's status, size and end.
    pub(crate) fn recorded(mut self, mut exchange: Exchange, status: http::StatusCode) -> Self {
        exchange.responded(status);
        self.exchange = Some(exchange);
        self
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Both bodies are `Unpin`.
        let this = self.get_mut();
        let frame = ready!(match &mut this.kind {
            Kind::Guest(body) => Pin::new(&mut **body).poll_frame(cx),
            Kind::Host(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        });
        if let Some(exchange) = &mut this.exchange {
            match &frame {
                Some(Ok(frame)) => exchange.sent(frame.data_ref().map_or(0, Bytes::len)),
                None => exchange.completed(),
                Some(Err(_)) => {}
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Guest(body) => body.is_end_stream(),
            Kind::Host(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Guest(body) => body.size_hint(),
            Kind::Host(body) => body.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper stops polling a body that says it has ended.
        if http_body::Body::is_end_stream(self)
            && let Some(exchange) = &mut self.exchange
        {
            exchange.completed();
        }
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Guest(_) => "guest",
            Kind::Host(_) => "host",
        };
        f.debug_struct("ResponseBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

/// Trips when a request body grows past its size limit: the guest reading
/// it is then stopped (413, or a cut response once it has answered).
#[derive(Debug)]
pub(crate) struct BodyLimit {
    /// The limit, in bytes.
    pub(crate) max: u64,
    tripped: AtomicBool,
    notify: Notify,
}

impl BodyLimit {
    pub(crate) fn new(max: u64) -> Self {
        Self {
            max,
            tripped: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    /// Marks the limit as passed and wakes whoever waits in
    /// [`BodyLimit::tripped`].
    fn trip(&self) {
        self.tripped.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    pub(crate) fn is_tripped(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }

    /// Resolves once the limit is passed.
    pub(crate) async fn tripped(&self) {
        // `notify_one` stores a permit when nobody waits yet: no lost wake-up.
        while !self.is_tripped() {
            self.notify.notified().await;
        }
    }
}

/// A request body as it enters the host, from whichever source: hyper's for
/// HTTP/1.1 and HTTP/2 connections (as it is: no allocation), or any other
/// body the host can stream (HTTP/3, a call from inside the host), boxed.
/// One type, so that every source goes through the same dispatch,
/// admission, limits and guests.
#[derive(Debug)]
pub(crate) enum IncomingBody {
    /// From a hyper connection.
    Hyper(hyper::body::Incoming),
    /// From anywhere else.
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl IncomingBody {
    /// `body`, from a source other than hyper.
    pub(crate) fn new<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self::Boxed(body.map_err(Into::into).boxed_unsync())
    }
}

impl From<hyper::body::Incoming> for IncomingBody {
    fn from(body: hyper::body::Incoming) -> Self {
        Self::Hyper(body)
    }
}

impl Body for IncomingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Self::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Hyper(body) => body.is_end_stream(),
            Self::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Hyper(body) => body.size_hint(),
            Self::Boxed(body) => body.size_hint(),
        }
    }
}

/// A request body as the guest reads it. A body whose length was not
/// declared up front (chunked HTTP/1, HTTP/2 without `content-length`) is
/// counted as it streams: past its limit it ends in [`BodySizeExceeded`]
/// and trips its [`BodyLimit`]. (hyper already holds a declared length to
/// its word, and the host checks it before the guest runs.)
#[derive(Debug)]
pub(crate) struct LimitedBody {
    inner: IncomingBody,
    seen: u64,
    limit: Option<Arc<BodyLimit>>,
    /// Bytes read, for the access log.
    read: Option<Arc<AtomicU64>>,
}

impl LimitedBody {
    /// A body with a declared length, already checked.
    pub(crate) fn declared(inner: IncomingBody) -> Self {
        Self {
            inner,
            seen: 0,
            limit: None,
            read: None,
        }
    }

    /// A body of unknown length, cut at `limit`.
    pub(crate) fn counted(inner: IncomingBody, limit: Arc<BodyLimit>) -> Self {
        Self {
            limit: Some(limit),
            ..Self::declared(inner)
        }
    }

    /// Adds the bytes read to `read` as they stream.
    pub(crate) fn counting_into(mut self, read: Option<Arc<AtomicU64>>) -> Self {
        self.read = read;
        self
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Poll::Ready(Some(Err(error))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            self.seen += data.len() as u64;
            if let Some(read) = &self.read {
                read.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            if let Some(limit) = &self.limit
                && self.seen > limit.max
            {
                limit.trip();
                return Poll::Ready(Some(Err(BodySizeExceeded(self.seen).into())));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
