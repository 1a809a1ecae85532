//! Serving one request with a component: a fresh store and instance, the
//! guest's `handle` (in the request's task or on one of its own: see
//! `GuestRun`), and the response it sets.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http_body::Body as _;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::ctx::{GuestCtx, WasiAccess};
use super::limits::{EpochTicker, InstanceLimits, MemoryExhausted};
use crate::error::BoxError;
use crate::http::RequestId;
use crate::metrics::Metrics;

/// A component compiled and pre-instantiated, ready to serve requests.
///
/// Cloning is cheap: clones share the compiled code.
#[derive(Clone)]
pub struct Handler {
    name: Arc<str>,
    pre: ProxyPre<GuestCtx>,
    /// Keeps the engine's epoch advancing while this handler lives, even if
    /// the `Runtime` that loaded it is gone.
    _ticker: Arc<EpochTicker>,
}

/// What the host tells a guest about a request besides the request itself,
/// and what the request may use.
#[derive(Debug)]
pub struct RequestInfo {
    /// Names the request in logs and in the guest's output lines.
    pub id: RequestId,
    /// Whether the request came over TLS.
    pub tls: bool,
    /// What the instance may use.
    pub limits: InstanceLimits,
    /// Trips when the request body grows past its limit; ends the guest.
    pub body_limit: Option<Arc<BodyLimit>>,
    /// Held until the guest ends (an admission permit, say).
    pub permit: Option<OwnedSemaphorePermit>,
    /// When set, the guest runs only while it holds one of these permits:
    /// one per worker thread its tenant may occupy at once.
    pub cpu: Option<Arc<Semaphore>>,
    /// Names the tenant in the guest's output lines and in metrics.
    pub tenant: Arc<str>,
    /// Where instance creation time and guest faults after the response
    /// head are counted.
    pub metrics: Option<Arc<Metrics>>,
    /// The environment and directories the guest is given.
    pub access: Arc<WasiAccess>,
}

/// Signals that a request body went past its size limit.
#[derive(Debug, Default)]
pub struct BodyLimit {
    tripped: AtomicBool,
    notify: Notify,
}

impl BodyLimit {
    /// Marks the limit as passed and wakes the guest's task.
    pub fn trip(&self) {
        self.tripped.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn is_tripped(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }

    async fn tripped(&self) {
        // `notify_one` stores a permit when nobody waits yet: no lost wake-up.
        while !self.tripped.load(Ordering::Acquire) {
            self.notify.notified().await;
        }
    }
}

/// Where guest tasks run: tracked so a stop can wait for them, and cancelled
/// together when the stop's grace period runs out.
#[derive(Clone, Debug, Default)]
pub struct GuestTasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl GuestTasks {
    /// No more tasks will be spawned; [`GuestTasks::wait`] can now finish.
    pub fn close(&self) {
        self.tracker.close();
    }

    /// Resolves when every task has ended (after [`GuestTasks::close`]).
    pub async fn wait(&self) {
        self.tracker.wait().await;
    }

