//! The WASI 0.3 strategy: instances that serve several requests at once,
//! each up to the tenant's `max_instance_reuse_count` requests in all and
//! `max_instance_concurrent_reuse_count` at once, kept idle up to its
//! `idle_instance_timeout`. wasmtime-wasi-http's `ProxyHandler` runs the
//! instances (one task each, driving the store's event loop); this module
//! gives it catshost's stores, limits and bookkeeping, and enforces each
//! request's deadline from outside the instance.
//!
//! Failures (docs/reuse.md has the table): a request past its deadline
//! gets its 504 (or its cut body) at once, from this side; the instance
//! takes no new request and goes when its other requests are done, or at
//! the newest one's deadline plus [`HARD_BOUND_GRACE`] if a late task keeps
//! running. A trap or a memory exhaustion fails every request of the
//! instance at once (wasmtime cannot fail one task alone). The next request
//! gets another instance.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    self, ExpirationError, HandlerState, InstantiationError, ProxyHandler, ShouldAccept,
    TrapOrPanicError, WorkerStatus,
};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use super::Strategy;
use super::call::{Answer, Call, CallInfo, GuestRequest, Run, body_error};
use super::store;
use crate::config::units::deadline_after;
use crate::ids::{InstanceId, RequestId};
use crate::wasm::compile::GuestPre;
use crate::wasm::guest::{
    GuestBody, GuestCtx, GuestError, MemoryExhausted, Progress, Sandbox, Serving, guest_text,
};

/// What wasmtime-wasi-http 48's worker reports when its task is dropped
/// before it ends (`ProxyHandler`'s `Dropper`).
const WORKER_DROPPED: &str = "worker panicked";

/// How long past the newest request's deadline an instance whose task
/// keeps running is dropped.
pub(crate) const HARD_BOUND_GRACE: Duration = Duration::from_secs(1);

/// WASI 0.3 instances, shared by concurrent requests.
pub(crate) struct Shared {
    handler: ProxyHandler<P3Handler>,
}

impl Shared {
    pub(crate) fn new(pre: GuestPre, sandbox: Arc<Sandbox>) -> Self {
        let reuse = sandbox.limits.reuse;
        Self {
            handler: ProxyHandler::new(P3Handler {
                pre,
                reuse_count: reuse.reuse_count(true) as usize,
                concurrent: reuse.concurrent_reuse_count() as usize,
                idle_timeout: reuse.idle_instance_timeout,
                sandbox,
                retired: CancellationToken::new(),
                live: Arc::default(),
            }),
        }
    }
}

impl Drop for Shared {
    /// A replaced or stopped tenant's instances take no new request: idle
    /// ones go now, the others when their requests are done.
    fn drop(&mut self) {
        self.handler.state().retired.cancel();
    }
}

impl Strategy for Shared {
    fn serve(&self, request: GuestRequest, info: CallInfo) -> Result<Call, GuestError> {
        let tenant = self.handler.state();
        let request = absolute(request, info)?;
        let deadline = tenant.sandbox.deadline();
        let progress = Arc::new(Progress::default());
        let (tx, answer) = Answer::channel();
        let data = RequestData {
            id: info.id,
            depth: info.depth,
            deadline,
            progress: progress.clone(),
            serving: Arc::default(),
        };
        let served = ServedBy(data.serving.clone());
        let handler = self.handler.clone();
        let recorded = progress.clone();
        let guest = async move {
            let _served = served;
            let request = request.map(|b| b.map_err(body_error).boxed_unsync());
            let handled = handler.handle(data, request);
            let response = match tokio::time::timeout_at(deadline, handled).await {
                Err(_) => return Err(GuestError::Timeout),
                Ok(Err(error)) => return Err(p3_failure(error, &recorded)),
                Ok(Ok(response)) => response,
            };
            recorded.responded();
            let body = recorded.clone();
            let _ = tx.send(Ok(response.map(|b| GuestBody::p3(b, body))));
            match tokio::time::timeout_at(deadline, recorded.body_read()).await {
                Err(_) => Err(GuestError::Timeout),
                Ok(()) => match recorded.instance_fault() {
                    Some(fault) => Err(fault),
                    None => Ok(()),
                },
            }
        };
        Ok(Call {
            answer,
            run: Run::new(guest.boxed(), progress),
        })
    }
}

/// A WASI 0.3 request carries its scheme and authority in its URI (the
/// `Host` header is not passed on): the host's, checked against `Host`
/// already.
fn absolute(request: GuestRequest, info: CallInfo) -> Result<GuestRequest, GuestError> {
    let (mut parts, body) = request.into_parts();
    let authority = match parts.uri.authority() {
        Some(authority) => Some(authority.clone()),
        None => parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<http::uri::Authority>().ok()),
    };
    if let Some(authority) = authority {
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(match info.https {
            true => http::uri::Scheme::HTTPS,
            false => http::uri::Scheme::HTTP,
        });
        uri.authority = Some(authority);
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        parts.uri = http::Uri::from_parts(uri).map_err(|e| GuestError::InvalidRequest(e.into()))?;
    }
    Ok(http::Request::from_parts(parts, body))
}

