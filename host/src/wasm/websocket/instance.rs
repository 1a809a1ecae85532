//! A WebSocket handler's instances: made as sockets need them, each an
//! actor task that hands its guest one event at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::link::{InstanceSockets, Joined, Link, Rooms};
use super::{EVENTS_PER_INSTANCE, OpenError, OpenRequest, SocketMessage, WitOpenRequest, gone};
use crate::account::Charge;
use crate::config::SocketLimits;
use crate::ids::{InstanceId, RequestId};
use crate::wasm::compile::GuestPre;
use crate::wasm::compile::websocket_wit::{Websocket, WebsocketPre};
use crate::wasm::guest::{GuestCtx, GuestError, Sandbox};
use crate::wasm::instance::store;

/// One tenant's WebSocket handler: its instances, its rooms, its limits
/// and where its instances run (what every clone of `Sockets` shares).
pub(super) struct HandlerInstances {
    pub(super) pre: WebsocketPre<GuestCtx>,
    pub(super) guest: GuestPre,
    pub(super) sandbox: Arc<Sandbox>,
    pub(super) limits: SocketLimits,
    /// Instances with a socket open, or being made for one.
    pub(super) instances: Mutex<Vec<Arc<Slot>>>,
    pub(super) rooms: Arc<Rooms>,
    /// Where the instances run.
    pub(super) tasks: tokio_util::task::TaskTracker,
}

/// An instance as the tenant sees it: where its events go, and how many
/// sockets it serves (changed only under the tenant's `instances` lock).
pub(super) struct Slot {
    pub(super) events: mpsc::Sender<Event>,
    pub(super) open: AtomicUsize,
}

/// An event for an instance's guest.
pub(super) enum Event {
    Open {
        socket: u64,
        request: OpenRequest,
        link: Arc<Link>,
        reply: oneshot::Sender<Result<Option<String>, OpenError>>,
        /// Whether its client still waits for the answer: one gone by the
        /// time the instance takes it is not handed to the guest.
        waiting: Arc<AtomicBool>,
    },
    Message {
        socket: u64,
        message: SocketMessage,
        /// One of the socket's turns, given back once its guest has it.
        _turn: OwnedSemaphorePermit,
        /// The message's bytes on its tenant's account.
        _charge: Charge,
    },
    Closed {
        socket: u64,
        code: u16,
        reason: String,
        /// What the HTTP side held for the socket, given back once its
        /// instance let it go.
        _held: Option<OwnedSemaphorePermit>,
    },
}

impl HandlerInstances {
    /// An instance with room for one more socket, counted in: one that has
    /// it, else a new one.
    pub(super) fn slot(self: &Arc<Self>) -> Arc<Slot> {
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = instances
            .iter()
            .find(|s| s.open.load(Ordering::Acquire) < self.limits.per_instance)
        {
            slot.open.fetch_add(1, Ordering::AcqRel);
            return slot.clone();
        }
        let (events, rx) = mpsc::channel(EVENTS_PER_INSTANCE);
        let slot = Arc::new(Slot {
            events,
            open: AtomicUsize::new(1),
        });
        instances.push(slot.clone());
        let tenant = self.clone();
        let instance = slot.clone();
        self.tasks.spawn(
            self.sandbox
                .rationed(async move { tenant.run(instance, rx).await }),
        );
        slot
    }

    /// One socket of `slot` is gone; whether it was its last, the slot
    /// then taken out (no socket opens on it any more).
    pub(super) fn release(&self, slot: &Arc<Slot>) -> bool {
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        let left = slot.open.fetch_sub(1, Ordering::AcqRel) - 1;
        if left == 0 {
            instances.retain(|s| !Arc::ptr_eq(s, slot));
        }
        left == 0
    }

    /// Takes `slot` out for good: its instance failed.
    fn fail(&self, slot: &Arc<Slot>) {
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        instances.retain(|s| !Arc::ptr_eq(s, slot));
    }

    /// An instance's life: made, then its events one at a time, until its
    /// last socket closes or it fails.
    async fn run(self: Arc<Self>, slot: Arc<Slot>, mut events: mpsc::Receiver<Event>) {
        // However the task ends (a panic included), no socket opens on the
        // slot afterwards.
        let _out = TakenOut(&self, &slot);
        let mut instance = match self.instantiate().await {
            Ok(instance) => instance,
            Err(error) => {
                self.fail(&slot);
                events.close();
                // Every socket waiting to open is told why it does not.
                let mut error = Some(error);
                while let Some(event) = events.recv().await {
                    if let Event::Open { reply, .. } = event {
                        let _ = reply.send(Err(OpenError::Guest(
                            error
                                .take()
                                .unwrap_or_else(|| GuestError::Trap("no instance".into())),
                        )));
                    }
                }
                return;
            }
        };
        let mut handled = 0u32;
        while let Some(event) = events.recv().await {
            handled = handled.saturating_add(1);
            match instance.handle(&self, &slot, event).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    self.fail(&slot);
                    let budget = &self.sandbox.log_budget;
                    if budget.take(&self.sandbox.tenant) {
                        tracing::warn!(
                        tenant = &*self.sandbox.tenant,
                        component = self.guest.name(),
                        instance = %instance.id,
                        sockets = instance.sockets().links.len(),
                        error = %crate::log::chain(&error),
                        "a WebSocket instance failed: its sockets are closed with 1011"
                        );
                    }
                    instance.sockets_mut().fail_all();
                    break;
                }
            }
        }
        if let Some(events) = &self.sandbox.events {
            events.retired(handled);
        }
    }

    async fn instantiate(&self) -> Result<Instance, GuestError> {
        let id = InstanceId::next();
        let mut store = store::new(&self.guest, &self.sandbox, id)?;
        store.data_mut().attach(InstanceSockets {
            links: HashMap::new(),
            rooms: self.rooms.clone(),
            max_message: self.limits.max_message,
        });
        let started = std::time::Instant::now();
        let made = tokio::time::timeout_at(
            self.sandbox.deadline(),
            self.pre.instantiate_async(&mut store),
        )
        .await;
        let handler = match made {
            Ok(Ok(handler)) => handler,
            Ok(Err(error)) => return Err(GuestError::from_wasmtime(error)),
            Err(_) => return Err(GuestError::Timeout),
        };
        store::instantiated(&self.sandbox, started);
        Ok(Instance { id, store, handler })
    }
}

