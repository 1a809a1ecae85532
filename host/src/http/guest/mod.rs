//! Where a guest runs, and how its answer becomes a response.
//!
//! The wasm side hands back a [`Call`]: the guest's answer and its [`Run`].
//! This side decides where the run is polled ([`GuestTask`]: in the
//! request's task for HTTP/1, on a task of its own for HTTP/2), holds the
//! request's admission permit until the run ends (not the body: a guest may
//! run on after its body is sent), stops the guest when its request body
//! goes past its limit or a stop runs out of time, and frames the response
//! (a small body read ahead gets a `content-length`). An answer that accepts
//! its request's upgrade goes out without a body, and the hook's run is
//! returned beside it ([`Dispatched`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http_body::{Body as _, Frame};
use tokio::sync::OwnedSemaphorePermit;

mod task;

use task::GuestTask;
pub(crate) use task::GuestTasks;

use super::HostError;
use super::access::Recorder;
use super::body::{BodyLimit, ResponseBody};
use super::upgrade::Dispatched;
use super::upgrade::hook::Accepting;
use crate::error::BoxError;
use crate::wasm::{
    Answer, Call, CallInfo, GuestBody, GuestError, GuestRequest, Instances, LogBudget, Run,
};

/// How long the host waits, once a guest has set its response, for the
/// first bytes of its body, so the head and a small body leave in one write
/// (and a body complete by then gets a `content-length`).
const FIRST_FRAME_WAIT: Duration = Duration::from_millis(2);

/// A request admitted to its tenant, ready for its guest.
pub(crate) struct Admitted {
    pub(crate) request: GuestRequest,
    pub(crate) info: CallInfo,
    /// The tenant's admission permit: held until the guest ends.
    pub(crate) permit: OwnedSemaphorePermit,
    /// Set when the body's length was not declared.
    pub(crate) body_limit: Option<Arc<BodyLimit>>,
    /// Run the guest on a task of its own from the start (HTTP/2).
    pub(crate) own_task: bool,
    /// The upgrade the request asks for, when its tenant may upgrade.
    pub(crate) upgrade: Option<Accepting>,
}

/// Who a guest's failures are reported as.
pub(crate) struct Reporter {
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) component: Arc<str>,
    /// The tenant's log budget: its guests' faults are logged within it.
    pub(crate) log_budget: Arc<LogBudget>,
}

/// Calls the guest: what resolves once it has set its response (or
/// failed), to the response and, when it accepts the request's upgrade, the
/// hook's run on the connection.
///
/// The request goes to the guest here, outside the future: the future
/// holds only what the answer needs (futures are moved whole, and one that
/// held the request all along was moved with it).
pub(crate) fn call(
    instances: &Instances,
    tasks: &GuestTasks,
    reporter: &Arc<Reporter>,
    admitted: Admitted,
) -> Result<impl Future<Output = Result<Dispatched, HostError>> + Send + 'static, HostError> {
    let Admitted {
        request,
        info,
        permit,
        body_limit,
        own_task,
        upgrade,
    } = admitted;
    let connect = request.method() == http::Method::CONNECT;
    let Call { answer, run } = instances.serve(request, info)?;
    // Dropped with the future or the response body when the client goes
    // away, the guest holds no instance or permit for nobody.
    let guest = GuestTask::new(
        supervise(
            run,
            permit,
            body_limit.clone(),
            tasks,
            reporter.clone(),
            info,
        ),
        own_task,
        tasks,
    );
    Ok(answered(
        answer,
        guest,
        body_limit,
        upgrade.map(Box::new),
        connect,
    ))
}

