//! The body of every response the server sends: a guest's, or one the host
//! made itself. An enum rather than a box: no allocation per response.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::Full;

use crate::error::BoxError;
use crate::wasm::GuestBody;

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
