//! The state of one request's store: WASI, `wasi:http`, and the resource
//! table they share.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::limits::{InstanceLimits, Limiter};
use super::outbound::{IoFuture, Outbound, Verdict};
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
    /// Origins the guest may send HTTP requests to
    /// (`wasi:http/outgoing-handler`).
    pub outbound: Outbound,
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
    /// host environment, outgoing HTTP only to the listed origins. Its stdout
    /// and stderr go to the host's log, each line an event carrying `id` and
    /// `tenant`.
    pub(crate) fn new(
        id: RequestId,
        tenant: Arc<str>,
        limits: &InstanceLimits,
        access: &Arc<WasiAccess>,
    ) -> wasmtime::Result<Self> {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestOutput::new(id, tenant.clone(), "stdout"))
            .stderr(GuestOutput::new(id, tenant.clone(), "stderr"))
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
            hooks: HostHooks {
                id,
                tenant,
                access: access.clone(),
            },
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

/// catshost's `wasi:http` policy: outgoing requests go only to the origins
/// the tenant allows (see [`Outbound`]); everything else is wasmtime's
/// default.
struct HostHooks {
    id: RequestId,
    tenant: Arc<str>,
    access: Arc<WasiAccess>,
}

impl WasiHttpHooks for HostHooks {
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        OUTGOING_BODY_BUFFER_CHUNKS
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        OUTGOING_BODY_CHUNK_SIZE
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: IoFuture,
    ) -> Box<
        dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), wasmtime_wasi_http::Error>>
            + Send,
    > {
        let (id, tenant, access) = (self.id, self.tenant.clone(), self.access.clone());
        Box::new(async move {
            let verdict = access
                .outbound
                .check(request.uri(), |name, port| async move {
                    let addrs = tokio::net::lookup_host((name.as_str(), port)).await?;
                    Ok(addrs.collect())
                })
                .await;
            let addrs = match verdict {
                Verdict::Send(addrs) => addrs,
                Verdict::Deny(denied) => {
                    tracing::warn!(
                        target: "catshost::outbound",
                        request_id = %id,
                        tenant = &*tenant,
                        origin = %origin(request.uri()),
                        reason = denied.reason(),
                        "outgoing HTTP request denied"
                    );
                    return Err(denied.error());
                }
            };
            tracing::debug!(target: "catshost::outbound", request_id = %id, tenant = &*tenant, origin = %origin(request.uri()), "outgoing HTTP request");
            super::outbound::send(request, options, addrs).await
        })
    }
}

/// `scheme://authority` of `uri`: what a log line says of an outgoing
/// request (its path and query may carry secrets).
fn origin(uri: &http::Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map_or("?", |a| a.as_str())
    )
}

/// How many writes to a body the host holds before the guest must wait for
/// the client: enough that hyper sends a streamed body in large writes, not
/// one small write (and one wake-up of the client) per guest write.
const OUTGOING_BODY_BUFFER_CHUNKS: usize = 16;

/// The largest single write to a body (what `check-write` grants). With
/// [`OUTGOING_BODY_BUFFER_CHUNKS`] it bounds what one body holds in the host
/// to about 2 MiB, as wasmtime's defaults (two 1 MiB writes) do.
const OUTGOING_BODY_CHUNK_SIZE: usize = 128 * 1024;
