//! Where a guest's run is polled ([`GuestTask`]: in the request's task, or
//! on a task of its own) and the tasks a stop waits for ([`GuestTasks`]).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::HostError;
use crate::wasm::GuestError;

/// Where guest runs are polled: tracked so a stop can wait for them, and
/// cancelled together when the stop's grace period runs out.
#[derive(Clone, Debug, Default)]
pub(crate) struct GuestTasks {
    tracker: TaskTracker,
    pub(super) cancel: CancellationToken,
    /// The WebSocket handlers' instances: a stop waits for them after the
    /// sockets, so every guest hears of its sockets' close.
    websockets: TaskTracker,
}

impl GuestTasks {
    /// Where WebSocket handlers' instances run.
    pub(crate) fn websockets(&self) -> &TaskTracker {
        &self.websockets
    }

    /// No more tasks will be spawned; [`GuestTasks::wait`] can now finish.
    pub(crate) fn close(&self) {
        self.tracker.close();
    }

    /// Resolves when every task has ended (after [`GuestTasks::close`]).
    pub(crate) async fn wait(&self) {
        self.tracker.wait().await;
    }

    /// Stops every running guest where it is.
    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Guests running now.
    pub(crate) fn len(&self) -> usize {
        self.tracker.len()
    }
}

/// A guest's run, wherever it is polled.
///
/// For HTTP/1 it starts without a task of its own: the request's service
/// future polls it until the response is set, and a guest that has finished
/// by then (a hello, say) never needs one. An HTTP/1 connection serves one
/// request at a time, and this spares a task and a wake-up per request. A
/// guest still running when its response head goes out moves to a task of
/// its own ([`GuestTask::move_to_task`]), so it keeps running, and meets its
/// deadline, whether or not the client reads. For HTTP/2 it runs on a task
/// of its own from the start: a connection's streams then finish while the
/// connection's task is away, and it gathers their responses into fewer,
/// larger writes (about 9 responses per `writev` against 4 with the guest
/// in the stream's task: see bench/README.md).
///
/// Dropped before the guest ends, it stops the guest where it is.
pub(crate) struct GuestTask(RunState);

type Supervised = Pin<Box<dyn Future<Output = Result<(), HostError>> + Send>>;

/// Where a guest's run is polled: in the request's task, on a task of its
/// own, or nowhere, ended (with its result until it is taken).
enum RunState {
    Inline(Supervised),
    Task(tokio::task::JoinHandle<Result<(), HostError>>),
    Ended(Option<Result<(), HostError>>),
}

impl GuestTask {
    pub(super) fn new(
        run: impl Future<Output = Result<(), HostError>> + Send + 'static,
        own_task: bool,
        tasks: &GuestTasks,
    ) -> Self {
        if own_task {
            return Self(RunState::Task(tasks.tracker.spawn(run)));
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
                    Err(GuestError::Trap(format!("the guest's run panicked: {what}").into()).into())
                })
            });
        Self(RunState::Inline(Box::pin(tasks.tracker.track_future(run))))
    }

    /// Runs the guest on (or waits for its task); ready once it has ended.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let result = match &mut self.0 {
            RunState::Inline(run) => ready!(run.as_mut().poll(cx)),
            RunState::Task(task) => match ready!(Pin::new(task).poll(cx)) {
                Ok(result) => result,
                Err(join) => Err(GuestError::Trap(join.into()).into()),
            },
            RunState::Ended(_) => return Poll::Ready(()),
        };
        // Dropping the run now lets a stop stop waiting for it.
        self.0 = RunState::Ended(Some(result));
        Poll::Ready(())
    }

    /// How the guest ended, once [`GuestTask::poll`] has seen it end.
    pub(super) fn take_result(&mut self) -> Option<Result<(), HostError>> {
        match &mut self.0 {
            RunState::Ended(result) => result.take(),
            _ => None,
        }
    }

    /// Moves a guest still running without a task to a task of its own
    /// (still tracked: it was tracked from the start).
    pub(super) fn move_to_task(&mut self) {
        if matches!(self.0, RunState::Inline(_))
            && let RunState::Inline(run) = std::mem::replace(&mut self.0, RunState::Ended(None))
        {
            self.0 = RunState::Task(tokio::spawn(run));
        }
    }

    /// Lets a guest still running finish on a task of its own.
    pub(super) fn detach(&mut self) {
        match std::mem::replace(&mut self.0, RunState::Ended(None)) {
            RunState::Inline(run) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(run);
                }
            }
            // Dropping the handle leaves the task running.
            RunState::Task(_) | RunState::Ended(_) => {}
        }
    }
}

impl Drop for GuestTask {
    fn drop(&mut self) {
        if let RunState::Task(task) = &self.0 {
            task.abort();
        }
    }
}
