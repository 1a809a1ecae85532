//! The state of one instance's store: WASI, `wasi:http`, the resource
//! table they share, and catshost's `wasi:http` hooks (outgoing requests
//! through the tenant's allow-list).

use std::any::Any;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Resource, ResourceTable, TypedFunc};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{
    FieldMap, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use super::body::Progress;
use super::busy::Busy;
use super::calls::{call_tenant, denied, origin};
use super::limits::Limiter;
use super::outbound::{OutboundConnections, denied_error};
use super::output::GuestOutput;
use super::sandbox::Sandbox;
use super::serving::Serving;
use crate::account::Charge;
use crate::config::outbound::Verdict;
use crate::ids::RequestId;
use crate::net::IoFuture;

/// A WASI 0.3 hop's exported `handle` (`wasi:http/handler@0.3.x`): what
/// the middleware in front of it calls.
pub(crate) type HandleFunc = TypedFunc<
    (Resource<wasmtime_wasi_http::p3::Request>,),
    (Result<Resource<wasmtime_wasi_http::p3::Response>, ErrorCode>,),
>;

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
    /// What a layer above keeps in the store for its host calls (a
    /// WebSocket handler's instance: its sockets); this layer knows
    /// nothing of it. `None` in an instance that serves HTTP requests.
    attached: Option<Box<dyn Any + Send>>,
    /// A middleware chain's hops after the first, in order: what the
    /// middleware at position `i` calls is `hops[i]`. Empty for a
    /// component served alone.
    hops: Vec<HandleFunc>,
    /// What the instance keeps between requests (or events), charged to
    /// its tenant's account as last [settled](GuestCtx::settle).
    kept: Charge,
    /// Calls to [`GuestCtx::settle_if_due`] since it last settled.
    unsettled: u32,
    /// One of the tenant's instance permits, while the instance lives.
    _instance: OwnedSemaphorePermit,
    /// Keeps the epoch ticking while the store lives, for a store whose
    /// guest runs outside a request's run (a WASI 0.3 instance's).
    busy: Option<Busy>,
}

/// What an instance keeps between requests (or events) that holds host
/// memory, as [`GuestCtx::settle`] finds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Kept {
    /// Resources in its table.
    pub(crate) resources: usize,
    /// Outgoing bodies, responses and requests: what holds body buffers.
    pub(crate) bodies: usize,
    /// The host memory they hold, about (body buffers at their most).
    pub(crate) bytes: usize,
}

