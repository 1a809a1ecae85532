//! Bodies: every response's (a guest's, or one the host made itself; an enum
//! rather than a box, so no allocation per response), and request bodies
//! counted against their size limit.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::Full;

use crate::error::BoxError;
use crate::wasm::{BodyLimit, GuestBody};

/// A response body.
#[derive(Debug)]
pub enum ResponseBody {
    /// Written by a guest while it runs.
    Guest(GuestBody),
    /// Made by the host (an error response).
    Host(Full<Bytes>),
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Both bodies are `Unpin`.
        match self.get_mut() {
            ResponseBody::Guest(body) => Pin::new(body).poll_frame(cx),
            ResponseBody::Host(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Guest(body) => body.is_end_stream(),
            ResponseBody::Host(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Guest(body) => body.size_hint(),
            ResponseBody::Host(body) => body.size_hint(),
        }
    }
}

/// A request body as the guest reads it. A body whose length was not
/// declared up front (chunked HTTP/1, HTTP/2 without `content-length`) is
/// counted as it streams: past `max` bytes it ends in an error and trips its
/// [`BodyLimit`], which stops the guest. (hyper already holds a declared
/// length to its word, and the host checks it before the guest runs.)
#[derive(Debug)]
pub(crate) struct RequestBody {
    inner: hyper::body::Incoming,
    seen: u64,
    max: u64,
    limit: Option<Arc<BodyLimit>>,
}

impl RequestBody {
    /// A body with a declared length, already checked.
    pub(crate) fn declared(inner: hyper::body::Incoming) -> Self {
        Self {
            inner,
            seen: 0,
            max: u64::MAX,
            limit: None,
        }
    }

    /// A body of unknown length, cut at `max` bytes.
    pub(crate) fn counted(inner: hyper::body::Incoming, max: u64, limit: Arc<BodyLimit>) -> Self {
        Self {
            inner,
            seen: 0,
            max,
            limit: Some(limit),
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            self.seen += data.len() as u64;
            if self.seen > self.max {
                if let Some(limit) = &self.limit {
                    limit.trip();
                }
                let error = wasmtime_wasi_http::Error::HttpRequestBodySize(Some(self.seen));
                return Poll::Ready(Some(Err(error)));
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