/// The guest's answer, as [`call`] resolves to it.
async fn answered(
    mut answer: Answer,
    mut guest: GuestTask,
    body_limit: Option<Arc<BodyLimit>>,
    upgrade: Option<Box<Accepting>>,
    connect: bool,
) -> Result<Dispatched, HostError> {
    let answer = std::future::poll_fn(|cx| {
        // Once the guest has ended (and with it the store), the outparam is
        // gone and the answer is ready.
        let _ = guest.poll(cx);
        Pin::new(&mut answer).poll(cx)
    })
    .await;
    match answer {
        // The guest answered a request whose body went past the limit
        // (with an error of its own, most likely): the client learns why.
        Some(_) if body_limit.as_ref().is_some_and(|l| l.is_tripped()) => {
            Err(too_large(&body_limit))
        }
        Some(Ok(response)) => match upgrade {
            // The guest accepts the upgrade its request asks for: the
            // response head goes out without a body, and the connection
            // then goes to the hook. The guest may run on.
            Some(upgrade) if upgrade.accepted_by(response.status()) => {
                guest.detach();
                Ok((*upgrade).accept(response))
            }
            _ => {
                refuse_unserved_upgrade(response.status(), connect)?;
                Ok(Dispatched::response(frame(response, guest).await))
            }
        },
        Some(Err(error)) => {
            // What the guest does after answering is its own affair.
            guest.detach();
            Err(error.into())
        }
        // The guest ended without an answer: its end says why.
        None => {
            std::future::poll_fn(|cx| guest.poll(cx)).await;
            match guest.take_result() {
                Some(Err(error)) => Err(error),
                Some(Ok(())) | None => Err(GuestError::NoResponse.into()),
            }
        }
    }
}

/// Refuses an answer that accepts an upgrade nobody takes (a 101, or a 2xx
/// to CONNECT): hyper would hand the connection over to nobody.
fn refuse_unserved_upgrade(status: http::StatusCode, connect: bool) -> Result<(), HostError> {
    if status == http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(HostError::BadResponse(
            "101 Switching Protocols is not served",
        ));
    }
    if connect && status.is_success() {
        return Err(HostError::BadResponse(
            "a 2xx answer to CONNECT (a tunnel) is not served",
        ));
    }
    Ok(())
}

/// The guest's run as this side sees it through: stopped when its body
/// goes past the limit or the stop cancels it, a failure after its
/// response head logged and counted, and the admission permit given back
/// when it ends.
fn supervise(
    mut run: Run,
    permit: OwnedSemaphorePermit,
    body_limit: Option<Arc<BodyLimit>>,
    tasks: &GuestTasks,
    reporter: Arc<Reporter>,
    info: CallInfo,
) -> impl Future<Output = Result<(), HostError>> + Send + 'static {
    let cancel = tasks.cancel.clone();
    async move {
        let recorder = &reporter.recorder;
        let tripped = async {
            match &body_limit {
                Some(limit) => limit.tripped().await,
                None => std::future::pending().await,
            }
        };
        let mut result = tokio::select! {
            // The run first: one that ends in its first poll (most do, but
            // for their body) never waits on the others.
            biased;
            ran = &mut run => ran.map_err(HostError::from),
            () = tripped => Err(too_large(&body_limit)),
            () = cancel.cancelled() => Err(HostError::Cancelled),
        };
        // A guest that fails on reading a body cut at its limit fails
        // because of the limit.
        if result.is_err() && body_limit.as_ref().is_some_and(|l| l.is_tripped()) {
            result = Err(too_large(&body_limit));
        }
        let answered = run.answered();
        // The store goes; a body the guest was writing ends in an error.
        run.stop();
        if let Err(error) = &result
            && answered
        {
            // The response head is gone: the client sees a cut response,
            // never a short one that looks whole.
            error.log(
                info.id,
                &recorder.tenant,
                &reporter.component,
                true,
                Some(&reporter.log_budget),
            );
            if let Some(counted) = error.kind().counted() {
                recorder.metrics.count(recorder.label(), counted);
            }
        }
        drop(run);
        drop(permit);
        result
    }
}

fn too_large(limit: &Option<Arc<BodyLimit>>) -> HostError {
    HostError::BodyTooLarge {
        limit: limit.as_ref().map_or(0, |l| l.max),
    }
}

