//! The hyper service: one request in, routed to its tenant, admission and
//! limits, a guest call, one response out.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, Version, header};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::sync::Semaphore;

use super::access::Recorder;
use super::body::RequestBody;
use super::{ErrorHandler, HostError, RequestId, ResponseBody};
use crate::routing::Routes;
use crate::wasm::{BodyLimit, GuestTasks, Handler, InstanceLimits, RequestInfo, WasiAccess};

/// What every connection of a server shares: the tenants and their routes,
/// swapped whole when they are replaced.
pub(crate) struct Dispatch {
    site: ArcSwap<Site>,
    /// Records requests that match no route.
    unrouted: Arc<Recorder>,
    errors: Arc<dyn ErrorHandler>,
}

/// The tenants of a server at one moment, and how requests find them.
pub(crate) struct Site {
    pub(crate) routes: Routes,
    pub(crate) tenants: Vec<Arc<Service>>,
}

impl Dispatch {
    pub(crate) fn new(site: Site, unrouted: Recorder, errors: Arc<dyn ErrorHandler>) -> Self {
        Self {
            site: ArcSwap::from_pointee(site),
            unrouted: Arc::new(unrouted),
            errors,
        }
    }

    /// Replaces the tenants: requests already routed finish with the old
    /// ones, every request routed from now on gets the new ones.
    pub(crate) fn replace(&self, site: Site) {
        self.site.store(Arc::new(site));
    }

    /// The tenants now.
    pub(crate) fn current(&self) -> Arc<Site> {
        self.site.load_full()
    }

    /// Serves one request with the tenant its host and path route to, or
    /// 404 when none does.
    pub(crate) async fn serve(
        &self,
        req: Request<Incoming>,
        tls: bool,
        client: SocketAddr,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let host = match request_host(&req) {
            Ok(host) => host,
            Err(error) => return Ok(self.refuse(&req, client, error)),
        };
        let tenant = {
            let site = self.site.load();
            site.routes
                .route(Some(host), req.uri().path())
                .map(|i| site.tenants[i].clone())
        };
        match tenant {
            // The request holds its tenant: a replaced one serves the
            // requests it already has.
            Some(tenant) => tenant.serve(req, tls, client).await,
            None => Ok(self.refuse(&req, client, HostError::NoRoute)),
        }
    }

    /// The host's own answer to a request no tenant gets.
    fn refuse(
        &self,
        req: &Request<Incoming>,
        client: SocketAddr,
        error: HostError,
    ) -> Response<ResponseBody> {
        let id = RequestId::next();
        let exchange = self.unrouted.start(id, req, client);
        error.log(id, "-");
        let response = self.errors.respond(&error, id).map(ResponseBody::host);
        let status = response.status();
        response.map(|body| body.recorded(exchange, status))
    }
}

