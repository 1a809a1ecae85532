//! The first instance strategy: a fresh instance for every request, made
//! from the pre-instantiated component in a new store (a pooled slot and
//! copy-on-write memory when the engine has a pool).

use std::sync::{Arc, Mutex};

use super::Strategy;
use super::call::{Answer, Call, CallInfo, GuestRequest, Run};
use super::p2::{P2Instance, respond};
use crate::wasm::compile::GuestPre;
use crate::wasm::guest::{GuestError, Progress, Sandbox};

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
            run: Run::new(self.sandbox.rationed(guest), progress),
        })
    }
}
