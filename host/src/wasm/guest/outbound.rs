//! Outgoing HTTP from a guest's side: what a refusal of the tenant's
//! allow-list (`config::Outbound`) is as a `wasi:http` error, how many
//! connections a tenant's and an instance's guests hold open, the
//! [`Upstream`] that allowed requests go through (`net::Client`, joined to
//! it here: the network layer knows nothing of guests), and where calls to
//! other tenants go ([`Tenants`]), with their depth bound.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use crate::config::outbound::Denied;
use crate::ids::RequestId;
use crate::net::IoFuture;

/// The `wasi:http` error code a guest gets for a refused request.
pub(crate) fn denied_error(denied: &Denied) -> HttpError {
    match denied {
        Denied::NotAllowed => HttpError::HttpRequestDenied,
        Denied::Prohibited(_) => HttpError::DestinationIpProhibited,
        Denied::NotFound => HttpError::DestinationNotFound,
        Denied::BadUri => HttpError::HttpRequestUriInvalid,
    }
}

/// The most outgoing connections open at once for all of a tenant's guests.
pub const MAX_OUTBOUND_PER_TENANT: usize = 256;
/// The most outgoing connections one instance holds open at once: in fresh
/// mode, one request.
pub const MAX_OUTBOUND_PER_INSTANCE: usize = 16;

/// Counts a tenant's open outgoing connections, and each of its
/// instances': every connection holds a [`ConnectionPermit`] of both.
#[derive(Debug)]
pub struct OutboundConnections {
    tenant: Arc<Semaphore>,
}

impl Default for OutboundConnections {
    fn default() -> Self {
        Self {
            tenant: Arc::new(Semaphore::new(MAX_OUTBOUND_PER_TENANT)),
        }
    }
}

impl OutboundConnections {
    /// The count of one instance.
    pub(crate) fn instance() -> Arc<Semaphore> {
        Arc::new(Semaphore::new(MAX_OUTBOUND_PER_INSTANCE))
    }

    /// A permit for one more connection of `instance`, unless it or the
    /// tenant has all its connections open.
    pub(crate) fn try_open(&self, instance: &Arc<Semaphore>) -> Option<ConnectionPermit> {
        let instance = instance.clone().try_acquire_owned().ok()?;
        let tenant = self.tenant.clone().try_acquire_owned().ok()?;
        Some(ConnectionPermit {
            _instance: instance,
            _tenant: tenant,
        })
    }
}

/// One outgoing connection's place in its tenant's and its instance's
/// counts: an [`Upstream`] keeps it for as long as the connection is open.
#[derive(Debug)]
pub struct ConnectionPermit {
    _instance: OwnedSemaphorePermit,
    _tenant: OwnedSemaphorePermit,
}

/// The deepest a chain of tenant-to-tenant calls goes: a request from a
/// client is at depth 0, a guest's call to another tenant at 1, ... A call
/// past it fails with `loop-detected` (A calls B calls A ... is cut here,
/// holding at most this many instances along the way).
pub const MAX_CALL_DEPTH: u8 = 8;

/// A guest's request to another tenant of its server (`NAME.tenant.internal`):
/// who calls, for the callee's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InternalCall {
    /// The caller's request id, which the callee's request takes: the logs
    /// of both tenants name the same request.
    pub request_id: RequestId,
    /// How many calls deep the callee's request is (1 for a call from a
    /// client's request).
    pub depth: u8,
}

/// Where guests' requests to other tenants go once the policy allows them:
/// the tenants of the same server, served in process (the HTTP layer's
/// dispatch, given as this trait: the wasm layer knows nothing of it).
pub trait Tenants: Send + Sync + 'static {
    /// Serves `request` with the tenant `name` (its routes not consulted;
    /// its admission, limits, rate and log budget applied): its response,
    /// or `destination-not-found` when the server has no such tenant.
    fn call(
        &self,
        name: &str,
        request: http::Request<WasiBody>,
        call: InternalCall,
    ) -> BoxFuture<'static, Result<http::Response<WasiBody>, HttpError>>;
}

/// What guests' outgoing requests go through once the policy allows them:
/// name resolution and the connection. `net::Client` is the one catshost
/// uses.
pub trait Upstream: Send + Sync + 'static {
    /// The addresses of `name`.
    fn resolve(
        &self,
        name: String,
        port: u16,
    ) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>;

    /// Sends `request` to the first of `addrs` (the checked addresses of
    /// its host) that accepts a connection, keeping `permit` until that
    /// connection is closed.
    fn send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        addrs: Vec<SocketAddr>,
        permit: ConnectionPermit,
    ) -> BoxFuture<'static, Result<(http::Response<WasiBody>, IoFuture), HttpError>>;
}

impl Upstream for crate::net::Client {
    fn resolve(
        &self,
        name: String,
        port: u16,
    ) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        crate::net::Client::resolve(name, port).boxed()
    }

    fn send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        addrs: Vec<SocketAddr>,
        permit: ConnectionPermit,
    ) -> BoxFuture<'static, Result<(http::Response<WasiBody>, IoFuture), HttpError>> {
        crate::net::Client::send(request, options, addrs, permit).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_per_instance_and_per_tenant() {
        let tenant = OutboundConnections::default();
        let first = OutboundConnections::instance();
        let mut held: Vec<_> = (0..MAX_OUTBOUND_PER_INSTANCE)
            .map(|_| tenant.try_open(&first).expect("within the instance's cap"))
            .collect();
        assert!(tenant.try_open(&first).is_none(), "past the instance's cap");
        held.pop();
        assert!(
            tenant.try_open(&first).is_some(),
            "a closed one is given back"
        );

        // Other instances take the rest of the tenant's, then get none.
        let others: Vec<_> = (0..MAX_OUTBOUND_PER_TENANT / MAX_OUTBOUND_PER_INSTANCE)
            .map(|_| OutboundConnections::instance())
            .collect();
        let mut opened = held.len();
        for instance in &others {
            while let Some(permit) = tenant.try_open(instance) {
                held.push(permit);
                opened += 1;
            }
        }
        assert_eq!(opened, MAX_OUTBOUND_PER_TENANT);
        let fresh = OutboundConnections::instance();
        assert!(tenant.try_open(&fresh).is_none(), "past the tenant's cap");
        // A failed try takes nothing from the instance.
        assert_eq!(fresh.available_permits(), MAX_OUTBOUND_PER_INSTANCE);
        // Another tenant is not affected.
        assert!(OutboundConnections::default().try_open(&fresh).is_some());
    }
}
