//! The first instance strategy: a fresh instance for every request, made
//! from the pre-instantiated component in a new store (a pooled slot and
//! copy-on-write memory when the engine has a pool).

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use http_body_util::BodyExt;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use super::body::{GuestBody, Progress};
use super::call::{
    Answer, AnswerSender, BodySizeExceeded, Call, CallInfo, GuestRequest, Run, Strategy,
};
use super::ctx::GuestCtx;
use super::error::GuestError;
use super::pre::GuestPre;
use super::sandbox::Sandbox;
use crate::error::BoxError;

/// One fresh instance per request.
pub(crate) struct Fresh {
    pre: GuestPre,
    sandbox: Arc<Sandbox>,
}

impl Fresh {
    pub(crate) fn new(pre: GuestPre, sandbox: Arc<Sandbox>) -> Self {
        Self { pre, sandbox }
    }
}

impl Strategy for Fresh {
    fn serve(&self, request: GuestRequest, info: CallInfo) -> Result<Call, GuestError> {
        let sandbox = &self.sandbox;
        let ctx = GuestCtx::new(info.id, sandbox).map_err(|e| GuestError::Preopen(e.into()))?;
        let mut store = Store::new(self.pre.proxy.engine(), ctx);
        store.limiter(|ctx| &mut ctx.limiter);
        // Yield to the executor at every epoch tick (see `EPOCH_TICK`).
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Yield(1)));
        // A timeout past what the clock can hold (a library user's, say)
        // is no timeout, not a panic.
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(sandbox.limits.request_timeout)
            .unwrap_or_else(|| now + super::limits::MAX_TIMEOUT);

        let progress = Arc::new(Progress::default());
        let (tx, answer) = Answer::channel();
        let scheme = if info.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let (req, out) = {
            let mut http = store.data_mut().http();
            let req = http.new_incoming_request(scheme, request.map(|b| b.map_err(body_error)));
            let out = http.new_response_outparam_from_callback(respond(tx, progress.clone()));
            match (req, out) {
                (Ok(req), Ok(out)) => (req, out),
                (Err(e), _) | (_, Err(e)) => return Err(GuestError::InvalidRequest(e.into())),
            }
        };

        let pre = self.pre.clone();
        let cpu = sandbox.cpu.clone();
        let recorded = progress.clone();
        let guest = async move {
            // Dropped before `store` however the run ends (a panic in a host
            // call included): the failure is recorded before the store, and
            // with it the body's sender, goes.
            let failed = FailOnDrop(Some(recorded));
            let run = async {
                let started = Instant::now();
                let proxy = pre.proxy.instantiate_async(&mut store).await?;
                failed.progress().instantiated(started.elapsed());
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            let run = match cpu {
                Some(cpu) => cpu.ration(run).left_future(),
                None => run.right_future(),
            };
            let result = match tokio::time::timeout_at(deadline, run).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(GuestError::from_wasmtime(error)),
                Err(_) => Err(GuestError::Timeout),
            };
            match result {
                Ok(()) => failed.disarm(),
                Err(_) => drop(failed),
            }
            // Only now, with a failure recorded, may the store (and with
            // it the body's sender) go. The guest may outlive its component
            // (its tenant replaced while it runs): the ticker goes last.
            drop(store);
            drop(pre);
            result
        };
        Ok(Call {
            answer,
            run: Run::new(guest.boxed(), progress),
        })
    }
}

/// The response outparam's callback: hands the guest's answer to the
/// [`Answer`]. The receiver is gone when the client went away.
fn respond(
    tx: AnswerSender,
    progress: Arc<Progress>,
) -> impl FnOnce(Result<http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>, ErrorCode>)
+ Send
+ Sync
+ 'static {
    move |response| {
        progress.responded();
        let answer = match response {
            Ok(response) => Ok(response.map(|body| GuestBody::p2(body, progress))),
            Err(code) => Err(GuestError::ErrorCode(code)),
        };
        let _ = tx.send(answer);
    }
}

/// Records a failure of the guest when dropped, unless disarmed.
struct FailOnDrop(Option<Arc<Progress>>);

impl FailOnDrop {
    fn progress(&self) -> &Progress {
        self.0.as_ref().expect("armed until the run ends")
    }

    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for FailOnDrop {
    fn drop(&mut self) {
        if let Some(progress) = &self.0 {
            progress.fail();
        }
    }
}

/// A request body's error as the guest sees it.
fn body_error(error: BoxError) -> wasmtime_wasi_http::Error {
    if let Some(exceeded) = error.downcast_ref::<BodySizeExceeded>() {
        return wasmtime_wasi_http::Error::HttpRequestBodySize(Some(exceeded.0));
    }
    match error.downcast::<hyper::Error>() {
        Ok(hyper) => (*hyper).into(),
        Err(_) => wasmtime_wasi_http::Error::HttpProtocolError,
    }
}