impl GuestCtx {
    /// A context that grants the guest nothing beyond the `wasi:http` request
    /// it is handed and what its sandbox's access lists: no arguments, no
    /// sockets, no host environment, outgoing HTTP only to the listed
    /// origins. Its stdout and stderr go to the host's log, each line an
    /// event carrying `id` and the tenant.
    /// The instance holds `instance`, one of its tenant's instance permits,
    /// while it lives.
    pub(crate) fn new(
        serving: Arc<Serving>,
        sandbox: &Arc<Sandbox>,
        instance: OwnedSemaphorePermit,
    ) -> wasmtime::Result<Self> {
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
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(FIELD_SIZE_LIMIT);
        Ok(Self {
            wasi,
            http,
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_RESOURCES);
                table
            },
            hooks: HostHooks {
                serving,
                sandbox: sandbox.clone(),
                connections: OutboundConnections::instance(),
                body_buffers: BODY_BUFFER_BUDGET,
            },
            limiter: Limiter::new(&sandbox.limits),
            in_flight: Vec::new(),
            attached: None,
            hops: Vec::new(),
            kept: sandbox.account.empty(),
            unsettled: 0,
            _instance: instance,
            busy: None,
        })
    }

    /// Who the instance is, and which request it serves.
    pub(crate) fn serving(&self) -> &Arc<Serving> {
        &self.hooks.serving
    }

    /// Takes stock of what the instance keeps between requests (or
    /// events): charged to its tenant's account (whatever its limit: it is
    /// held already; an account over its limit refuses what would add to
    /// it, and a reused instance that takes it there is not reused). Its
    /// body buffer budget is filled again only when it keeps no body: what
    /// a guest keeps from one request to the next comes out of the budget
    /// of the next.
    pub(crate) fn settle(&mut self) -> Kept {
        let mut kept = Kept::default();
        let mut field_bytes = 0;
        for entry in self.table.iter_mut() {
            let entry: &dyn Any = entry;
            kept.resources += 1;
            if let Some(fields) = entry.downcast_ref::<FieldMap>() {
                field_bytes += fields
                    .iter()
                    .map(|(name, value)| name.as_str().len() + value.len() + FIELD_OVERHEAD)
                    .sum::<usize>();
            } else if holds_a_body(entry) {
                kept.bodies += 1;
            }
        }
        let full = kept.bodies.min(BODY_BUFFER_BUDGET / FULL_BODY_BUFFER);
        kept.bytes = full * FULL_BODY_BUFFER
            + (kept.bodies - full) * 2 * SMALL_BODY_CHUNK_SIZE
            + field_bytes
            + kept.resources * RESOURCE_OVERHEAD;
        self.kept.force(kept.bytes);
        if kept.bodies == 0 {
            self.hooks.body_buffers = BODY_BUFFER_BUDGET;
        }
        kept
    }

    /// [`GuestCtx::settle`] when it is due, after one of many short calls
    /// (a WebSocket event): when the guest made a body since it last
    /// settled (its budget is not full), else every [`SETTLE_EVERY`]th
    /// call. Between two, what it keeps is bounded all the same (its budget
    /// is not filled again, its resources are capped): only its charge
    /// waits.
    pub(crate) fn settle_if_due(&mut self) -> Option<Kept> {
        self.unsettled += 1;
        if self.hooks.body_buffers == BODY_BUFFER_BUDGET && self.unsettled < SETTLE_EVERY {
            return None;
        }
        self.unsettled = 0;
        Some(self.settle())
    }

    /// Whether the tenant's account is over its limit (so an instance that
    /// keeps anything should not be kept).
    pub(crate) fn account_over(&self) -> bool {
        self.kept.account().over()
    }

    /// Keeps `value` in the store, for the host calls of the layer that put
    /// it there ([`GuestCtx::attached`]).
    pub(crate) fn attach<T: Any + Send>(&mut self, value: T) {
        self.attached = Some(Box::new(value));
    }

    /// Adds the next hop of a middleware chain (instantiated in this
    /// store), after those added before.
    pub(crate) fn add_hop(&mut self, handle: HandleFunc) {
        self.hops.push(handle);
    }

    /// What the middleware at `position` calls: the hop after it.
    pub(crate) fn next_hop(&self, position: usize) -> Option<HandleFunc> {
        self.hops.get(position).copied()
    }

    /// Keeps the epoch ticking for as long as the store lives (a WASI 0.3
    /// instance's: its guest runs on its own task, outside any request's
    /// run).
    pub(crate) fn keep_busy(&mut self) {
        self.busy.get_or_insert_with(Busy::start);
    }

    /// What [`GuestCtx::attach`] kept, when it is a `T`.
    pub(crate) fn attached<T: Any>(&self) -> Option<&T> {
        self.attached.as_deref()?.downcast_ref()
    }

    /// What [`GuestCtx::attach`] kept, when it is a `T`.
    pub(crate) fn attached_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.attached.as_deref_mut()?.downcast_mut()
    }

    /// The instance starts serving `id`, within what is left of its body
    /// buffer budget (filled again only by [`GuestCtx::settle`]).
    pub(crate) fn start(&mut self, id: RequestId, depth: u8) {
        self.hooks.serving.start(id, depth);
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
/// the tenant allows (see [`crate::config::Outbound`]), over at most
/// [`MAX_OUTBOUND_PER_INSTANCE`](super::outbound::MAX_OUTBOUND_PER_INSTANCE)
/// connections of the instance and
/// [`MAX_OUTBOUND_PER_TENANT`](super::outbound::MAX_OUTBOUND_PER_TENANT) of the tenant;
/// a request's bodies share [`BODY_BUFFER_BUDGET`]; everything else is
/// wasmtime's default.
struct HostHooks {
    serving: Arc<Serving>,
    sandbox: Arc<Sandbox>,
    /// The instance's open outgoing connections.
    connections: Arc<Semaphore>,
    /// What is left of the request's [`BODY_BUFFER_BUDGET`].
    body_buffers: usize,
}

impl HostHooks {
    /// The buffer of the body being made (WASI 0.2 asks for its chunk
    /// count, then its chunk size): a full one while the request's budget
    /// lasts, then a small one. wasi-http holds up to one chunk more than
    /// the count.
    fn body_buffer(&self) -> (usize, usize) {
        if self.body_buffers >= FULL_BODY_BUFFER {
            (OUTGOING_BODY_BUFFER_CHUNKS, OUTGOING_BODY_CHUNK_SIZE)
        } else {
            (1, SMALL_BODY_CHUNK_SIZE)
        }
    }
}

impl WasiHttpHooks for HostHooks {
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        self.body_buffer().0
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        // Asked second, for the same body: its buffer is taken now.
        let (chunks, size) = self.body_buffer();
        self.body_buffers = self.body_buffers.saturating_sub((chunks + 1) * size);
        size
    }

    fn p3_outgoing_body_chunk_size(&mut self) -> usize {
        // Asked once a body is sent (an unsent WASI 0.3 body stays in guest
        // memory): wasi-http holds up to two chunks of it, one queued and
        // one being read.
        let size = if self.body_buffers >= 2 * P3_BODY_CHUNK_SIZE {
            P3_BODY_CHUNK_SIZE
        } else {
            SMALL_BODY_CHUNK_SIZE
        };
        self.body_buffers = self.body_buffers.saturating_sub(2 * size);
        size
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
        let permit = sandbox.outbound_connections.try_open(&self.connections);
        Box::new(async move {
            // Another tenant: no connection, no name to resolve.
            match sandbox.access.outbound.internal(request.uri()) {
                Some(Verdict::Internal(tenant)) => {
                    return call_tenant(&serving, &sandbox, &tenant, request).await;
                }
                Some(Verdict::Deny(why)) => {
                    denied(&serving, &sandbox, request.uri(), &why.reason());
                    return Err(denied_error(&why));
                }
                Some(Verdict::Send(_)) | None => {}
            }
            let Some(permit) = permit else {
                let reason = "the instance or the tenant has all its outgoing connections open";
                denied(&serving, &sandbox, request.uri(), reason);
                return Err(wasmtime_wasi_http::Error::ConnectionLimitReached);
            };
            let upstream = &sandbox.upstream;
            let verdict = sandbox
                .access
                .outbound
                .check(request.uri(), |name, port| upstream.resolve(name, port))
                .await;
            let addrs = match verdict {
                Verdict::Send(addrs) => addrs,
                Verdict::Internal(_) => unreachable!("served in process above"),
                Verdict::Deny(why) => {
                    denied(&serving, &sandbox, request.uri(), &why.reason());
                    return Err(denied_error(&why));
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
            upstream.send(request, options, addrs, permit).await
        })
    }
}

/// Whether a resource of the table holds (or will hold) body buffers: an
/// outgoing body, response or request (WASI 0.2), a request or response
/// (WASI 0.3).
fn holds_a_body(entry: &dyn Any) -> bool {
    use wasmtime_wasi_http::{p2, p3};
    entry.is::<p2::body::HostOutgoingBody>()
        || entry.is::<p2::types::HostOutgoingResponse>()
        || entry.is::<p2::types::HostOutgoingRequest>()
        || entry.is::<p3::Request>()
        || entry.is::<p3::Response>()
}

/// How many calls [`GuestCtx::settle_if_due`] lets go by when the guest
/// made no body.
const SETTLE_EVERY: u32 = 16;

/// The most bytes of names and values one `fields` a guest makes may hold:
/// what a client's request head may (`--max-header-size`'s default), not
/// wasi-http's 128 KiB. With [`MAX_RESOURCES`] it bounds what a guest's
/// fields hold in the host to 256 MiB an instance at the very most.
const FIELD_SIZE_LIMIT: usize = crate::config::DEFAULT_MAX_HEADER_SIZE;

/// What one field costs besides its name and value (its map entry).
const FIELD_OVERHEAD: usize = 32;

/// What one resource costs in the host besides what it holds (its table
/// entry and box).
const RESOURCE_OVERHEAD: usize = 64;

/// The most bytes one `get-random-bytes` call returns.
const MAX_RANDOM_SIZE: u64 = 1 << 20;

/// The most resources (fields, requests, bodies, streams, pollables, ...) an
/// instance holds at once; wasmtime's default is 1,000,000, each entry host
/// memory outside `max_memory`. The Python and JavaScript guests use a few
/// dozen per request; a WASI 0.3 instance serves up to its concurrent reuse
/// count of requests at once (16 by default: a few hundred).
const MAX_RESOURCES: usize = 4_096;

/// How many writes to a body the host holds before the guest must wait for
/// the client: enough that hyper sends a streamed body in large writes, not
/// one small write (and one wake-up of the client) per guest write.
const OUTGOING_BODY_BUFFER_CHUNKS: usize = 16;

/// The largest single write to a body (what `check-write` grants). With
/// [`OUTGOING_BODY_BUFFER_CHUNKS`] it bounds what one body holds in the host
/// to about 2 MiB, as wasmtime's defaults (two 1 MiB writes) do.
const OUTGOING_BODY_CHUNK_SIZE: usize = 128 * 1024;

/// What one full body buffer holds at most: wasi-http buffers one chunk
/// more than it is asked for.
const FULL_BODY_BUFFER: usize = (OUTGOING_BODY_BUFFER_CHUNKS + 1) * OUTGOING_BODY_CHUNK_SIZE;

/// The host memory one request's outgoing bodies (its response's and its
/// outgoing requests') may hold unsent, in full buffers: four bodies. The
/// ones made after those get two chunks of [`SMALL_BODY_CHUNK_SIZE`], so a
/// guest that makes bodies in a loop (each held in the resource table, and
/// never sent) makes the host hold at most this plus 8 KiB a body, within
/// [`MAX_RESOURCES`]: about 41 MiB an instance, not GiBs. The budget is
/// the instance's, not a request's: it is filled again only when the
/// instance keeps no body ([`GuestCtx::settle`]).
const BODY_BUFFER_BUDGET: usize = 4 * FULL_BODY_BUFFER;

/// The most a WASI 0.3 body's stream hands the host in one chunk while the
/// request's budget lasts: wasmtime's default.
const P3_BODY_CHUNK_SIZE: usize = 1024 * 1024;

/// The largest write to a body past the request's [`BODY_BUFFER_BUDGET`].
const SMALL_BODY_CHUNK_SIZE: usize = 4 * 1024;
