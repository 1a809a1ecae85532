//! The responses the host makes itself, and the one place that maps every
//! failure to a status code and a log level.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;

use super::RequestId;
use crate::wasm::GuestError;

/// A request the host answers itself because the guest could not.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The request is malformed (400).
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    /// The declared request body is larger than the limit (413).
    #[error("the request body of {declared} bytes is larger than the limit of {limit}")]
    BodyTooLarge {
        /// The `content-length`.
        declared: u64,
        /// The limit.
        limit: u64,
    },
    /// No tenant's route matches the request's host and path (404).
    #[error("no route matches the request's host and path")]
    NoRoute,
    /// Too many requests are running (503, with `Retry-After`).
    #[error("too many requests in flight")]
    Overloaded,
    /// The guest failed (500), ran out of time (504), or the request could
    /// not be given to it (400, 413).
    #[error(transparent)]
    Guest(#[from] GuestError),
}

impl HostError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            HostError::BadRequest(_) | HostError::Guest(GuestError::InvalidRequest(_)) => {
                StatusCode::BAD_REQUEST
            }
            HostError::BodyTooLarge { .. } | HostError::Guest(GuestError::BodyTooLarge) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            HostError::NoRoute => StatusCode::NOT_FOUND,
            HostError::Overloaded
            | HostError::Guest(GuestError::Cancelled | GuestError::NoInstance(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            HostError::Guest(GuestError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            HostError::Guest(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the guest caused it (a trap, a timeout, running out of
    /// memory): logged as a warning. Client errors and load shedding are
    /// logged at debug level.
    pub fn is_guest_fault(&self) -> bool {
        matches!(
            self,
            HostError::Guest(
                GuestError::Trap(_)
                    | GuestError::NoResponse
                    | GuestError::ErrorCode(_)
                    | GuestError::MemoryExhausted(_)
                    | GuestError::Timeout
            )
        )
    }

    /// Logs the failure once, at the level its cause deserves.
    pub(crate) fn log(&self, id: RequestId, component: &str) {
        let error = crate::error::chain(self);
        let status = self.status().as_u16();
        if self.is_guest_fault() {
            tracing::warn!(request_id = %id, component, status, %error, "guest failed");
        } else if matches!(self, HostError::Guest(GuestError::Preopen(_))) {
            tracing::error!(request_id = %id, component, status, %error, "request failed");
        } else {
            tracing::debug!(request_id = %id, component, status, %error, "request refused");
        }
    }
}

/// Makes the responses the host sends for a [`HostError`]. Replace the
/// default with [`crate::Builder::error_handler`].
pub trait ErrorHandler: Send + Sync + 'static {
    /// The response for `error` on request `id`.
    fn respond(&self, error: &HostError, id: RequestId) -> Response<Full<Bytes>>;
}

/// A short `text/plain` body naming the status and the request id; no guest
/// or host internals reach the client.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultErrorHandler;

impl ErrorHandler for DefaultErrorHandler {
    fn respond(&self, error: &HostError, id: RequestId) -> Response<Full<Bytes>> {
        let status = error.status();
        let reason = status.canonical_reason().unwrap_or("Error");
        let body = format!("{} {reason} (request {id})\n", status.as_u16());
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}
