//! Why a guest call gave no response.

use crate::error::BoxError;

/// The longest guest-supplied text kept in an error (an error code's
/// message): past it, the text is cut, so a guest cannot fill the log.
const MAX_GUEST_TEXT: usize = 1024;

/// `text`, cut to at most [`MAX_GUEST_TEXT`] bytes (on a character
/// boundary) with a mark that it was.
pub(crate) fn guest_text(mut text: String) -> String {
    if text.len() > MAX_GUEST_TEXT {
        let mut end = MAX_GUEST_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let cut = text.len() - end;
        text.truncate(end);
        text.push_str(&format!("... ({cut} more bytes)"));
    }
    text
}

/// Why a guest gave no response, or gave up on one it started. Every
/// variant but [`GuestError::Preopen`] is the guest's doing (or, for
/// [`GuestError::InvalidRequest`], the client's); what each one means for
/// the client is decided on the HTTP side, in one place
/// (`http::HostError::kind`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    /// The guest trapped or failed before setting a response.
    #[error("the guest failed before sending a response")]
    Trap(#[source] BoxError),
    /// The guest returned without setting a response.
    #[error("the guest returned without setting a response")]
    NoResponse,
    /// The guest answered with a `wasi:http` error code (written out).
    #[error("the guest answered with an error: {0}")]
    ErrorCode(String),
    /// The request could not be handed to the guest (a `Host` header that is
    /// not text, say): the client's fault.
    #[error("the request cannot be given to the guest")]
    InvalidRequest(#[source] BoxError),
    /// The guest grew its memory past its limit.
    #[error("the guest ran out of memory")]
    MemoryExhausted(#[source] BoxError),
    /// No instance slot was free in the pool.
    #[error("no instance is free")]
    NoInstance(#[source] BoxError),
    /// The guest ran past its request timeout.
    #[error("the guest ran past its request timeout")]
    Timeout,
    /// A directory given to guests could not be opened (it was removed,
    /// say): the host's fault, the guest never ran.
    #[error("a directory given to guests cannot be opened")]
    Preopen(#[source] BoxError),
}

impl GuestError {
    /// Sorts a failure of wasmtime's by its cause.
    pub(crate) fn from_wasmtime(error: wasmtime::Error) -> Self {
        if error.is::<super::limits::MemoryExhausted>() {
            GuestError::MemoryExhausted(error.into())
        } else if error.is::<wasmtime::PoolConcurrencyLimitError>() {
            GuestError::NoInstance(error.into())
        } else {
            GuestError::Trap(error.into())
        }
    }
}
