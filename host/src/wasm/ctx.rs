//! The state of one request's store: WASI, `wasi:http`, and the resource
//! table they share.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
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

/// What a guest may reach beyond its request: nothing by default. The host
/// environment is never inherited; only what is listed here is given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WasiAccess {
    /// Environment variables, in order (`wasi:cli/environment`).
    pub env: Vec<(String, String)>,
    /// Directories the guest can open (`wasi:filesystem/preopens`).
    pub dirs: Vec<Preopen>,
}

/// A host directory a guest sees under a name of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preopen {
    /// The directory on the host.
    pub host: PathBuf,
    /// Its path in the guest (`/data`, say).
    pub guest: String,
    /// Whether the guest may create, write and delete in it.
    pub writable: bool,
}

impl Preopen {
    /// Parses `HOST::GUEST` (wasmtime's syntax); `::GUEST` may be left out
    /// to use the host path. Checks that the directory exists.
    pub fn parse(text: &str, writable: bool) -> Result<Self, String> {
        let (host, guest) = text.split_once("::").unwrap_or((text, text));
        if host.is_empty() || guest.is_empty() {
            return Err(format!(
                "'{text}' is not HOST::GUEST (e.g. ./static::/static)"
            ));
        }
        let host = PathBuf::from(host);
        if !host.is_dir() {
            return Err(format!("'{}' is not a directory", host.display()));
        }
        Ok(Self {
            host,
            guest: guest.to_string(),
            writable,
        })
    }
}

impl GuestCtx {
    /// A context that grants the guest nothing beyond the `wasi:http` request
    /// it is handed and what `access` lists: no arguments, no sockets, no
    /// outgoing HTTP, no host environment. Its stdout and stderr go to the
    /// host's log, each line an event carrying `id` and `tenant`.
    pub(crate) fn new(
        id: RequestId,
        tenant: Arc<str>,
        limits: &InstanceLimits,
        access: &WasiAccess,
    ) -> wasmtime::Result<Self> {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestOutput::new(id, tenant.clone(), "stdout"))
            .stderr(GuestOutput::new(id, tenant, "stderr"))
            .envs(&access.env);
        for dir in &access.dirs {
            let perms = if dir.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)?;
        }
        let wasi = wasi.build();
        Ok(Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: HostHooks,
            limiter: Limiter::new(limits),
        })
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