/// Why `ProxyHandler::handle` gave no response, as catshost sorts it.
fn p3_failure(error: wasmtime::Error, progress: &Progress) -> GuestError {
    if error.is::<ExpirationError>() {
        return GuestError::Timeout;
    }
    if error.is::<TrapOrPanicError>() {
        return progress
            .instance_fault()
            .unwrap_or_else(|| GuestError::Trap(error.into()));
    }
    if let Some(failed) = error.downcast_ref::<InstantiationError<RequestData>>() {
        let cause = &failed.error;
        let text = || format!("{cause:#}").into();
        return match cause.downcast_ref::<GuestError>() {
            Some(GuestError::Timeout) => GuestError::Timeout,
            Some(GuestError::NoInstance(_)) => GuestError::NoInstance(text()),
            Some(_) => GuestError::Preopen(text()),
            None if cause.is::<wasmtime::PoolConcurrencyLimitError>() => {
                GuestError::NoInstance(text())
            }
            None if cause.is::<MemoryExhausted>() => GuestError::MemoryExhausted(text()),
            None => GuestError::Trap(text()),
        };
    }
    if let Some(code) =
        error.downcast_ref::<wasmtime_wasi_http::p3::bindings::http::types::ErrorCode>()
    {
        return GuestError::ErrorCode(guest_text(format!("{code:?}")));
    }
    GuestError::from_wasmtime(error)
}

/// What a request tells the instance that takes it.
struct RequestData {
    id: RequestId,
    depth: u8,
    deadline: Instant,
    progress: Arc<Progress>,
    /// The instance that took it, once one did.
    serving: Arc<OnceLock<Arc<Serving>>>,
}

/// Tells the instance that served a request it is done, when the request's
/// run ends (or is dropped).
struct ServedBy(Arc<OnceLock<Arc<Serving>>>);

impl Drop for ServedBy {
    fn drop(&mut self) {
        if let Some(serving) = self.0.get() {
            serving.end();
        }
    }
}

/// One tenant's WASI 0.3 component, sandbox and reuse settings: the
/// `ProxyHandler`'s state.
struct P3Handler {
    pre: GuestPre,
    sandbox: Arc<Sandbox>,
    reuse_count: usize,
    concurrent: usize,
    idle_timeout: Duration,
    retired: CancellationToken,
    /// Its instances alive now.
    live: Arc<AtomicUsize>,
}

/// One instance counted in its tenant's live instances, until dropped.
struct Live(Arc<AtomicUsize>);

impl Live {
    /// Counts one more instance, unless the tenant has `max` already.
    fn take(live: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Self(live.clone()))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn view(ctx: &mut GuestCtx) -> WasiHttpCtxView<'_> {
    ctx.http()
}

impl HandlerState for P3Handler {
    type StoreData = GuestCtx;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    fn instantiate(
        &self,
    ) -> impl Future<Output = wasmtime::Result<handler::Instance<GuestCtx, Expiry, Worker>>> + Send
    {
        let (pre, sandbox) = (self.pre.clone(), self.sandbox.clone());
        // A tenant has at most as many instances as requests it may run:
        // tasks whose clients went away keep theirs busy until their
        // deadline, and must not make it take the whole pool.
        let max = sandbox.max_instances;
        let live = Live::take(&self.live, max);
        let worker = Worker {
            reuse_count: self.reuse_count,
            concurrent: self.concurrent,
            retired: self.retired.clone(),
            sandbox: sandbox.clone(),
            served: AtomicU32::new(0),
            live,
        };
        let expiry = Expiry {
            idle_timeout: self.idle_timeout,
            request_timeout: sandbox.limits.request_timeout,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            target: None,
            newest: None,
            retired: Box::pin(self.retired.clone().cancelled_owned()),
        };
        async move {
            if worker.live.is_none() {
                return Err(GuestError::NoInstance(
                    format!("the tenant has {max} instances, its most").into(),
                )
                .into());
            }
            let mut store =
                store::new(&pre, &sandbox, InstanceId::next()).map_err(wasmtime::Error::from)?;
            store.data_mut().keep_busy();
            // Its requests run on the instance's own task, not under the
            // tenant's CPU share from outside: it computes only with a CPU
            // permit of the share.
            if let Some(cpu) = sandbox.cpu.clone() {
                store.epoch_deadline_callback(move |_| {
                    Ok(wasmtime::UpdateDeadline::YieldCustom(1, cpu.tick()))
                });
            }
            let started = std::time::Instant::now();
            let instantiate = pre.instantiate(&mut store);
            let proxy = tokio::time::timeout(sandbox.limits.request_timeout, instantiate)
                .await
                .map_err(|_| wasmtime::Error::from(GuestError::Timeout))??;
            store::instantiated(&sandbox, started);
            Ok(handler::Instance {
                store,
                proxy,
                view,
                expiration: expiry,
                state: worker,
            })
        }
    }
}

