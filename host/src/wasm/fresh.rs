//! The first instance strategy: a fresh instance for every request, made
//! from the pre-instantiated component in a new store (a pooled slot and
//! copy-on-write memory when the engine has a pool). Also the pieces every
//! WASI 0.2 strategy shares: the store, the request handed in, the answer
//! handed out.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::FutureExt;
use http_body_util::BodyExt;
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::ProxyPre;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use super::body::{GuestBody, Progress};
use super::call::{
    Answer, AnswerSender, BodySizeExceeded, Call, CallInfo, GuestRequest, Ran, Run, Strategy,
};
use super::ctx::{GuestCtx, Serving};
use super::error::GuestError;
use super::pre::GuestPre;
use super::sandbox::{InstanceEvents, Sandbox};
use crate::error::BoxError;
use crate::ids::InstanceId;

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
        let mut instance = P2Instance::new(&self.pre, &self.sandbox)?;
        let progress = Arc::new(Progress::default());
        let (tx, answer) = Answer::channel();
        let tx = Arc::new(Mutex::new(Some(tx)));
        let (req, out) = instance.hand_in(request, info, respond(tx, progress.clone()))?;
        let pre = self.pre.clone();
        let sandbox = self.sandbox.clone();
        let recorded = progress.clone();
        let guest = async move {
            let result = instance.handle(&pre, &sandbox, req, out, &recorded).await;
            // Only now, with a failure recorded, may the store (and with
            // it the body's sender) go. The guest may outlive its component
            // (its tenant replaced while it runs): the ticker goes last.
            drop(instance);
            drop(pre);
            result
        };
        Ok(Call {
            answer,
            run: Run::new(rationed(&self.sandbox, guest), progress),
        })
    }
}

/// `guest` under its tenant's CPU share, when it has one: the guest's run
/// and what the host does for it after, above all dropping its store (an
/// instance that grew its memory to 128 MiB takes milliseconds to give it
/// back), so that a tenant whose guests fail fast cannot take the workers
/// with the host's work for them.
pub(crate) fn rationed<F>(
    sandbox: &Sandbox,
    guest: F,
) -> futures_util::future::BoxFuture<'static, F::Output>
where
    F: Future + Send + 'static,
{
    match &sandbox.cpu {
        Some(cpu) => cpu.ration(guest).boxed(),
        None => guest.boxed(),
    }
}

/// A WASI 0.2 instance: its store and, once made, the instance.
pub(crate) struct P2Instance {
    pub(crate) store: Store<GuestCtx>,
    proxy: Option<Proxy>,
    /// Requests it has finished.
    pub(crate) served: u32,
    events: Option<Arc<dyn InstanceEvents>>,
}

impl Drop for P2Instance {
    fn drop(&mut self) {
        if let (Some(_), Some(events)) = (&self.proxy, &self.events) {
            events.retired(self.served);
        }
    }
}

impl P2Instance {
    /// A store for an instance, which its first [`P2Instance::handle`]
    /// makes.
    pub(crate) fn new(pre: &GuestPre, sandbox: &Arc<Sandbox>) -> Result<Self, GuestError> {
        Ok(Self {
            store: new_store(pre, sandbox, InstanceId::next())?,
            proxy: None,
            served: 0,
            events: sandbox.events.clone(),
        })
    }

    /// Hands `request` to the store, with `respond` to take its answer.
    pub(crate) fn hand_in(
        &mut self,
        request: GuestRequest,
        info: CallInfo,
        respond: Respond,
    ) -> Result<
        (
            Resource<HostIncomingRequest>,
            Resource<HostResponseOutparam>,
        ),
        GuestError,
    > {
        let scheme = if info.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        self.store.data_mut().start(info.id);
        let mut http = self.store.data_mut().http();
        let req = http.new_incoming_request(scheme, request.map(|b| b.map_err(body_error)));
        let out = http.new_response_outparam_from_callback(respond);
        match (req, out) {
            (Ok(req), Ok(out)) => Ok((req, out)),
            (Err(e), _) | (_, Err(e)) => Err(GuestError::InvalidRequest(e.into())),
        }
    }

