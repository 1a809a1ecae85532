//! The state of one request's store: WASI, `wasi:http`, and the resource
//! table they share.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::limits::{InstanceLimits, Limiter};
use super::output::GuestOutput;
use crate::http::RequestId;

/// What a guest's store holds for the length of one request.
pub(crate) struct GuestCtx {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: HostHooks,
    pub(crate) limiter: Limiter,
}

impl GuestCtx {
    /// A context that grants the guest nothing beyond the `wasi:http` request
    /// it is handed: no environment, no arguments, no preopened directories,
    /// no sockets, no outgoing HTTP. Its stdout and stderr go to the host's
    /// log, each line an event carrying `id` and `tenant`.
    pub(crate) fn new(id: RequestId, tenant: Arc<str>, limits: &InstanceLimits) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::new(id, tenant.clone(), "stdout"))
            .stderr(GuestOutput::new(id, tenant, "stderr"))
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: HostHooks,
            limiter: Limiter::new(limits),
        }
    }
}

impl WasiView for GuestCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestCtx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// catshost's `wasi:http` policy: outgoing requests are denied (a tenant's
/// allow-list will open them), everything else is wasmtime's default.
struct HostHooks;

impl WasiHttpHooks for HostHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        tracing::info!(uri = %request.uri(), "outgoing HTTP request denied: no outbound access is configured");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