    /// Stops every running guest where it is.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Guests running now.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no guest is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }
}

/// Why a guest gave no response. Every variant is the guest's fault, not the
/// client's nor the host's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    /// The guest trapped or failed before setting a response.
    #[error("the guest failed before sending a response")]
    Trap(#[source] BoxError),
    /// The guest returned without setting a response.
    #[error("the guest returned without setting a response")]
    NoResponse,
    /// The guest set the response outparam to an error.
    #[error("the guest answered with an error: {0:?}")]
    ErrorCode(ErrorCode),
    /// The request could not be handed to the guest (a `Host` header that is
    /// not text, say): the client's fault.
    #[error("the request cannot be given to the guest")]
    InvalidRequest(#[source] BoxError),
    /// The guest grew its memory past its limit.
    #[error("the guest ran out of memory")]
    MemoryExhausted(#[source] BoxError),
    /// No instance slot was free in the pool (503).
    #[error("no instance is free")]
    NoInstance(#[source] BoxError),
    /// The guest ran past its request timeout.
    #[error("the guest ran past its request timeout")]
    Timeout,
    /// The request body went past its size limit; the guest was stopped.
    #[error("the request body is larger than the limit")]
    BodyTooLarge,
    /// A directory given to guests could not be opened (it was removed,
    /// say): the host's fault, the guest never ran.
    #[error("a directory given to guests cannot be opened")]
    Preopen(#[source] BoxError),
    /// The guest was cancelled by a forced stop.
    #[error("the guest was stopped by the server shutting down")]
    Cancelled,
}

impl Handler {
    pub(crate) fn new(name: &str, pre: ProxyPre<GuestCtx>, ticker: Arc<EpochTicker>) -> Self {
        Self {
            name: name.into(),
            pre,
            _ticker: ticker,
        }
    }

    /// The name the component was loaded under (its path for files).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same compiled component under another name.
    pub fn with_name(&self, name: &str) -> Self {
        Self {
            name: name.into(),
            ..self.clone()
        }
    }

    /// Serves `req` with a new instance of the component.
    ///
    /// Returns once the guest has set its response; the guest goes on
    /// running on a task of `tasks` while it writes the body.
    pub async fn handle<B>(
        &self,
        req: http::Request<B>,
        info: RequestInfo,
        tasks: &GuestTasks,
    ) -> Result<http::Response<GuestBody>, GuestError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let RequestInfo {
            id,
            tls,
            limits,
            body_limit,
            permit,
            cpu,
            tenant,
            metrics,
            access,
        } = info;
        let ctx = GuestCtx::new(id, tenant.clone(), &limits, &access)
            .map_err(|e| GuestError::Preopen(e.into()))?;
        let mut store = Store::new(self.pre.engine(), ctx);
        store.limiter(|ctx| &mut ctx.limiter);
        // Yield to the executor at every epoch tick (see `EPOCH_TICK`).
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Yield(1)));
        let deadline = tokio::time::Instant::now() + limits.request_timeout;

        let scheme = if tls { Scheme::Https } else { Scheme::Http };
        let version = req.version();
        let (tx, mut rx) = oneshot::channel();
        let progress = Arc::new(Progress::default());
        let (req, out) = {
            let mut http = store.data_mut().http();
            let req = http.new_incoming_request(scheme, req);
            let responded = progress.clone();
            let out = http.new_response_outparam_from_callback(move |response| {
                responded.set(Progress::RESPONDED);
                // The receiver is gone when the client went away: nothing to do.
                let _ = tx.send(response);
            });
            match (req, out) {
                (Ok(req), Ok(out)) => (req, out),
                (Err(e), _) | (_, Err(e)) => return Err(GuestError::InvalidRequest(e.into())),
            }
        };

        let limit = body_limit.clone();
        let pre = self.pre.clone();
        // The guest may outlive this handler (its tenant replaced while it
        // runs): without epoch ticks it could neither yield nor time out.
        let ticker = self._ticker.clone();
        let name = self.name.clone();
        let cancel = tasks.cancel.clone();
        let guest = progress.clone();
        let guest = async move {
            let run = async {
                let started = std::time::Instant::now();
                let proxy = pre.instantiate_async(&mut store).await?;
                if let Some(metrics) = &metrics {
                    metrics.instance_created(&tenant, started.elapsed());
                }
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            let body_too_large = async {
                match &body_limit {
                    Some(limit) => limit.tripped().await,
                    None => std::future::pending().await,
                }
            };
            let run = match cpu {
                Some(cpu) => futures_util::future::Either::Left(Rationed::new(run, cpu)),
                None => futures_util::future::Either::Right(run),
            };
            let mut result = tokio::select! {
                result = tokio::time::timeout_at(deadline, run) => match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(classify(error)),
                    Err(_) => Err(GuestError::Timeout),
                },
                () = body_too_large => Err(GuestError::BodyTooLarge),
                () = cancel.cancelled() => Err(GuestError::Cancelled),
            };
            // A guest that fails on reading a body cut at its limit fails
            // because of the limit.
            if result.is_err() && tripped(&body_limit) {
                result = Err(GuestError::BodyTooLarge);
            }
            if let Err(error) = &result
                && guest.fail()
            {
                // The response head is gone: its body ends in an error (see
                // `GuestBody`), so the client sees a cut response, never a
                // short one that looks whole.
                tracing::warn!(request_id = %id, tenant = &*tenant, component = %name, error = %crate::error::chain(error), "guest failed after sending its response");
                if let Some(metrics) = &metrics {
                    metrics.guest_error(&tenant, error);
                }
            }
            // Only now, with the failure recorded, may the store (and with it
            // the body's sender) go; the permit goes with it.
            drop(store);
            drop(permit);
            drop(ticker);
            result
        };
        // Dropped with this future or the response body when the client
        // goes away, the guest holds no instance or permit for nobody.
        let mut guest = GuestRun::new(guest, version == http::Version::HTTP_2, tasks);
        let answer = std::future::poll_fn(|cx| {
            // Once the guest has ended (and with it the store), the
            // outparam is gone and `rx` is ready.
            let _ = guest.poll(cx);
            Pin::new(&mut rx).poll(cx)
        })
        .await;

        match answer {
            // The guest answered a request whose body went past the limit
            // (with an error of its own, most likely): the client learns why.
            Ok(_) if tripped(&limit) => Err(GuestError::BodyTooLarge),
            Ok(Ok(response)) => {
                let (mut parts, inner) = response.into_parts();
                let mut body = GuestBody::new(inner, progress, guest);
                if let Some(len) = body.read_ahead().await
                    && !parts.headers.contains_key(http::header::CONTENT_LENGTH)
                    && !parts.headers.contains_key(http::header::TRANSFER_ENCODING)
                {
                    parts
                        .headers
                        .insert(http::header::CONTENT_LENGTH, len.into());
                }
                body.guest.move_to_task();
                Ok(http::Response::from_parts(parts, body))
            }
            Ok(Err(code)) => {
                // What the guest does after answering is its own affair.
                guest.detach();
                Err(GuestError::ErrorCode(code))
            }
            // The outparam was dropped unset: the guest's end says why.
            Err(_) => {
                std::future::poll_fn(|cx| guest.poll(cx)).await;
                match guest.take_result() {
                    Some(Err(error)) => Err(error),
                    Some(Ok(())) | None => Err(GuestError::NoResponse),
                }
            }
        }
    }
}

/// A guest's run.
///
/// For HTTP/1 it starts without a task of its own: the request's service
/// future polls it until the response is set, and a guest that has finished
/// by then (a hello, say) never needs one. An HTTP/1 connection serves one
/// request at a time, and this spares a task and a wake-up per request. A
/// guest still running when its response head goes out moves to a task of
/// its own ([`GuestRun::move_to_task`]), so it keeps running, and meets its
/// deadline, whether or not the client reads. For HTTP/2 it runs on a task
/// of its own from the start: a connection's streams then finish while the
/// connection's task is away, and it gathers their responses into fewer,
/// larger writes (about 9 responses per `writev` against 4 with the guest
/// in the stream's task: see bench/README.md).
///
/// Dropped before the guest ends, it stops the guest where it is.
struct GuestRun(Run);

enum Run {
    Inline(Pin<Box<dyn Future<Output = Result<(), GuestError>> + Send>>),
    Task(tokio::task::JoinHandle<Result<(), GuestError>>),
    Ended(Option<Result<(), GuestError>>),
}

impl GuestRun {
    fn new(
        run: impl Future<Output = Result<(), GuestError>> + Send + 'static,
        own_task: bool,
        tasks: &GuestTasks,
    ) -> Self {
        if own_task {
            return Self(Run::Task(tasks.tracker.spawn(run)));
        }
        // A panic in the host's side of a guest call fails that request,
        // not the connection that drives it.
        let run = std::panic::AssertUnwindSafe(run)
            .catch_unwind()
            .map(|ended| {
                ended.unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(GuestError::Trap(
                        format!("the guest's run panicked: {what}").into(),
                    ))
                })
            });
        Self(Run::Inline(Box::pin(tasks.tracker.track_future(run))))
    }

