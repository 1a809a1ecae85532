//! The responses the host makes itself, and the one classification of
//! failures: each [`HostError`] has a [`Fault`] kind, and the kind alone
//! gives the status, the log level and the metric it is counted under.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;

use crate::ids::RequestId;
use crate::metrics::Counted;
use crate::wasm::{GuestError, LogBudget};

/// A request the host answers itself because the guest could not.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The request is malformed (400).
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    /// The request body is larger than the limit (413): declared so up
    /// front (the guest never ran), or found so as it streamed (the guest
    /// was stopped).
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: u64,
    },
    /// No tenant's route matches the request's host and path (404).
    #[error("no route matches the request's host and path")]
    NoRoute,
    /// Over TLS, the request's host would have another certificate than
    /// the one its connection was given by SNI (421): the client must ask
    /// for it on a connection of its own.
    #[error("the request's host is not one its TLS connection was made for")]
    Misdirected,
    /// Too many requests of the tenant are running (503, with
    /// `Retry-After`).
    #[error("too many requests in flight")]
    Overloaded,
    /// The tenant admits no more requests this second (429, with
    /// `Retry-After`).
    #[error("the tenant's request rate limit is reached")]
    RateLimited,
    /// The tenant is out of service (503, with `Retry-After`).
    #[error("the tenant is out of service")]
    OutOfService,
    /// The tenant has all the connections upgraded through the library's
    /// `UpgradeHook` it may have open (503, with `Retry-After`).
    #[error("the tenant has its most upgraded connections open")]
    TooManyUpgrades,
    /// The tenant has all the WebSockets its WebSocket handler may have
    /// open, `max_websockets` (503, with `Retry-After`).
    #[error("the tenant has its most WebSockets open")]
    TooManyWebSockets,
    /// The client has all the WebSockets of the tenant one client may have
    /// open, `max_websockets_per_client` (429, with `Retry-After`).
    #[error("the client has its most WebSockets of the tenant open")]
    TooManyClientWebSockets,
    /// Taking the request on would take the tenant's account of host memory
    /// (or the process's) past its limit (503, with `Retry-After`).
    #[error("the tenant holds its most host memory: {0}")]
    HostMemory(#[source] crate::account::Refused),
    /// The server's stop ran out of time and stopped the guest (503).
    #[error("the guest was stopped by the server shutting down")]
    Cancelled,
    /// The tenant's component is loading, and did not load within the
    /// load timeout (503, with `Retry-After`): the load goes on.
    #[error("the tenant's component is still loading")]
    Loading,
    /// The tenant's component cannot be loaded (500); the load's failure
    /// was logged when it happened, and the file is tried again once it
    /// changes.
    #[error("the tenant's component cannot be loaded: {0}")]
    Unloadable(#[source] std::sync::Arc<crate::Error>),
    /// The guest's response cannot be sent (500): an upgrade (101, or 2xx
    /// to CONNECT) that nobody takes (no upgrade hook for the tenant, or a
    /// request that did not ask for it).
    #[error("the guest's response cannot be sent: {0}")]
    BadResponse(&'static str),
    /// The guest failed, ran out of time, or the request could not be
    /// given to it.
    #[error(transparent)]
    Guest(#[from] GuestError),
}

/// What kind of failure a [`HostError`] is: the one place its status, log
/// level and metric follow from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The request is malformed, or cannot be given to a guest.
    BadRequest,
    /// The request body is over the limit.
    BodyTooLarge,
    /// No route matches.
    NoRoute,
    /// The request came on a TLS connection made for another host.
    Misdirected,
    /// The tenant's request permits are all taken.
    Overloaded,
    /// The tenant's request rate limit is reached.
    RateLimited,
    /// The tenant is out of service.
    OutOfService,
    /// The tenant has its most upgraded connections (library hook) open.
    TooManyUpgrades,
    /// The tenant has its most WebSockets (WebSocket handler) open.
    TooManyWebSockets,
    /// The client has its most WebSockets of the tenant open.
    TooManyClientWebSockets,
    /// The tenant's (or the process's) account of host memory is full.
    HostMemory,
    /// No instance slot is free in the pool.
    NoInstance,
    /// The server's stop cancelled the guest.
    Cancelled,
    /// The tenant's component did not load in time.
    Loading,
    /// The tenant's component cannot be loaded.
    Unloadable,
    /// The guest trapped, gave no response, or answered with an error.
    Trap,
    /// The guest answered with a response the host cannot send.
    BadResponse,
    /// The guest grew its memory past its limit.
    Memory,
    /// The guest ran past its request timeout.
    Timeout,
    /// The host could not set the guest up (a directory is gone).
    Host,
}

/// How loudly a failure is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The client's business, or load shedding.
    Debug,
    /// The guest's fault.
    Warn,
    /// The host's fault.
    Error,
}

impl Fault {
    /// The status the client gets.
    pub fn status(self) -> StatusCode {
        match self {
            Fault::BadRequest => StatusCode::BAD_REQUEST,
            Fault::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Fault::NoRoute => StatusCode::NOT_FOUND,
            Fault::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Fault::RateLimited | Fault::TooManyClientWebSockets => StatusCode::TOO_MANY_REQUESTS,
            Fault::Overloaded
            | Fault::NoInstance
            | Fault::Cancelled
            | Fault::OutOfService
            | Fault::TooManyUpgrades
            | Fault::TooManyWebSockets
            | Fault::HostMemory
            | Fault::Loading => StatusCode::SERVICE_UNAVAILABLE,
            Fault::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Fault::Trap | Fault::BadResponse | Fault::Memory | Fault::Host | Fault::Unloadable => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// How loudly it is logged.
    pub fn level(self) -> Level {
        match self {
            Fault::Trap | Fault::BadResponse | Fault::Memory | Fault::Timeout => Level::Warn,
            Fault::Host => Level::Error,
            Fault::BadRequest
            | Fault::BodyTooLarge
            | Fault::NoRoute
            | Fault::Misdirected
            | Fault::Overloaded
            | Fault::RateLimited
            | Fault::OutOfService
            | Fault::TooManyUpgrades
            | Fault::TooManyWebSockets
            | Fault::TooManyClientWebSockets
            | Fault::HostMemory
            | Fault::NoInstance
            | Fault::Cancelled
            | Fault::Loading
            // Logged once, when the load failed.
            | Fault::Unloadable => Level::Debug,
        }
    }

    /// The metric it is counted under, if any.
    pub fn counted(self) -> Option<Counted> {
        match self {
            Fault::Trap => Some(Counted::GuestFault("trap")),
            Fault::BadResponse => Some(Counted::GuestFault("bad_response")),
            Fault::Memory => Some(Counted::GuestFault("memory")),
            Fault::Timeout => Some(Counted::GuestFault("timeout")),
            Fault::Overloaded => Some(Counted::Rejected("concurrency")),
            Fault::RateLimited => Some(Counted::Rejected("rate")),
            Fault::OutOfService => Some(Counted::Rejected("out_of_service")),
            Fault::TooManyUpgrades => Some(Counted::Rejected("upgrades")),
            Fault::TooManyWebSockets => Some(Counted::Rejected("websockets")),
            Fault::TooManyClientWebSockets => Some(Counted::Rejected("websockets_per_client")),
            Fault::HostMemory => Some(Counted::Rejected("host_memory")),
            Fault::NoInstance => Some(Counted::Rejected("instance_pool")),
            Fault::Loading => Some(Counted::Rejected("loading")),
            Fault::Unloadable => Some(Counted::GuestFault("load")),
            Fault::BadRequest
            | Fault::BodyTooLarge
            | Fault::NoRoute
            | Fault::Misdirected
            | Fault::Cancelled
            | Fault::Host => None,
        }
    }
}

impl HostError {
    /// What kind of failure it is.
    pub fn kind(&self) -> Fault {
        match self {
            HostError::BadRequest(_) | HostError::Guest(GuestError::InvalidRequest(_)) => {
                Fault::BadRequest
            }
            HostError::BodyTooLarge { .. } => Fault::BodyTooLarge,
            HostError::NoRoute => Fault::NoRoute,
            HostError::Misdirected => Fault::Misdirected,
            HostError::Overloaded => Fault::Overloaded,
            HostError::RateLimited => Fault::RateLimited,
            HostError::OutOfService => Fault::OutOfService,
            HostError::TooManyUpgrades => Fault::TooManyUpgrades,
            HostError::TooManyWebSockets => Fault::TooManyWebSockets,
            HostError::TooManyClientWebSockets => Fault::TooManyClientWebSockets,
            HostError::HostMemory(_) => Fault::HostMemory,
            HostError::Cancelled => Fault::Cancelled,
            HostError::Loading => Fault::Loading,
            HostError::Unloadable(_) => Fault::Unloadable,
            HostError::BadResponse(_) => Fault::BadResponse,
            HostError::Guest(GuestError::NoInstance(_)) => Fault::NoInstance,
            HostError::Guest(GuestError::MemoryExhausted(_)) => Fault::Memory,
            HostError::Guest(GuestError::Timeout) => Fault::Timeout,
            HostError::Guest(GuestError::Preopen(_)) => Fault::Host,
            HostError::Guest(_) => Fault::Trap,
        }
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        self.kind().status()
    }

    /// Logs the failure once, at the level its kind deserves; `after_head`
    /// when the guest failed after its response head went out: the
    /// response was cut, which is always worth a warning (and the status the
    /// kind would have given was never sent). A warning is the guest's
    /// doing, so it is within the tenant's log `budget`: a tenant whose
    /// guests fail on every request cannot fill the log for the others.
    pub(crate) fn log(
        &self,
        id: RequestId,
        tenant: &str,
        component: &str,
        after_head: bool,
        budget: Option<&LogBudget>,
    ) {
        let warn = after_head || self.kind().level() == Level::Warn;
        if warn && budget.is_some_and(|budget| !budget.take(tenant)) {
            return;
        }
        let error = crate::log::chain(self);
        if after_head {
            tracing::warn!(request_id = %id, tenant, component, %error, "guest failed after sending its response");
            return;
        }
        let status = self.status().as_u16();
        match self.kind().level() {
            Level::Warn => {
                tracing::warn!(request_id = %id, tenant, component, status, %error, "guest failed")
            }
            Level::Error => {
                tracing::error!(request_id = %id, tenant, component, status, %error, "request failed")
            }
            Level::Debug => {
                tracing::debug!(request_id = %id, tenant, component, status, %error, "request refused")
            }
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
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind, with what follows from it: a new kind must be added here.
    #[test]
    fn every_fault_kind_has_its_status_level_and_metric() {
        use Counted::{GuestFault, Rejected};
        let table = [
            (Fault::BadRequest, 400, Level::Debug, None),
            (Fault::BodyTooLarge, 413, Level::Debug, None),
            (Fault::NoRoute, 404, Level::Debug, None),
            (
                Fault::RateLimited,
                429,
                Level::Debug,
                Some(Rejected("rate")),
            ),
            (
                Fault::OutOfService,
                503,
                Level::Debug,
                Some(Rejected("out_of_service")),
            ),
            (Fault::Misdirected, 421, Level::Debug, None),
            (
                Fault::TooManyUpgrades,
                503,
                Level::Debug,
                Some(Rejected("upgrades")),
            ),
            (
                Fault::TooManyWebSockets,
                503,
                Level::Debug,
                Some(Rejected("websockets")),
            ),
            (
                Fault::TooManyClientWebSockets,
                429,
                Level::Debug,
                Some(Rejected("websockets_per_client")),
            ),
            (
                Fault::HostMemory,
                503,
                Level::Debug,
                Some(Rejected("host_memory")),
            ),
            (
                Fault::Overloaded,
                503,
                Level::Debug,
                Some(Rejected("concurrency")),
            ),
            (
                Fault::NoInstance,
                503,
                Level::Debug,
                Some(Rejected("instance_pool")),
            ),
            (Fault::Cancelled, 503, Level::Debug, None),
            (Fault::Loading, 503, Level::Debug, Some(Rejected("loading"))),
            (
                Fault::Unloadable,
                500,
                Level::Debug,
                Some(GuestFault("load")),
            ),
            (Fault::Trap, 500, Level::Warn, Some(GuestFault("trap"))),
            (
                Fault::BadResponse,
                500,
                Level::Warn,
                Some(GuestFault("bad_response")),
            ),
            (Fault::Memory, 500, Level::Warn, Some(GuestFault("memory"))),
            (
                Fault::Timeout,
                504,
                Level::Warn,
                Some(GuestFault("timeout")),
            ),
            (Fault::Host, 500, Level::Error, None),
        ];
        for (kind, status, level, counted) in table {
            assert_eq!(kind.status().as_u16(), status, "{kind:?}");
            assert_eq!(kind.level(), level, "{kind:?}");
            assert_eq!(kind.counted(), counted, "{kind:?}");
        }
    }

    #[test]
    fn every_error_has_its_kind() {
        let table = [
            (HostError::BadRequest("x"), Fault::BadRequest),
            (HostError::BodyTooLarge { limit: 1 }, Fault::BodyTooLarge),
            (HostError::NoRoute, Fault::NoRoute),
            (HostError::Misdirected, Fault::Misdirected),
            (HostError::Overloaded, Fault::Overloaded),
            (HostError::RateLimited, Fault::RateLimited),
            (HostError::OutOfService, Fault::OutOfService),
            (HostError::TooManyUpgrades, Fault::TooManyUpgrades),
            (HostError::TooManyWebSockets, Fault::TooManyWebSockets),
            (HostError::Cancelled, Fault::Cancelled),
            (HostError::Loading, Fault::Loading),
            (
                HostError::Unloadable(std::sync::Arc::new(crate::Error::WorkerPanicked)),
                Fault::Unloadable,
            ),
            (HostError::BadResponse("101"), Fault::BadResponse),
            (
                GuestError::InvalidRequest("x".into()).into(),
                Fault::BadRequest,
            ),
            (GuestError::NoInstance("x".into()).into(), Fault::NoInstance),
            (
                GuestError::MemoryExhausted("x".into()).into(),
                Fault::Memory,
            ),
            (GuestError::Timeout.into(), Fault::Timeout),
            (GuestError::Preopen("x".into()).into(), Fault::Host),
            (GuestError::Trap("x".into()).into(), Fault::Trap),
            (GuestError::NoResponse.into(), Fault::Trap),
        ];
        for (error, kind) in table {
            assert_eq!(error.kind(), kind, "{error:?}");
        }
    }
}