    /// Runs the guest's `handle` (instantiating first, the first time),
    /// under the request deadline. Its caller runs it under the tenant's
    /// CPU share ([`rationed`]), with what comes after it. A failure is
    /// recorded in `progress` before this returns, however it ends (a panic
    /// in a host call included); the instance must not serve again after
    /// one.
    pub(crate) async fn handle(
        &mut self,
        pre: &GuestPre,
        sandbox: &Sandbox,
        req: Resource<HostIncomingRequest>,
        out: Resource<HostResponseOutparam>,
        progress: &Arc<Progress>,
    ) -> Ran {
        let deadline = deadline(sandbox);
        // A reused store's epoch deadline passed while it was idle: without
        // this, its first check of the request would yield at once.
        self.store.set_epoch_deadline(1);
        // Dropped before the store however the run ends: the failure is
        // recorded before the store, and with it the body's sender, goes.
        let failed = FailOnDrop(Some(progress.clone()));
        let store = &mut self.store;
        let proxy = &mut self.proxy;
        let events = &self.events;
        let run = async {
            if proxy.is_none() {
                let ProxyPre::P2(pre) = &*pre.proxy else {
                    unreachable!("a WASI 0.2 strategy serves a WASI 0.2 component")
                };
                let started = Instant::now();
                *proxy = Some(pre.instantiate_async(&mut *store).await?);
                let took = started.elapsed();
                failed.progress().instantiated(took);
                if let Some(events) = events {
                    events.created(took);
                }
            }
            let proxy = proxy.as_ref().expect("made above");
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut *store, req, out)
                .await
        };
        let result = match tokio::time::timeout_at(deadline, run).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(GuestError::from_wasmtime(error)),
            Err(_) => Err(GuestError::Timeout),
        };
        self.store.data().serving().end();
        match result {
            Ok(()) => {
                failed.disarm();
                self.served += 1;
            }
            Err(_) => drop(failed),
        }
        result
    }
}

/// A WASI 0.2 store for the instance `id` of `pre`, held to its sandbox's
/// memory limit and yielding at every epoch tick.
pub(crate) fn new_store(
    pre: &GuestPre,
    sandbox: &Arc<Sandbox>,
    id: InstanceId,
) -> Result<Store<GuestCtx>, GuestError> {
    let serving = Arc::new(Serving::new(id));
    let ctx = GuestCtx::new(serving, sandbox).map_err(|e| GuestError::Preopen(e.into()))?;
    let mut store = Store::new(pre.engine(), ctx);
    store.limiter(|ctx| &mut ctx.limiter);
    // Yield to the executor at every epoch tick (see `EPOCH_TICK`).
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Yield(1)));
    Ok(store)
}

/// When a request that starts now must be done by.
pub(crate) fn deadline(sandbox: &Sandbox) -> tokio::time::Instant {
    // A timeout past what the clock can hold (a library user's, say) is no
    // timeout, not a panic.
    let now = tokio::time::Instant::now();
    now.checked_add(sandbox.limits.request_timeout)
        .unwrap_or_else(|| now + super::limits::MAX_TIMEOUT)
}

/// What takes a WASI 0.2 guest's answer.
pub(crate) type Respond = Box<
    dyn FnOnce(Result<http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>, ErrorCode>)
        + Send
        + Sync
        + 'static,
>;

/// Where a guest's answer goes: taken by the first response set (a retried
/// request hands the same one to its second instance).
pub(crate) type AnswerSlot = Arc<Mutex<Option<AnswerSender>>>;

/// The response outparam's callback: hands the guest's answer to the
/// [`Answer`]. The receiver is gone when the client went away.
pub(crate) fn respond(tx: AnswerSlot, progress: Arc<Progress>) -> Respond {
    Box::new(move |response| {
        let Some(tx) = tx.lock().expect("never poisoned").take() else {
            return;
        };
        progress.responded();
        let answer = match response {
            Ok(response) => Ok(response.map(|body| GuestBody::p2(body, progress))),
            Err(code) => Err(GuestError::ErrorCode(super::error::guest_text(format!(
                "{code:?}"
            )))),
        };
        let _ = tx.send(answer);
    })
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
pub(crate) fn body_error(error: BoxError) -> wasmtime_wasi_http::Error {
    if let Some(exceeded) = error.downcast_ref::<BodySizeExceeded>() {
        return wasmtime_wasi_http::Error::HttpRequestBodySize(Some(exceeded.0));
    }
    match error.downcast::<hyper::Error>() {
        Ok(hyper) => (*hyper).into(),
        Err(_) => wasmtime_wasi_http::Error::HttpProtocolError,
    }
}
