//! Outgoing HTTP from a guest's side: what a refusal of the tenant's
//! allow-list (`config::Outbound`) is as a `wasi:http` error, how many
//! connections a tenant's and an instance's guests hold open, and the
//! [`Upstream`] that allowed requests go through (`net::Client`, joined to
//! it here: the network layer knows nothing of guests).

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use crate::config::outbound::Denied;
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
