//! The state of one instance's store: WASI, `wasi:http`, the resource
//! table they share, and catshost's `wasi:http` hooks (outgoing requests
//! through the tenant's allow-list).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::body::Progress;
use super::limits::Limiter;
use super::outbound::{IoFuture, Verdict};
use super::output::GuestOutput;
use super::sandbox::Sandbox;
use crate::ids::{InstanceId, RequestId};

/// Which instance a store holds, and the request it serves when that is
/// unambiguous: what its output lines and outgoing requests are logged as.
/// An instance reused for several requests at once (WASI 0.3) shares one
/// WASI context between them, so its lines name the request only while it
/// serves one.
#[derive(Debug)]
pub(crate) struct Serving {
    pub(crate) instance: InstanceId,
    /// The request's id, or 0 while it serves none or several.
    request: AtomicU64,
    in_flight: AtomicUsize,
}

impl Serving {
    pub(crate) fn new(instance: InstanceId) -> Self {
        Self {
            instance,
            request: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The instance starts serving `id`.
    pub(crate) fn start(&self, id: RequestId) {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let request = if before == 0 { id.get() } else { 0 };
        self.request.store(request, Ordering::Release);
    }

    /// The instance is done with one of its requests. Output after the
    /// last one ends (a stream the guest drops late, a task it left
    /// running) is still that request's, until the next starts.
    pub(crate) fn end(&self) {
        let before = self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if before == 2 {
            // One left, whose id is not known here.
            self.request.store(0, Ordering::Release);
        }
    }

    /// The request being served, when it is the only one.
    pub(crate) fn request(&self) -> Option<u64> {
        match self.request.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }
}

/// What a guest's store holds for the life of its instance.
pub(crate) struct GuestCtx {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: HostHooks,
    pub(crate) limiter: Limiter,
    /// The requests a WASI 0.3 instance has taken, while anything else
    /// holds them: they fail with the instance.
    pub(crate) in_flight: Vec<Arc<Progress>>,
}

impl GuestCtx {
    /// A context that grants the guest nothing beyond the `wasi:http` request
    /// it is handed and what its sandbox's access lists: no arguments, no
    /// sockets, no host environment, outgoing HTTP only to the listed
    /// origins. Its stdout and stderr go to the host's log, each line an
    /// event carrying `id` and the tenant.
    pub(crate) fn new(serving: Arc<Serving>, sandbox: &Arc<Sandbox>) -> wasmtime::Result<Self> {
        let (tenant, access) = (&sandbox.tenant, &sandbox.access);
        let mut wasi = WasiCtx::builder();
        let budget = &sandbox.log_budget;
        wasi.stdout(GuestOutput::new(
            serving.clone(),
            tenant.clone(),
            "stdout",
            budget.clone(),
        ))
        .stderr(GuestOutput::new(
            serving.clone(),
            tenant.clone(),
            "stderr",
            budget.clone(),
        ))
        .envs(&access.env)
        // wasmtime's default is 64 MiB per call, host memory the guest's
        // `max_memory` does not count.
        .max_random_size(MAX_RANDOM_SIZE);
        for dir in sandbox.opened.iter() {
            let perms = if dir.writable() {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(dir.path()?, dir.guest(), perms)?;
        }
        let wasi = wasi.build();
        Ok(Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_RESOURCES);
                table
            },
            hooks: HostHooks {
                serving,
                sandbox: sandbox.clone(),
            },
            limiter: Limiter::new(&sandbox.limits),
            in_flight: Vec::new(),
        })
    }

    /// Who the instance is, and which request it serves.
    pub(crate) fn serving(&self) -> &Arc<Serving> {
        &self.hooks.serving
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
/// the tenant allows (see [`super::Outbound`]); everything else is wasmtime's
/// default.
struct HostHooks {
    serving: Arc<Serving>,
    sandbox: Arc<Sandbox>,
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
        let (serving, sandbox) = (self.serving.clone(), self.sandbox.clone());
        Box::new(async move {
            let upstream = &sandbox.upstream;
            let verdict = sandbox
                .access
                .outbound
                .check(request.uri(), |name, port| upstream.resolve(name, port))
                .await;
            let addrs = match verdict {
                Verdict::Send(addrs) => addrs,
                Verdict::Deny(denied) => {
                    tracing::warn!(
                        target: "catshost::outbound",
                        request_id = serving.request().map(tracing::field::display),
                        instance_id = %serving.instance,
                        tenant = &*sandbox.tenant,
                        origin = %origin(request.uri()),
                        reason = denied.reason(),
                        "outgoing HTTP request denied"
                    );
                    return Err(denied.error());
                }
            };
            tracing::debug!(
                target: "catshost::outbound",
                request_id = serving.request().map(tracing::field::display),
                instance_id = %serving.instance,
                tenant = &*sandbox.tenant,
                origin = %origin(request.uri()),
                "outgoing HTTP request"
            );
            upstream.send(request, options, addrs).await
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

/// The most bytes one `get-random-bytes` call returns.
const MAX_RANDOM_SIZE: u64 = 1 << 20;

/// The most resources (fields, requests, bodies, streams, pollables, ...) an
/// instance holds at once; wasmtime's default is 1,000,000, each entry host
/// memory outside `max_memory`. The Python and JavaScript guests use a few
/// dozen per request; a WASI 0.3 instance serves up to its concurrent reuse
/// count of requests at once.
const MAX_RESOURCES: usize = 10_000;

/// How many writes to a body the host holds before the guest must wait for
/// the client: enough that hyper sends a streamed body in large writes, not
/// one small write (and one wake-up of the client) per guest write.
const OUTGOING_BODY_BUFFER_CHUNKS: usize = 16;

/// The largest single write to a body (what `check-write` grants). With
/// [`OUTGOING_BODY_BUFFER_CHUNKS`] it bounds what one body holds in the host
/// to about 2 MiB, as wasmtime's defaults (two 1 MiB writes) do.
const OUTGOING_BODY_CHUNK_SIZE: usize = 128 * 1024;
