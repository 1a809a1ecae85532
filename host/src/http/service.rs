//! The hyper service: one request in, admission and limits, a guest call,
//! one response out.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use http::{HeaderValue, Request, Response, Version, header};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::sync::Semaphore;

use super::access::Recorder;
use super::body::RequestBody;
use super::{ErrorHandler, HostError, RequestId, ResponseBody};
use crate::wasm::{BodyLimit, GuestTasks, Handler, InstanceLimits, RequestInfo, WasiAccess};

/// What every connection of a server shares.
pub(crate) struct Service {
    handler: Handler,
    tasks: GuestTasks,
    errors: Arc<dyn ErrorHandler>,
    limits: InstanceLimits,
    max_body_size: u64,
    /// One permit per request running, held until its guest ends.
    requests: Arc<Semaphore>,
    max_concurrent_requests: usize,
    recorder: Arc<Recorder>,
    access: Arc<WasiAccess>,
}

/// What a [`Service`] applies to each request.
pub(crate) struct Policy {
    pub(crate) errors: Arc<dyn ErrorHandler>,
    pub(crate) limits: InstanceLimits,
    pub(crate) max_body_size: u64,
    pub(crate) max_concurrent_requests: usize,
    pub(crate) recorder: Recorder,
    pub(crate) access: WasiAccess,
}

impl Service {
    pub(crate) fn new(handler: Handler, tasks: GuestTasks, policy: Policy) -> Self {
        Self {
            handler,
            tasks,
            errors: policy.errors,
            limits: policy.limits,
            max_body_size: policy.max_body_size,
            requests: Arc::new(Semaphore::new(policy.max_concurrent_requests)),
            max_concurrent_requests: policy.max_concurrent_requests,
            recorder: Arc::new(policy.recorder),
            access: Arc::new(policy.access),
        }
    }

    /// Requests whose guest is still running.
    pub(crate) fn in_flight(&self) -> usize {
        self.max_concurrent_requests - self.requests.available_permits()
    }

    /// Serves one request; every failure becomes a host-made response.
    pub(crate) async fn serve(
        &self,
        req: Request<Incoming>,
        tls: bool,
        client: SocketAddr,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let id = RequestId::next();
        // Dropped with the response body, or with this future if the client
        // goes away first: either way the request is recorded once.
        let exchange = self.recorder.start(id, &req, client);
        let response = match self.call_guest(req, id, tls, exchange.bytes_in()).await {
            Ok(response) => response,
            Err(error) => {
                error.log(id, self.handler.name());
                let recorder = &self.recorder;
                recorder.metrics.host_error(&recorder.tenant, &error);
                self.errors.respond(&error, id).map(ResponseBody::host)
            }
        };
        let status = response.status();
        Ok(response.map(|body| body.recorded(exchange, status)))
    }

    async fn call_guest(
        &self,
        req: Request<Incoming>,
        id: RequestId,
        tls: bool,
        bytes_in: Option<Arc<AtomicU64>>,
    ) -> Result<Response<ResponseBody>, HostError> {
        check(&req)?;
        let permit = self
            .requests
            .clone()
            .try_acquire_owned()
            .map_err(|_| HostError::Overloaded)?;

        let (mut parts, body) = req.into_parts();
        let (body, body_limit) = match body.size_hint().exact() {
            Some(declared) if declared > self.max_body_size => {
                return Err(HostError::BodyTooLarge {
                    declared,
                    limit: self.max_body_size,
                });
            }
            Some(_) => (RequestBody::declared(body), None),
            None => {
                let limit = Arc::new(BodyLimit::default());
                let body = RequestBody::counted(body, self.max_body_size, limit.clone());
                (body, Some(limit))
            }
        };
        let body = body.counting_into(bytes_in);
        // Like any gateway, record the protocol the request came in by
        // (RFC 9110, section 7.6.3): the guest can see it.
        parts.headers.append(header::VIA, via(parts.version));

        let info = RequestInfo {
            id,
            tls,
            limits: self.limits,
            body_limit,
            permit: Some(permit),
            tenant: self.recorder.tenant.clone(),
            metrics: Some(self.recorder.metrics.clone()),
            access: self.access.clone(),
        };
        let request = Request::from_parts(parts, body);
        let response = self.handler.handle(request, info, &self.tasks).await?;
        Ok(response.map(ResponseBody::guest))
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
