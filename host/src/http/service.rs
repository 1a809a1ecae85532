//! The dispatch: one request in, its host checked and routed to its tenant
//! (http/tenant.rs serves it), or answered by the host (400, 404, 421); the
//! tenants swapped whole when they are replaced.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Request, Response};

use super::access::Recorder;
use super::body::IncomingBody;
use super::conn::ConnInfo;
use super::tenant::LiveTenant;
use super::upgrade::Dispatched;
use super::{ErrorHandler, HostError, ResponseBody};
use crate::ids::RequestId;
use crate::routing::Routes;

/// What every connection of a server shares: the tenants and their routes,
/// swapped whole when they are replaced.
pub(crate) struct Dispatch {
    table: ArcSwap<TenantTable>,
    /// Records requests that match no route.
    unrouted: Arc<Recorder>,
    errors: Arc<dyn ErrorHandler>,
}

/// The tenants of a server at one moment, and how requests find them.
pub(crate) struct TenantTable {
    pub(crate) routes: Routes,
    pub(crate) tenants: Vec<Arc<LiveTenant>>,
    /// Each tenant's place in `tenants` by its name in lower case: what a
    /// guest's internal call names (`NAME.tenant.internal`).
    by_name: HashMap<Box<str>, usize>,
}

impl TenantTable {
    pub(crate) fn new(routes: Routes, tenants: Vec<Arc<LiveTenant>>) -> Self {
        let mut by_name = HashMap::with_capacity(tenants.len());
        for (i, tenant) in tenants.iter().enumerate() {
            by_name
                .entry(tenant.name().to_ascii_lowercase().into_boxed_str())
                .or_insert(i);
        }
        Self {
            routes,
            tenants,
            by_name,
        }
    }

    /// The tenant named `name` (in lower case), if any.
    pub(crate) fn by_name(&self, name: &str) -> Option<Arc<LiveTenant>> {
        self.by_name.get(name).map(|&i| self.tenants[i].clone())
    }
}

impl Dispatch {
    pub(crate) fn new(
        table: TenantTable,
        unrouted: Recorder,
        errors: Arc<dyn ErrorHandler>,
    ) -> Self {
        Self {
            table: ArcSwap::from_pointee(table),
            unrouted: Arc::new(unrouted),
            errors,
        }
    }

    /// Replaces the tenants: requests already routed finish with the old
    /// ones, every request routed from now on gets the new ones.
    pub(crate) fn replace(&self, table: TenantTable) {
        self.table.store(Arc::new(table));
    }

    /// The tenants now.
    pub(crate) fn current(&self) -> Arc<TenantTable> {
        self.table.load_full()
    }

    /// Sheds load for the overload guard: closes the WebSockets of the
    /// tenant whose account holds the most (of those with sockets to
    /// close); its name and what it held, if any.
    pub(crate) fn shed_largest(&self) -> Option<(String, usize)> {
        let table = self.current();
        let largest = table
            .tenants
            .iter()
            .filter(|t| t.serves_websockets())
            .max_by_key(|t| t.host_memory())?;
        let held = largest.host_memory();
        (held > 0 && largest.shed_websockets()).then(|| (largest.name().to_string(), held))
    }

    /// Serves one request with the tenant its host and path route to, or
    /// 404 when none does: the response, and what runs on the connection
    /// when it accepts an upgrade.
    pub(crate) async fn serve(&self, req: Request<IncomingBody>) -> Dispatched {
        let host = match super::host::request_host(&req) {
            Ok(host) => host,
            Err(error) => return Dispatched::response(self.refuse(&req, error)),
        };
        if conn_info(&req).misdirected(host) {
            return Dispatched::response(self.refuse(&req, HostError::Misdirected));
        }
        let tenant = {
            let table = self.table.load();
            table
                .routes
                .route(Some(host), req.uri().path())
                .map(|i| table.tenants[i].clone())
        };
        match tenant {
            // The request holds its tenant: a replaced one serves the
            // requests it already has.
            Some(tenant) => tenant.serve(req).await,
            None => Dispatched::response(self.refuse(&req, HostError::NoRoute)),
        }
    }

    /// The host's own answer to a request no tenant gets.
    fn refuse(&self, req: &Request<IncomingBody>, error: HostError) -> Response<ResponseBody> {
        let id = RequestId::next();
        let exchange = self.unrouted.start(id, req, conn_info(req).peer);
        error.log(id, &self.unrouted.tenant, "-", false, None);
        let response = self.errors.respond(&error, id).map(ResponseBody::host);
        let status = response.status();
        response.map(|body| body.recorded(exchange, status))
    }
}

/// The connection facts the connection put in the request.
pub(super) fn conn_info<B>(req: &Request<B>) -> ConnInfo {
    req.extensions()
        .get::<ConnInfo>()
        .expect("every request of a connection carries its ConnInfo")
        .clone()
}