    /// Runs the guest on (or waits for its task); ready once it has ended.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let result = match &mut self.0 {
            Run::Inline(run) => ready!(run.as_mut().poll(cx)),
            Run::Task(task) => match ready!(Pin::new(task).poll(cx)) {
                Ok(result) => result,
                Err(join) => Err(GuestError::Trap(join.into())),
            },
            Run::Ended(_) => return Poll::Ready(()),
        };
        // Dropping the run now lets a stop stop waiting for it.
        self.0 = Run::Ended(Some(result));
        Poll::Ready(())
    }

    /// How the guest ended, once [`GuestRun::poll`] has seen it end.
    fn take_result(&mut self) -> Option<Result<(), GuestError>> {
        match &mut self.0 {
            Run::Ended(result) => result.take(),
            _ => None,
        }
    }

    /// Moves a guest still running without a task to a task of its own.
    fn move_to_task(&mut self) {
        if matches!(self.0, Run::Inline(_))
            && let Run::Inline(run) = std::mem::replace(&mut self.0, Run::Ended(None))
        {
            self.0 = Run::Task(tokio::spawn(run));
        }
    }

    /// Lets a guest still running finish on a task of its own.
    fn detach(&mut self) {
        match std::mem::replace(&mut self.0, Run::Ended(None)) {
            Run::Inline(run) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(run);
                }
            }
            // Dropping the handle leaves the task running.
            Run::Task(_) | Run::Ended(_) => {}
        }
    }
}

