//! The library user's [`UpgradeHook`]: a request that asks for an upgrade
//! and a guest that accepts it (101, or 2xx to the CONNECT) hand the
//! connection (the HTTP/2 stream) to the hook.
//!
//! Only a tenant allowed to upgrade reaches the hook; without a hook, or
//! for another tenant, the guest's 101 or 2xx to CONNECT gets 500 as
//! before. The upgraded connection keeps the server's connection permit
//! and its client's slot until the hook's future ends; a stop switches
//! [`Upgraded::stop`] and gives the hook the shutdown timeout to end.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use hyper_util::rt::TokioIo;

use super::{Asked, Dispatched, UpgradeRun};
use crate::http::admission::Permits;
use crate::http::{HostError, ResponseBody};
use crate::lifecycle::Stop;

/// What a library user does with an upgraded connection: speak the
/// protocol the client asked for, for as long as the returned future runs.
/// The connection closes when the future ends.
pub trait UpgradeHook: Send + Sync + 'static {
    /// Serves `upgraded` until the returned future ends.
    fn upgraded(&self, upgraded: Upgraded) -> BoxFuture<'static, ()>;
}

impl<F, Fut> UpgradeHook for F
where
    F: Fn(Upgraded) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn upgraded(&self, upgraded: Upgraded) -> BoxFuture<'static, ()> {
        Box::pin(self(upgraded))
    }
}

/// An upgraded connection, handed to the [`UpgradeHook`] once the guest's
/// answer went out.
pub struct Upgraded {
    /// The request that asked for it (its body was empty).
    pub head: http::request::Parts,
    /// The protocol asked for: the first in the request's `Upgrade` header
    /// (HTTP/1.1), or its `:protocol` (HTTP/2).
    pub protocol: String,
    /// How it came: [`http::Version::HTTP_11`] or [`http::Version::HTTP_2`].
    pub version: http::Version,
    /// The tenant whose guest accepted it.
    pub tenant: Arc<str>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The connection (over TLS when the request was), or the HTTP/2
    /// stream: bytes after the response head are the new protocol's.
    pub io: TokioIo<hyper::upgrade::Upgraded>,
    /// Switched when the server stops: the hook has the shutdown timeout
    /// to close (a WebSocket says 1001) before the connection is cut.
    pub stop: Stop,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded")
            .field("protocol", &self.protocol)
            .field("version", &self.version)
            .field("tenant", &self.tenant)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Where a tenant's accepted upgrades go: the hook, and the server's stop
/// switch it is given.
#[derive(Clone)]
pub(crate) struct Upgrades {
    pub(crate) hook: Arc<dyn UpgradeHook>,
    pub(crate) stop: Stop,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Whether its end gets a line in the access log.
    pub(crate) access_log: bool,
    /// One permit per upgraded connection the tenant may have open.
    pub(crate) open: Permits,
}

impl Upgrades {
    /// The upgrade `req` asks for, taken out of it with one of the tenant's
    /// permits for an upgraded connection; `None` when it asks for none the
    /// hook can take (a WebSocket over HTTP/1.1 without its key or version).
    /// Past the tenant's permits: [`HostError::TooManyUpgrades`].
    pub(crate) fn accepting<B>(
        &self,
        req: &mut http::Request<B>,
        tenant: Arc<str>,
        peer: SocketAddr,
    ) -> Result<Option<Accepting>, HostError> {
        let Some(asked) = Asked::take(req) else {
            return Ok(None);
        };
        let permit = self.open.try_take().ok_or(HostError::TooManyUpgrades)?;
        Ok(Some(Accepting {
            asked,
            upgrades: self.clone(),
            tenant,
            peer,
            permit,
        }))
    }
}

/// A request's upgrade on its way to its guest, with where it goes if the
/// guest accepts it.
pub(crate) struct Accepting {
    asked: Asked,
    upgrades: Upgrades,
    tenant: Arc<str>,
    peer: SocketAddr,
    /// The tenant's permit for the connection, taken before the guest runs
    /// and held until the hook's run ends.
    permit: tokio::sync::OwnedSemaphorePermit,
}

impl Accepting {
    /// Whether the guest's `status` accepts the upgrade.
    pub(crate) fn accepted_by(&self, status: http::StatusCode) -> bool {
        self.asked.accepted_by(status)
    }

    /// The guest's accepting `response`, completed for the upgrade and sent
    /// without a body, and the hook's run on the connection.
    pub(crate) fn accept<B>(self, response: http::Response<B>) -> Dispatched {
        let (mut parts, _body) = response.into_parts();
        self.asked.complete(&mut parts.headers);
        let response =
            http::Response::from_parts(parts, ResponseBody::host(http_body_util::Full::default()));
        Dispatched::upgraded(response, self.into_run())
    }

    /// What runs once the response is out: waits for the connection, then
    /// hands it to the hook.
    fn into_run(self) -> UpgradeRun {
        let Accepting {
            asked,
            upgrades,
            tenant,
            peer,
            permit,
        } = self;
        let run = async move {
            let _permit = permit;
            match asked.on.await {
                Ok(io) => {
                    let _open = upgrades.metrics.upgraded(&tenant);
                    let started = std::time::Instant::now();
                    let protocol = asked.protocol.clone();
                    let upgraded = Upgraded {
                        head: asked.head,
                        protocol: asked.protocol,
                        version: asked.version,
                        tenant: tenant.clone(),
                        peer,
                        io: TokioIo::new(io),
                        stop: upgrades.stop,
                    };
                    upgrades.hook.upgraded(upgraded).await;
                    // The request's access line went out with the 101; this
                    // is the connection's end.
                    if upgrades.access_log {
                        tracing::info!(
                            target: "catshost::access",
                            tenant = &*tenant,
                            client = %peer,
                            protocol,
                            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                            "upgraded connection closed"
                        );
                    }
                }
                // The client went away before the answer reached it.
                Err(error) => {
                    tracing::debug!(%peer, %error, "the upgrade did not happen");
                }
            }
        };
        UpgradeRun::new(run)
    }
}