/// Takes its slot out of its tenant when dropped.
struct TakenOut<'a>(&'a HandlerInstances, &'a Arc<Slot>);

impl Drop for TakenOut<'_> {
    fn drop(&mut self) {
        self.0.fail(self.1);
    }
}

/// A WebSocket handler's instance.
struct Instance {
    id: InstanceId,
    store: wasmtime::Store<GuestCtx>,
    handler: Websocket,
}

impl Instance {
    fn sockets(&self) -> &InstanceSockets {
        self.store
            .data()
            .attached()
            .expect("a WebSocket instance's store has its sockets")
    }

    fn sockets_mut(&mut self) -> &mut InstanceSockets {
        sockets_of(&mut self.store)
    }

    /// Hands `event` to the guest, under the tenant's deadline for one
    /// event: `Ok(false)` when its instance has no socket left.
    async fn handle(
        &mut self,
        tenant: &HandlerInstances,
        slot: &Arc<Slot>,
        event: Event,
    ) -> Result<bool, GuestError> {
        self.store.data_mut().start(RequestId::next(), 0);
        // An idle store's epoch deadline passed while it waited.
        self.store.set_epoch_deadline(1);
        let deadline = tenant.sandbox.deadline();
        let guest = self.handler.catshost_websocket_handler();
        let store = &mut self.store;
        let result = match event {
            Event::Open {
                socket,
                request,
                link,
                reply,
                waiting,
            } => {
                if !waiting.load(Ordering::Acquire) {
                    // Its client went away while it waited its turn: the
                    // guest is not asked, and the sockets queued behind it
                    // do not wait for an open nobody will use.
                    let _ = reply.send(Err(OpenError::Guest(gone())));
                    if tenant.release(slot) {
                        store.data().serving().end();
                        return Ok(false);
                    }
                    store.data().serving().end();
                    return Ok(true);
                }
                sockets_of(store).links.insert(socket, Joined::new(link));
                let request = WitOpenRequest {
                    path_with_query: request.path_with_query,
                    headers: request.headers,
                    protocols: request.protocols,
                };
                let called = timed(deadline, guest.call_open(&mut *store, socket, &request)).await;
                let (answer, result) = match called {
                    Ok(Ok(protocol)) => (Ok(protocol), Ok(())),
                    Ok(Err(status)) => (Err(OpenError::Refused(refusal(status))), Ok(())),
                    Err(error) => (Err(OpenError::Guest(gone())), Err(error)),
                };
                let mut opened = answer.is_ok();
                if let Err(Ok(_)) = reply.send(answer) {
                    // Nobody took the socket (the runtime is going away):
                    // the guest hears it closed.
                    let _ =
                        timed(deadline, guest.call_on_close(&mut *store, socket, 1006, "")).await;
                    opened = false;
                }
                if !opened {
                    sockets_of(store).remove(socket);
                    if result.is_ok() && tenant.release(slot) {
                        store.data().serving().end();
                        return Ok(false);
                    }
                }
                result
            }
            Event::Message {
                socket, message, ..
            } => {
                let message = message.into_wit();
                timed(
                    deadline,
                    guest.call_on_message(&mut *store, socket, &message),
                )
                .await
            }
            Event::Closed {
                socket,
                code,
                reason,
                _held,
            } => {
                // Gone from its rooms before the guest hears of it.
                sockets_of(store).remove(socket);
                let called = timed(
                    deadline,
                    guest.call_on_close(&mut *store, socket, code, &reason),
                )
                .await;
                if called.is_ok() && tenant.release(slot) {
                    store.data().serving().end();
                    return Ok(false);
                }
                called
            }
        };
        self.store.data().serving().end();
        result?;
        // What the guest keeps between events is host memory: charged, and
        // an instance that takes its tenant's account past its limit fails.
        let ctx = self.store.data_mut();
        if let Some(kept) = ctx.settle_if_due()
            && ctx.account_over()
        {
            return Err(GuestError::MemoryExhausted(
                format!(
                    "the instance keeps {} bytes of host memory between events, past its \
                     tenant's max_tenant_host_memory",
                    kept.bytes
                )
                .into(),
            ));
        }
        Ok(true)
    }
}

fn sockets_of(store: &mut wasmtime::Store<GuestCtx>) -> &mut InstanceSockets {
    store
        .data_mut()
        .attached_mut()
        .expect("a WebSocket instance's store has its sockets")
}

/// A guest's refusal status as sent: 400 to 599, else 500.
fn refusal(status: u16) -> http::StatusCode {
    match http::StatusCode::from_u16(status) {
        Ok(status) if status.is_client_error() || status.is_server_error() => status,
        _ => http::StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `call` under `deadline`, its failure sorted.
async fn timed<T>(
    deadline: tokio::time::Instant,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> Result<T, GuestError> {
    match tokio::time::timeout_at(deadline, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(GuestError::from_wasmtime(error)),
        Err(_) => Err(GuestError::Timeout),
    }
}