impl Drop for GuestRun {
    fn drop(&mut self) {
        if let Run::Task(task) = &self.0 {
            task.abort();
        }
    }
}

/// A guest that runs only while it holds a CPU permit of its tenant: it
/// takes one for each poll and gives it back when the poll returns, which
/// is within an epoch tick (`EPOCH_TICK`) however long the guest computes.
/// The semaphore queues waiters in order, so a tenant's guests take turns
/// on the workers it may use while other tenants' guests run on the rest.
struct Rationed<F> {
    guest: Pin<Box<F>>,
    cpu: Arc<Semaphore>,
    waiting: Option<Pin<Box<dyn Future<Output = OwnedSemaphorePermit> + Send>>>,
}

impl<F: Future> Rationed<F> {
    fn new(guest: F, cpu: Arc<Semaphore>) -> Self {
        Self {
            guest: Box::pin(guest),
            cpu,
            waiting: None,
        }
    }
}

impl<F: Future> Future for Rationed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        // Succeeds only when no other guest of the tenant waits: released
        // permits go to waiters first.
        let permit = match this.cpu.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let cpu = this.cpu.clone();
                let waiting = this.waiting.get_or_insert_with(|| {
                    Box::pin(async move {
                        cpu.acquire_owned()
                            .await
                            .expect("a tenant's CPU semaphore is never closed")
                    })
                });
                let permit = ready!(waiting.as_mut().poll(cx));
                this.waiting = None;
                permit
            }
        };
        let polled = this.guest.as_mut().poll(cx);
        drop(permit);
        polled
    }
}

/// How far a guest got: shared by its task and its response body.
#[derive(Default)]
struct Progress(AtomicU8);

