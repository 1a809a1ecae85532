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
    /// The guest failed (500), or the request could not be given to it (400).
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// The server is stopping and the guest was cancelled (503).
    #[error("the server is stopping")]
    Stopping,
}

impl HostError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            HostError::BadRequest(_) | HostError::Guest(GuestError::InvalidRequest(_)) => {
                StatusCode::BAD_REQUEST
            }
            HostError::Guest(GuestError::Cancelled) | HostError::Stopping => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            HostError::Guest(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the client caused it (logged at debug level) rather than the
    /// guest or the host (logged as a warning).
    pub fn is_client_error(&self) -> bool {
        self.status().is_client_error()
    }

    /// Logs the failure once, at the level its cause deserves.
    pub(crate) fn log(&self, id: RequestId, component: &str) {
        let error = crate::error::chain(self);
        if self.is_client_error() {
            tracing::debug!(request_id = %id, component, status = self.status().as_u16(), %error, "request refused");
        } else {
            tracing::warn!(request_id = %id, component, status = self.status().as_u16(), %error, "request failed");
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