/// One instance's admission and end.
struct Worker {
    reuse_count: usize,
    concurrent: usize,
    retired: CancellationToken,
    sandbox: Arc<Sandbox>,
    /// Requests it has taken.
    served: AtomicU32,
    /// Counts it in its tenant's live instances (`None`: over the limit,
    /// never made).
    live: Option<Live>,
}

impl handler::WorkerState for Worker {
    type StoreData = GuestCtx;
    type RequestData = RequestData;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if self.retired.is_cancelled() || total >= self.reuse_count {
            ShouldAccept::Never
        } else if concurrent >= self.concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, GuestCtx>,
        data: RequestData,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        self.served.fetch_add(1, Ordering::Relaxed);
        // The epoch deadline passed while the instance was idle: a new
        // request gets a whole tick before its first yield.
        store.set_epoch_deadline(1);
        let ctx = store.data_mut();
        ctx.in_flight.retain(|p| !p.is_done());
        // Between requests: what the instance keeps is charged, and its
        // body buffers filled again if it keeps none.
        if ctx.in_flight.is_empty() {
            ctx.settle();
        }
        ctx.start(data.id, data.depth);
        let serving = ctx.serving().clone();
        let _ = data.serving.set(serving);
        ctx.in_flight.push(data.progress.clone());
        let deadline = data.deadline;
        Box::pin(tokio::time::sleep_until(deadline))
    }

    fn drop(&self, mut store: Store<GuestCtx>, result: wasmtime::Result<()>) {
        let ctx = store.data_mut();
        // wasmtime-wasi-http says "worker panicked" whenever the worker's
        // task is dropped unfinished: by a panic (whose own message is
        // printed), or by the runtime ending at a stop, which is no failure.
        let result = match result {
            Err(error) if !std::thread::panicking() && error.to_string() == WORKER_DROPPED => {
                tracing::debug!(
                    target: "catshost::wasm::shared",
                    tenant = &*self.sandbox.tenant,
                    instance_id = %ctx.serving().instance,
                    "a WASI 0.3 instance ended with its runtime"
                );
                Ok(())
            }
            result => result,
        };
        if let Err(error) = &result {
            let memory = error.is::<MemoryExhausted>();
            // Before the store goes, which ends the bodies: they end in an
            // error, not cleanly.
            for progress in ctx.in_flight.drain(..) {
                progress.instance_failed(memory, format!("{error:#}"));
            }
            if self.sandbox.log_budget.take(&self.sandbox.tenant) {
                tracing::warn!(
                    target: "catshost::wasm::shared",
                    tenant = &*self.sandbox.tenant,
                    instance_id = %ctx.serving().instance,
                    error = %format!("{error:#}"),
                    "a WASI 0.3 instance failed: its requests in flight fail with it"
                );
            }
        }
        drop(store);
        if let Some(events) = &self.sandbox.events {
            events.retired(self.served.load(Ordering::Relaxed));
        }
    }
}

/// When an instance goes: idle past its idle timeout (or at once when its
/// tenant is retired), or past the newest request's deadline plus
/// [`HARD_BOUND_GRACE`] while it still runs a request, or past the request
/// timeout in post-return work. Polled from outside the instance's event
/// loop, so it holds even while a guest computes.
struct Expiry {
    idle_timeout: Duration,
    request_timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    target: Option<Instant>,
    /// When the newest request still in flight was taken, last seen.
    newest: Option<Instant>,
    retired: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl handler::WorkerExpiration for Expiry {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: std::time::Instant,
    ) -> Poll<()> {
        let start = Instant::from_std(start);
        let after = match status {
            WorkerStatus::Idle => {
                if self.retired.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                self.idle_timeout
            }
            WorkerStatus::Requests => {
                self.newest = Some(start);
                self.request_timeout.saturating_add(HARD_BOUND_GRACE)
            }
            WorkerStatus::PostReturn => self.request_timeout,
        };
        let mut target = deadline_after(start, after);
        // Every request has answered or expired, but a task goes on (one
        // past its deadline, say): no later than the hard bound of the
        // newest request, not a request timeout after the last answer.
        if status == WorkerStatus::PostReturn
            && let Some(newest) = self.newest
        {
            let grace = self.request_timeout.saturating_add(HARD_BOUND_GRACE);
            target = target.min(deadline_after(newest, grace));
        }
        if self.target != Some(target) {
            self.target = Some(target);
            self.sleep.as_mut().reset(target);
        }
        self.sleep.as_mut().poll(cx)
    }
}