/// Reads the start of the guest's body ahead and moves the guest to a task
/// of its own if it is still running.
async fn frame(
    response: http::Response<GuestBody>,
    mut guest: GuestTask,
) -> http::Response<ResponseBody> {
    let (mut parts, body) = response.into_parts();
    let mut body = GuestResponse {
        body,
        first: None,
        second: None,
        ended: false,
        finished: false,
        guest: None,
    };
    if let Some(len) = body.read_ahead(&mut guest).await
        && !parts.headers.contains_key(http::header::CONTENT_LENGTH)
        && !parts.headers.contains_key(http::header::TRANSFER_ENCODING)
    {
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, len.into());
    }
    guest.move_to_task();
    body.guest = Some(guest);
    http::Response::from_parts(parts, ResponseBody::guest(body))
}

type BodyFrame = Result<Frame<Bytes>, BoxError>;

/// A guest's response body, with what was read ahead of it, and the guest
/// that writes it: dropped before its end (the client went away), it stops
/// the guest where it is; read to its end, it lets the guest run on.
pub(crate) struct GuestResponse {
    body: GuestBody,
    first: Option<BodyFrame>,
    second: Option<BodyFrame>,
    /// The body is known to have ended after what was read ahead.
    ended: bool,
    /// The body was read to its clean end.
    finished: bool,
    guest: Option<GuestTask>,
}

impl GuestResponse {
    /// Waits up to [`FIRST_FRAME_WAIT`] for the first frame, polling the
    /// guest meanwhile, and reads it ahead. Returns the body's whole length
    /// when it is already complete.
    async fn read_ahead(&mut self, guest: &mut GuestTask) -> Option<u64> {
        let mut next = std::future::poll_fn(|cx| {
            let _ = guest.poll(cx);
            Pin::new(&mut self.body).poll_frame(cx)
        });
        let first = tokio::time::timeout(FIRST_FRAME_WAIT, &mut next)
            .await
            .ok()?;
        let len = match &first {
            None => Some(0),
            Some(Ok(frame)) => frame.data_ref().map(|data| data.len() as u64),
            Some(Err(_)) => None,
        };
        let ended = first.is_none();
        // A small body is often complete as soon as its first frame is.
        let second = match (len, ended) {
            (Some(_), false) => next.now_or_never(),
            _ => None,
        };
        self.first = first;
        self.ended = ended;
        match second {
            _ if ended => len,
            Some(None) => {
                self.ended = true;
                len
            }
            Some(frame) => {
                self.ended = frame.is_none();
                self.second = frame;
                None
            }
            None => None,
        }
    }
}

impl http_body::Body for GuestResponse {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BodyFrame>> {
        if let Some(frame) = self.first.take().or_else(|| self.second.take()) {
            return Poll::Ready(Some(frame));
        }
        if self.ended {
            self.finished = true;
            return Poll::Ready(None);
        }
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        self.finished = frame.is_none();
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.second.is_none() && self.ended
    }

    /// The body's own hint (what is left of it) plus what was read ahead.
    fn size_hint(&self) -> http_body::SizeHint {
        let ahead: u64 = [&self.first, &self.second]
            .into_iter()
            .flatten()
            .filter_map(|frame| frame.as_ref().ok()?.data_ref())
            .map(|data| data.len() as u64)
            .sum();
        let rest = match self.ended {
            true => http_body::SizeHint::with_exact(0),
            false => self.body.size_hint(),
        };
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(ahead));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(ahead));
        }
        hint
    }
}

impl Drop for GuestResponse {
    fn drop(&mut self) {
        // A guest may go on after finishing its body (to log, say); one
        // whose client went away is stopped (dropping its task does that).
        if (self.finished || http_body::Body::is_end_stream(self))
            && let Some(guest) = &mut self.guest
        {
            guest.detach();
        }
    }
}
