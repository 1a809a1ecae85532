//! Tenant-to-tenant calls: a guest's request to another tenant's internal
//! name (`http://NAME.tenant.internal/...`, allowed by its tenant's
//! outbound list), served by that tenant of the same server in process,
//! without a socket, through the entry every request takes
//! ([`LiveTenant::serve`]: admission, limits, rate, log budget), its routes
//! skipped.

use std::sync::{Arc, OnceLock, Weak};

use futures_util::future::BoxFuture;
use http::{Method, Request, Response, header};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::body::IncomingBody;
use super::conn::ConnInfo;
use super::service::Dispatch;
use super::tenant::LiveTenant;
use crate::wasm::{InternalCall, Tenants};

/// The tenants of one server, for its guests' calls to each other: the
/// server's dispatch, held weakly (its tenants hold this), set once the
/// dispatch exists. Clones share it.
#[derive(Clone, Default)]
pub(crate) struct InternalTenants(Arc<OnceLock<Weak<Dispatch>>>);

impl InternalTenants {
    /// The server's dispatch is `dispatch`.
    pub(crate) fn set(&self, dispatch: &Arc<Dispatch>) {
        let _ = self.0.set(Arc::downgrade(dispatch));
    }

    /// The tenant `name` of the server now (a reload's tenants once it
    /// has replaced them).
    fn tenant(&self, name: &str) -> Option<Arc<LiveTenant>> {
        let dispatch = self.0.get()?.upgrade()?;
        dispatch.current().by_name(name)
    }
}

/// Who an internal call's request comes from, as its callee's access line
/// says (`client=0.0.0.0:0`): no socket.
const NO_PEER: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

impl Tenants for InternalTenants {
    fn call(
        &self,
        name: &str,
        request: Request<WasiBody>,
        call: InternalCall,
    ) -> BoxFuture<'static, Result<Response<WasiBody>, HttpError>> {
        let tenant = self.tenant(name);
        Box::pin(async move {
            let Some(tenant) = tenant else {
                return Err(HttpError::DestinationNotFound);
            };
            let (mut parts, body) = request.into_parts();
            // No connection to upgrade or tunnel.
            if parts.method == Method::CONNECT {
                return Err(HttpError::HttpRequestMethodInvalid);
            }
            parts.headers.remove(header::UPGRADE);
            parts.extensions.insert(ConnInfo {
                peer: NO_PEER,
                tls: parts.uri.scheme() == Some(&http::uri::Scheme::HTTPS),
                sni: None,
            });
            parts.extensions.insert(call);
            let request = Request::from_parts(parts, IncomingBody::new(body));
            let response = tenant.serve(request).await.response;
            Ok(response.map(|body| {
                body.map_err(|error| HttpError::InternalError(Some(error.to_string())))
                    .boxed_unsync()
            }))
        })
    }
}
