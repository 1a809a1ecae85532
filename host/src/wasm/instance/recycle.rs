//! The second WASI 0.2 strategy: instances reused one request at a time,
//! up to the tenant's `max_instance_reuse_count`, and kept idle up to its
//! `idle_instance_timeout`.
//!
//! An instance that fails (traps, runs out of memory or time, or ends
//! without an answer) never serves again. Some components cannot be reused
//! at all: their second request on an instance fails without an answer,
//! though the first was served (ComponentizeJS's `FetchEvent`, say). When a
//! reused instance fails that way, the request is served again on a fresh
//! instance if the guest had not read its body yet, and the tenant gets a
//! fresh instance for every request from then on, with one warning naming
//! it. A guest's own error answers (a 500 it sends) are answers: they
//! change nothing. Once a reused instance has answered, the component is
//! known to be reusable: from then on a failure is the guest's own (a 500
//! or 504), and requests are no longer kept to be served again (which
//! copied every reused request's head).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::Strategy;
use super::call::{Answer, Call, CallInfo, GuestRequest, RequestBody, Run, RunResult};
use super::p2::{AnswerSlot, P2Instance, respond};
use crate::error::BoxError;
use crate::head::clone_head;
use crate::wasm::compile::GuestPre;
use crate::wasm::guest::{GuestError, Progress, Sandbox};

/// WASI 0.2 instances, each reused for up to `max_instance_reuse_count`
/// requests, one at a time.
pub(crate) struct Recycle {
    shared: Arc<RecycleState>,
}

/// What the strategy and its runs share.
struct RecycleState {
    pre: GuestPre,
    sandbox: Arc<Sandbox>,
    max_uses: u32,
    idle_timeout: Duration,
    /// Instances waiting for a request, the most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// Set when the component failed on a reused instance: every request
    /// gets a fresh instance from then on.
    fresh_only: AtomicBool,
    /// Set once a reused instance has answered: the component can be
    /// reused, and requests are no longer kept to be served again.
    reusable: AtomicBool,
    /// Set when the tenant is replaced or stopped: no instance goes back.
    retired: AtomicBool,
    /// Whether the task that drops expired idle instances runs.
    sweeping: AtomicBool,
    /// Set when an instance kept too many resources (logged once).
    leaky: AtomicBool,
}

/// The most resources an instance may keep after a request and still
/// serve the next one: a guest keeps a few (its stdout, say), a leak keeps
/// more with every request.
const MAX_KEPT_RESOURCES: usize = 256;

struct Idle {
    instance: P2Instance,
    since: Instant,
}

impl Recycle {
    pub(crate) fn new(pre: GuestPre, sandbox: Arc<Sandbox>) -> Self {
        let reuse = sandbox.limits.reuse;
        Self {
            shared: Arc::new(RecycleState {
                pre,
                max_uses: reuse.reuse_count(false),
                idle_timeout: reuse.idle_instance_timeout,
                sandbox,
                idle: Mutex::default(),
                fresh_only: AtomicBool::new(false),
                reusable: AtomicBool::new(false),
                retired: AtomicBool::new(false),
                sweeping: AtomicBool::new(false),
                leaky: AtomicBool::new(false),
            }),
        }
    }
}

impl Drop for Recycle {
    /// A replaced or stopped tenant's idle instances go now; those still
    /// serving go when their request ends.
    fn drop(&mut self) {
        self.shared.retired.store(true, Ordering::Release);
        drop(std::mem::take(&mut *self.shared.idle()));
    }
}

impl RecycleState {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().expect("never poisoned")
    }

    /// The most recently used idle instance that has not expired.
    fn take(&self) -> Option<P2Instance> {
        let mut idle = self.idle();
        let now = Instant::now();
        idle.retain(|i| now.duration_since(i.since) < self.idle_timeout);
        idle.pop().map(|i| i.instance)
    }

    /// Keeps `instance` for the next request, when it may serve again.
    fn give_back(self: &Arc<Self>, mut instance: P2Instance) {
        if instance.served >= self.max_uses
            || self.fresh_only.load(Ordering::Acquire)
            || self.retired.load(Ordering::Acquire)
        {
            return;
        }
        // What a request's guest left in the table (unsent bodies, say) is
        // host memory: an instance that keeps much serves no more, so no
        // instance holds more than one request's leftovers.
        let ctx = instance.store.data_mut();
        let kept = ctx.settle().resources;
        if ctx.account_over() {
            // What it keeps is refunded as it goes.
            return;
        }
        if kept > MAX_KEPT_RESOURCES {
            if !self.leaky.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    target: "catshost::wasm::recycle",
                    tenant = &*self.sandbox.tenant,
                    component = self.pre.name(),
                    resources = kept,
                    "an instance kept this many resources after its request: it is not \
                     reused (nor is any other that keeps more than {MAX_KEPT_RESOURCES})"
                );
            }
            return;
        }
        self.idle().push(Idle {
            instance,
            since: Instant::now(),
        });
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// Records that the component fails on reuse; true the first time.
    fn switch_to_fresh(&self) -> bool {
        let first = !self.fresh_only.swap(true, Ordering::AcqRel);
        drop(std::mem::take(&mut *self.idle()));
        first
    }
}