/// The host a request is for: its URI's authority (HTTP/2, or an HTTP/1
/// request in absolute form), else its Host header, which must be one and
/// a valid host (RFC 9112, section 3.2). The guest must never see a request
/// without one.
fn request_host(req: &Request<Incoming>) -> Result<&str, HostError> {
    if let Some(authority) = req.uri().authority() {
        return Ok(authority.host());
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let Some(host) = hosts.next() else {
        return Err(HostError::BadRequest("no Host header"));
    };
    if hosts.next().is_some() {
        return Err(HostError::BadRequest("more than one Host header"));
    }
    match std::str::from_utf8(host.as_bytes()) {
        Ok(host) if is_host(host.as_bytes()) => Ok(host),
        _ => Err(HostError::BadRequest("the Host header is not a host")),
    }
}

/// Whether `host` is `HOST[:PORT]` (RFC 9110, section 7.2): a name or IPv4
/// address (letters, digits, `-._~!$&'()*+;=` and %-escapes; no comma, no
/// `/`, no `@`) or a bracketed IPv6 address, then an optional port.
fn is_host(host: &[u8]) -> bool {
    let port = if host.first() == Some(&b'[') {
        let Some(end) = host.iter().position(|&b| b == b']') else {
            return false;
        };
        let inside = &host[1..end];
        if inside.is_empty()
            || !inside
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        &host[end + 1..]
    } else {
        let split = host.iter().position(|&b| b == b':').unwrap_or(host.len());
        let name = &host[..split];
        if name.is_empty()
            || !name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+;=%".contains(&b))
        {
            return false;
        }
        &host[split..]
    };
    match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// One tenant's component and what its requests may use.
pub(crate) struct Service {
    handler: Handler,
    tasks: GuestTasks,
    errors: Arc<dyn ErrorHandler>,
    limits: InstanceLimits,
    max_body_size: u64,
    /// One permit per request running, held until its guest ends.
    requests: Arc<Semaphore>,
    max_concurrent_requests: usize,
    /// One permit per worker thread the tenant's guests may run on at once.
    cpu: Option<Arc<Semaphore>>,
    recorder: Arc<Recorder>,
    access: Arc<WasiAccess>,
}

/// What a [`Service`] applies to each request.
pub(crate) struct Policy {
    pub(crate) errors: Arc<dyn ErrorHandler>,
    pub(crate) limits: InstanceLimits,
    pub(crate) max_body_size: u64,
    pub(crate) max_concurrent_requests: usize,
    pub(crate) max_workers: Option<usize>,
    pub(crate) recorder: Recorder,
    pub(crate) access: WasiAccess,
}

impl Service {
    /// A tenant's service. With `before`, the same tenant's service until
    /// now, its permits carry over (when their number is unchanged): the
    /// requests it is still running count against the new one's limits.
    pub(crate) fn new(
        handler: Handler,
        tasks: GuestTasks,
        policy: Policy,
        before: Option<&Service>,
    ) -> Self {
        let max = policy.max_concurrent_requests;
        let requests = match before {
            Some(before) if before.max_concurrent_requests == max => before.requests.clone(),
            _ => Arc::new(Semaphore::new(max)),
        };
        let cpu = match (before.and_then(|b| b.cpu.as_ref()), policy.max_workers) {
            (Some(cpu), Some(_)) => Some(cpu.clone()),
            (None, Some(n)) => Some(Arc::new(Semaphore::new(n.max(1)))),
            (_, None) => None,
        };
        Self {
            handler,
            tasks,
            errors: policy.errors,
            limits: policy.limits,
            max_body_size: policy.max_body_size,
            requests,
            max_concurrent_requests: max,
            cpu,
            recorder: Arc::new(policy.recorder),
            access: Arc::new(policy.access),
        }
    }

    /// The tenant's name.
    pub(crate) fn tenant(&self) -> &str {
        &self.recorder.tenant
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
            cpu: self.cpu.clone(),
            tenant: self.recorder.tenant.clone(),
            metrics: Some(self.recorder.metrics.clone()),
            access: self.access.clone(),
        };
        let request = Request::from_parts(parts, body);
        let response = self.handler.handle(request, info, &self.tasks).await?;
        Ok(response.map(ResponseBody::guest))
    }
}

fn via(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_2 => "HTTP/2 catshost",
        Version::HTTP_10 => "HTTP/1.0 catshost",
        _ => "HTTP/1.1 catshost",
    })
}

#[cfg(test)]
mod tests {
    use super::is_host;

    #[test]
    fn hosts_are_names_or_addresses_with_an_optional_port() {
        for good in [
            "a.example.com",
            "a.example.com:8080",
            "127.0.0.1",
            "[::1]:80",
            "[::1]",
            "x:",
        ] {
            assert!(is_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            ":80",
            "x, a.example.com",
            "evil/.example.com",
            "user@a.example.com",
            "a b",
            "[::1",
            "[zz]",
            "a:8o",
            "[::1]x",
            "a:80:80",
        ] {
            assert!(!is_host(bad.as_bytes()), "{bad}");
        }
    }
}