impl Progress {
    const RESPONDED: u8 = 1;
    const FAILED_AFTER_RESPONSE: u8 = 2;

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Release);
    }

    /// Records a failure; returns whether it came after the response head.
    fn fail(&self) -> bool {
        self.0
            .compare_exchange(
                Self::RESPONDED,
                Self::FAILED_AFTER_RESPONSE,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    fn failed_after_response(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::FAILED_AFTER_RESPONSE
    }
}

/// How long the host waits, once a guest has set its response, for the
/// first bytes of its body, so the head and a small body leave in one write
/// (and a body complete by then gets a `content-length`).
const FIRST_FRAME_WAIT: Duration = Duration::from_millis(2);

/// The body of a guest's response, as the guest writes it.
///
/// If the guest fails before finishing the body, the body ends with an error
/// instead of a clean end, so hyper closes the HTTP/1 connection (no final
/// chunk) or resets the HTTP/2 stream.
pub struct GuestBody {
    inner: HyperOutgoingBody,
    progress: Arc<Progress>,
    /// Frames read ahead (see [`FIRST_FRAME_WAIT`]).
    first: Option<Result<http_body::Frame<Bytes>, BoxError>>,
    second: Option<Result<http_body::Frame<Bytes>, BoxError>>,
    /// The body is known to have ended after `first`.
    ended: bool,
    /// Polled while the body is read ahead, then on a task of its own if
    /// still running. Dropped with a body not read to its end (the client
    /// went away): the guest is stopped where it is.
    guest: GuestRun,
    /// The body was read to its clean end.
    finished: bool,
}

impl GuestBody {
    fn new(inner: HyperOutgoingBody, progress: Arc<Progress>, guest: GuestRun) -> Self {
        Self {
            inner,
            progress,
            first: None,
            second: None,
            ended: false,
            guest,
            finished: false,
        }
    }

    /// Runs the guest on, then takes the next frame it has written.
    fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, wasmtime_wasi_http::Error>>> {
        let _ = self.guest.poll(cx);
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    /// The next frame, or the error that replaces the end when the guest
    /// failed.
    fn finish_frame(
        &self,
        frame: Option<Result<http_body::Frame<Bytes>, wasmtime_wasi_http::Error>>,
    ) -> Option<Result<http_body::Frame<Bytes>, BoxError>> {
        match frame {
            Some(frame) => Some(frame.map_err(BoxError::from)),
            None if self.progress.failed_after_response() => Some(Err(
                "the guest failed before finishing the response body".into(),
            )),
            None => None,
        }
    }

    /// Waits up to [`FIRST_FRAME_WAIT`] for the first frame and reads it
    /// ahead. Returns the body's whole length when it is already complete.
    async fn read_ahead(&mut self) -> Option<u64> {
        let first = tokio::time::timeout(
            FIRST_FRAME_WAIT,
            std::future::poll_fn(|cx| self.poll_inner(cx)),
        )
        .await;
        let Ok(first) = first else {
            return None;
        };
        let first = self.finish_frame(first);
        let len = match &first {
            None => Some(0),
            Some(Ok(frame)) => frame.data_ref().map(|data| data.len() as u64),
            Some(Err(_)) => None,
        };
        self.ended = first.is_none();
        self.first = first;
        let len = len?;
        if self.ended {
            return Some(len);
        }
        // A small body is often complete as soon as its first frame is.
        match std::future::poll_fn(|cx| self.poll_inner(cx)).now_or_never() {
            Some(None) if !self.progress.failed_after_response() => {
                self.ended = true;
                Some(len)
            }
            Some(next) => {
                self.second = self.finish_frame(next);
                self.ended = self.second.is_none();
                None
            }
            None => None,
        }
    }
}

impl http_body::Body for GuestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.first.take().or_else(|| self.second.take()) {
            return Poll::Ready(Some(frame));
        }
        if self.ended {
            self.finished = true;
            return Poll::Ready(None);
        }
        let frame = ready!(self.poll_inner(cx));
        let frame = self.finish_frame(frame);
        self.finished = frame.is_none();
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.second.is_none() && self.ended
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for GuestBody {
    fn drop(&mut self) {
        // A guest may go on after finishing its body (to log, say); one
        // whose client went away is stopped.
        if self.finished || http_body::Body::is_end_stream(self) {
            self.guest.detach();
        }
    }
}

impl std::fmt::Debug for GuestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestBody").finish_non_exhaustive()
    }
}

fn tripped(limit: &Option<Arc<BodyLimit>>) -> bool {
    limit.as_ref().is_some_and(|limit| limit.is_tripped())
}

/// Sorts a guest's failure by its cause.
fn classify(error: wasmtime::Error) -> GuestError {
    if error.is::<MemoryExhausted>() {
        GuestError::MemoryExhausted(error.into())
    } else if error.is::<wasmtime::PoolConcurrencyLimitError>() {
        GuestError::NoInstance(error.into())
    } else {
        GuestError::Trap(error.into())
    }
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