/// Drops idle instances past their timeout (they hold pool slots and
/// memory) until none is left, then ends; the next instance given back
/// starts it again.
async fn sweep(pool: Weak<RecycleState>) {
    loop {
        let Some(every) = pool.upgrade().map(|p| p.idle_timeout) else {
            return;
        };
        tokio::time::sleep(every.max(Duration::from_millis(10))).await;
        let Some(pool) = pool.upgrade() else { return };
        let expired: Vec<Idle> = {
            let mut idle = pool.idle();
            let now = Instant::now();
            let (expired, kept) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|i| now.duration_since(i.since) >= pool.idle_timeout);
            *idle = kept;
            expired
        };
        drop(expired);
        let idle = pool.idle();
        if idle.is_empty() {
            // Under the lock: an instance given back after this starts a
            // new sweep.
            pool.sweeping.store(false, Ordering::Release);
            return;
        }
    }
}

impl Strategy for Recycle {
    fn serve(&self, request: GuestRequest, info: CallInfo) -> Result<Call, GuestError> {
        let pool = self.shared.clone();
        let reused = match pool.fresh_only.load(Ordering::Acquire) {
            true => None,
            false => pool.take(),
        };
        let is_reused = reused.is_some();
        let mut instance = match reused {
            Some(instance) => instance,
            None => P2Instance::new(&pool.pre, &pool.sandbox)?,
        };
        let progress = Arc::new(Progress::default());
        let (tx, answer) = Answer::channel();
        let tx: AnswerSlot = Arc::new(Mutex::new(Some(tx)));
        // A reused instance's request can be served again elsewhere while
        // its guest has not read the body, until the component is known to
        // be reusable: keep the head and the body.
        let on_trial = is_reused && !pool.reusable.load(Ordering::Relaxed);
        let (request, retry) = if on_trial {
            let (parts, body) = request.into_parts();
            let slot = Arc::new(Mutex::new(Some(body)));
            let again = Retry {
                parts: clone_head(&parts.method, &parts.uri, parts.version, &parts.headers),
                body: slot.clone(),
            };
            let body = TakeBack { slot, body: None };
            (
                http::Request::from_parts(parts, body.boxed_unsync()),
                Some(again),
            )
        } else {
            (request, None)
        };
        let (req, out) = instance.hand_in(request, info, respond(tx.clone(), progress.clone()))?;
        let recorded = progress.clone();
        let sandbox = pool.sandbox.clone();
        let guest = async move {
            let sandbox = &pool.sandbox;
            let result = match instance
                .handle(&pool.pre, sandbox, req, out, &recorded)
                .await
            {
                // Returned without an answer: the instance must not serve
                // again, and a reused one may be why.
                Ok(()) if !recorded.has_responded() => Err(GuestError::NoResponse),
                result => result,
            };
            match &result {
                Ok(()) => {
                    if on_trial {
                        pool.reusable.store(true, Ordering::Relaxed);
                    }
                    pool.give_back(instance);
                }
                Err(error) => {
                    drop(instance);
                    if let Some(retry) = retry
                        && matches!(error, GuestError::Trap(_) | GuestError::NoResponse)
                        && !recorded.has_responded()
                    {
                        return serve_fresh(&pool, retry, info, tx, &recorded, error).await;
                    }
                }
            }
            result
        };
        Ok(Call {
            answer,
            run: Run::new(sandbox.rationed(guest), progress),
        })
    }
}

/// What a request needs to be served again: its head, and its body if the
/// guest never read it.
struct Retry {
    parts: http::request::Parts,
    body: Arc<Mutex<Option<RequestBody>>>,
}

/// Serves a request whose reused instance failed without an answer again,
/// on a fresh instance, and gives the tenant fresh instances from then on.
async fn serve_fresh(
    pool: &Arc<RecycleState>,
    retry: Retry,
    info: CallInfo,
    tx: AnswerSlot,
    progress: &Arc<Progress>,
    error: &GuestError,
) -> RunResult {
    if pool.switch_to_fresh() {
        tracing::warn!(
            target: "catshost::wasm::recycle",
            tenant = &*pool.sandbox.tenant,
            component = pool.pre.name(),
            request_id = %info.id,
            error = %crate::log::chain(error),
            "the component failed on a reused instance without answering: the tenant gets a \
             fresh instance for every request from now on"
        );
    }
    let Some(body) = retry.body.lock().expect("never poisoned").take() else {
        // The guest read the body: it cannot be read again.
        return Err(GuestError::NoResponse);
    };
    let mut instance = P2Instance::new(&pool.pre, &pool.sandbox)?;
    let request = http::Request::from_parts(retry.parts, body);
    let (req, out) = instance.hand_in(request, info, respond(tx, progress.clone()))?;
    let result = instance
        .handle(&pool.pre, &pool.sandbox, req, out, progress)
        .await;
    drop(instance);
    result
}

/// A request body that stays in its slot until the guest first reads it.
struct TakeBack {
    slot: Arc<Mutex<Option<RequestBody>>>,
    body: Option<RequestBody>,
}

impl Body for TakeBack {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.body.is_none() {
            let taken = self.slot.lock().expect("never poisoned").take();
            self.body = taken;
        }
        match &mut self.body {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Some(body) => body.is_end_stream(),
            None => self
                .slot
                .lock()
                .expect("never poisoned")
                .as_ref()
                .is_none_or(|b| b.is_end_stream()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Some(body) => body.size_hint(),
            None => self
                .slot
                .lock()
                .expect("never poisoned")
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint()),
        }
    }
}
