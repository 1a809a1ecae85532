//! A WASI 0.2 instance as the strategies that serve WASI 0.2 components
//! (fresh and recycled) hold it: its store, the request handed in, the
//! guest's `handle` under the request deadline, and the answer handed out.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::BodyExt;
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::ProxyPre;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use super::call::{AnswerSender, CallInfo, GuestRequest, RunResult, body_error};
use super::store;
use crate::ids::InstanceId;
use crate::wasm::compile::GuestPre;
use crate::wasm::guest::{
    GuestBody, GuestCtx, GuestError, InstanceEvents, Progress, Sandbox, guest_text,
};

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
            store: store::new(pre, sandbox, InstanceId::next())?,
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
        self.store.data_mut().start(info.id, info.depth);
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
    /// CPU share ([`Sandbox::rationed`]), with what comes after it. A failure is
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
    ) -> RunResult {
        let deadline = sandbox.deadline();
        // A reused store's epoch deadline passed while it was idle: without
        // this, its first check of the request would yield at once.
        self.store.set_epoch_deadline(1);
        // Dropped before the store however the run ends: the failure is
        // recorded before the store, and with it the body's sender, goes.
        let failed = FailOnDrop(Some(progress.clone()));
        let store = &mut self.store;
        let proxy = &mut self.proxy;
        let run = async {
            if proxy.is_none() {
                let ProxyPre::P2(pre) = pre.proxy() else {
                    unreachable!("a WASI 0.2 strategy serves a WASI 0.2 component")
                };
                let started = Instant::now();
                *proxy = Some(pre.instantiate_async(&mut *store).await?);
                failed
                    .progress()
                    .instantiated(store::instantiated(sandbox, started));
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
/// [`Answer`](super::Answer). The receiver is gone when the client went away.
pub(crate) fn respond(tx: AnswerSlot, progress: Arc<Progress>) -> Respond {
    Box::new(move |response| {
        let Some(tx) = tx.lock().expect("never poisoned").take() else {
            return;
        };
        progress.responded();
        let answer = match response {
            Ok(response) => Ok(response.map(|body| GuestBody::p2(body, progress))),
            Err(code) => Err(GuestError::ErrorCode(guest_text(format!("{code:?}")))),
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
