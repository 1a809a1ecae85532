//! The hyper service: one request in, a guest call, one response out.

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, Version, header};
use hyper::body::Incoming;

use super::{ErrorHandler, HostError, RequestId, ResponseBody};
use crate::wasm::{GuestTasks, Handler, RequestInfo};

/// What every connection of a server shares.
pub(crate) struct Service {
    handler: Handler,
    tasks: GuestTasks,
    errors: Arc<dyn ErrorHandler>,
}

impl Service {
    pub(crate) fn new(handler: Handler, tasks: GuestTasks, errors: Arc<dyn ErrorHandler>) -> Self {
        Self {
            handler,
            tasks,
            errors,
        }
    }

    /// Serves one request; every failure becomes a host-made response.
    pub(crate) async fn serve(
        &self,
        mut req: Request<Incoming>,
        tls: bool,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let id = RequestId::next();
        let result = match check(&req) {
            Ok(()) => {
                // Like any gateway, record the protocol the request came in
                // by (RFC 9110, section 7.6.3): the guest can see it.
                let via = via(req.version());
                req.headers_mut().append(header::VIA, via);
                let info = RequestInfo { id, tls };
                match self.handler.handle(req, info, &self.tasks).await {
                    Ok(response) => Ok(response.map(ResponseBody::Guest)),
                    Err(error) => Err(HostError::from(error)),
                }
            }
            Err(error) => Err(error),
        };
        Ok(result.unwrap_or_else(|error| {
            error.log(id, self.handler.name());
            self.errors.respond(&error, id).map(ResponseBody::Host)
        }))
    }
}

/// Refuses what the guest must never see.
fn check(req: &Request<Incoming>) -> Result<(), HostError> {
    if req.uri().authority().is_none() && !req.headers().contains_key(header::HOST) {
        return Err(HostError::BadRequest("no Host header"));
    }
    Ok(())
}

fn via(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_2 => "HTTP/2 catshost",
        Version::HTTP_10 => "HTTP/1.0 catshost",
        _ => "HTTP/1.1 catshost",
    })
}
