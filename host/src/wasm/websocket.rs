//! WebSocket handlers: components that export `catshost:websocket/handler`
//! (wit/websocket). The HTTP side speaks RFC 6455 and hands this side whole
//! messages; this side hands them to a guest, one event at a time per
//! instance, and gives back what the guest sends.
//!
//! A tenant's sockets share its instances ([`SocketLimits::per_instance`]
//! to an instance): an instance is made for the first socket that finds no
//! room in another, keeps what it holds between events, and goes when its
//! last socket closes. An instance that fails (traps, runs past its
//! deadline or out of memory) takes its sockets down, each closed with
//! 1011; the tenant's other instances, and its HTTP requests, go on.
//!
//! Rooms are the tenant's: every socket of its instances may join them, and
//! a message published to one is queued on each of its sockets directly,
//! without a call into their guests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use wasmtime::component::HasSelf;

use super::ctx::GuestCtx;
use super::error::{GuestError, guest_text};
use super::fresh::{deadline, new_store, rationed};
use super::pre::GuestPre;
use super::sandbox::Sandbox;
use crate::ids::{InstanceId, RequestId};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/websocket",
        world: "catshost:websocket/websocket",
        exports: { default: async },
        require_store_data_send: true,
    });
}

pub(crate) use bindings::WebsocketPre;
use bindings::catshost::websocket::sockets::{self as wit, SocketError};
use bindings::exports::catshost::websocket::handler::OpenRequest as WitOpenRequest;

/// The interface a WebSocket handler exports, without its patch version.
const HANDLER: &str = "catshost:websocket/handler@0.1";

/// The most rooms one socket is in at once.
const MAX_ROOMS_PER_SOCKET: usize = 16;
/// The longest room name, in bytes.
const MAX_ROOM_NAME: usize = 128;
/// The longest close reason, in bytes (a close frame's payload is at most
/// 125 bytes, two of them the code).
const MAX_CLOSE_REASON: usize = 123;
/// Events queued for one instance, past which sockets wait to hand theirs
/// in (and stop reading their clients).
const EVENTS_PER_INSTANCE: usize = 256;
/// How much larger than the largest message a socket's queue of outgoing
/// messages may grow before its client is deemed too slow.
const OUTGOING_MESSAGES: usize = 4;
/// What a queued message costs besides its bytes (its entry in the queue),
/// so that empty messages are not free.
const MESSAGE_OVERHEAD: usize = 64;
/// Messages of one socket handed to its instance and not yet taken by its
/// guest: one socket cannot fill its instance's queue.
const TURNS_PER_SOCKET: usize = 2;

/// Links the host side of `catshost:websocket/sockets` into `linker`.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<GuestCtx>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<GuestCtx, HasSelf<GuestCtx>>(linker, |ctx| ctx)
}

/// Whether `component` exports a WebSocket handler.
pub(crate) fn exports_handler(
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> bool {
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| name.starts_with(HANDLER))
}

/// What a tenant's sockets may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketLimits {
    /// The largest message, in bytes, either way.
    pub max_message: usize,
    /// The most sockets one instance serves.
    pub per_instance: usize,
}

impl SocketLimits {
    /// How many bytes of messages a socket may have queued for its client.
    fn outgoing_budget(&self) -> usize {
        self.max_message.saturating_mul(OUTGOING_MESSAGES)
    }
}

/// A whole message, either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketMessage {
    /// Text: always valid UTF-8.
    Text(Bytes),
    /// Binary.
    Binary(Bytes),
}

impl SocketMessage {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(b) | Self::Binary(b) => b.len(),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A text message of `text`.
    pub fn text(text: String) -> Self {
        Self::Text(Bytes::from(text.into_bytes()))
    }

    fn into_wit(self) -> wit::Message {
        match self {
            Self::Text(b) => {
                wit::Message::Text(String::from_utf8(b.to_vec()).expect("a text message is UTF-8"))
            }
            Self::Binary(b) => wit::Message::Binary(b.to_vec()),
        }
    }

    fn from_wit(message: wit::Message) -> Self {
        match message {
            wit::Message::Text(text) => Self::text(text),
            wit::Message::Binary(bytes) => Self::Binary(Bytes::from(bytes)),
        }
    }
}

/// What the guest sends its client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// A message.
    Message(SocketMessage),
    /// A close frame: nothing follows it.
    Close(u16, String),
}

/// The request that opens a socket, as its guest is given it.
#[derive(Clone, Debug, Default)]
pub struct OpenRequest {
    /// The path and query.
    pub path_with_query: String,
    /// Every header.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The subprotocols the client offers, in its order.
    pub protocols: Vec<String>,
}

/// Why a socket did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The guest refused it with this status.
    #[error("the guest refused the socket with {0}")]
    Refused(http::StatusCode),
    /// The guest accepted it with a subprotocol the client did not offer.
    #[error("the guest chose the subprotocol '{0}', which the client did not offer")]
    BadProtocol(String),
    /// The guest failed, or its instance could not be made.
    #[error(transparent)]
    Guest(#[from] GuestError),
}

/// An open socket, as the HTTP side holds it.
pub struct Opened {
    /// Names the socket to its guest, and in the logs.
    pub socket: u64,
    /// The subprotocol the guest chose.
    pub protocol: Option<String>,
    /// Hands the guest what comes from the client.
    pub events: SocketEvents,
    /// What the guest sends the client.
    pub outbox: Outbox,
}

/// One tenant's WebSocket side: its instances of the handler and its rooms.
/// Cheap to clone.
#[derive(Clone)]
pub struct Sockets(Arc<Tenant>);

struct Tenant {
    pre: WebsocketPre<GuestCtx>,
    guest: GuestPre,
    sandbox: Arc<Sandbox>,
    limits: SocketLimits,
    /// Instances with a socket open, or being made for one.
    instances: Mutex<Vec<Arc<Slot>>>,
    rooms: Arc<Rooms>,
    /// Where the instances run.
    tasks: tokio_util::task::TaskTracker,
}

/// An instance as the tenant sees it: where its events go, and how many
/// sockets it serves (changed only under the tenant's `instances` lock).
struct Slot {
    events: mpsc::Sender<Event>,
    open: AtomicUsize,
}

/// An event for an instance's guest.
enum Event {
    Open {
        socket: u64,
        request: OpenRequest,
        link: Arc<Link>,
        reply: oneshot::Sender<Result<Option<String>, OpenError>>,
    },
    Message {
        socket: u64,
        message: SocketMessage,
        /// One of the socket's turns, given back once its guest has it.
        _turn: OwnedSemaphorePermit,
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

/// The tenant's rooms: name to the sockets in it.
#[derive(Default)]
struct Rooms(Mutex<HashMap<String, HashMap<u64, Arc<Link>>>>);

impl Rooms {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, Arc<Link>>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leave(&self, socket: u64, name: &str) {
        let mut rooms = self.lock();
        if let Some(room) = rooms.get_mut(name) {
            room.remove(&socket);
            if room.is_empty() {
                rooms.remove(name);
            }
        }
    }
}

static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

impl Sockets {
    /// The WebSocket side of a tenant whose component `guest` exports the
    /// handler (`pre`), in `sandbox`.
    pub(crate) fn new(
        guest: GuestPre,
        pre: WebsocketPre<GuestCtx>,
        sandbox: Arc<Sandbox>,
        limits: SocketLimits,
        tasks: tokio_util::task::TaskTracker,
    ) -> Self {
        Self(Arc::new(Tenant {
            pre,
            guest,
            sandbox,
            limits: SocketLimits {
                per_instance: limits.per_instance.max(1),
                ..limits
            },
            instances: Mutex::default(),
            rooms: Arc::default(),
            tasks,
        }))
    }

    /// What the sockets may use.
    pub fn limits(&self) -> SocketLimits {
        self.0.limits
    }

    /// Asks the guest to open a socket for `request`: on `Ok` the socket is
    /// open, and the HTTP side completes the handshake.
    ///
    /// The guest's `open` runs to its end even if this future is dropped
    /// (its client gone): a socket it accepted then closes with 1006.
    pub async fn open(&self, request: OpenRequest) -> Result<Opened, OpenError> {
        let sockets = self.clone();
        tokio::spawn(async move { sockets.open_now(request).await })
            .await
            .unwrap_or_else(|_| Err(OpenError::Guest(gone())))
    }

    async fn open_now(&self, request: OpenRequest) -> Result<Opened, OpenError> {
        let socket = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
        let (link, outbox) = Link::new(socket, self.0.limits.outgoing_budget());
        let slot = self.0.slot();
        let (reply, replied) = oneshot::channel();
        let offered = request.protocols.clone();
        let event = Event::Open {
            socket,
            request,
            link,
            reply,
        };
        if slot.events.send(event).await.is_err() {
            return Err(OpenError::Guest(gone()));
        }
        let protocol = replied.await.map_err(|_| gone())??;
        if let Some(protocol) = &protocol
            && !offered.contains(protocol)
        {
            // The guest thinks it open: tell it that it closed.
            let events = SocketEvents::new(socket, slot);
            events.closed(1002, "no such subprotocol".into()).await;
            return Err(OpenError::BadProtocol(guest_text(protocol.clone())));
        }
        Ok(Opened {
            socket,
            protocol,
            events: SocketEvents::new(socket, slot),
            outbox,
        })
    }
}

/// The error of a socket whose instance is gone.
fn gone() -> GuestError {
    GuestError::Trap("the socket's instance ended".into())
}

impl Tenant {
    /// An instance with room for one more socket, counted in: one that has
    /// it, else a new one.
    fn slot(self: &Arc<Self>) -> Arc<Slot> {
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
        self.tasks.spawn(rationed(&self.sandbox, async move {
            tenant.run(instance, rx).await
        }));
        slot
    }

    /// One socket of `slot` is gone; whether it was its last, the slot
    /// then taken out (no socket opens on it any more).
    fn release(&self, slot: &Arc<Slot>) -> bool {
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
                    tracing::warn!(
                        tenant = &*self.sandbox.tenant,
                        component = self.guest.name(),
                        instance = %instance.id,
                        sockets = instance.sockets().links.len(),
                        error = %crate::log::chain(&error),
                        "a WebSocket instance failed: its sockets are closed with 1011"
                    );
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
        let mut store = new_store(&self.guest, &self.sandbox, id)?;
        store.data_mut().sockets = Some(InstanceSockets {
            links: HashMap::new(),
            rooms: self.rooms.clone(),
            max_message: self.limits.max_message,
        });
        let started = std::time::Instant::now();
        let made = tokio::time::timeout_at(
            deadline(&self.sandbox),
            self.pre.instantiate_async(&mut store),
        )
        .await;
        let handler = match made {
            Ok(Ok(handler)) => handler,
            Ok(Err(error)) => return Err(GuestError::from_wasmtime(error)),
            Err(_) => return Err(GuestError::Timeout),
        };
        if let Some(events) = &self.sandbox.events {
            events.created(started.elapsed());
        }
        Ok(Instance { id, store, handler })
    }
}

/// Takes its slot out of its tenant when dropped.
struct TakenOut<'a>(&'a Tenant, &'a Arc<Slot>);

impl Drop for TakenOut<'_> {
    fn drop(&mut self) {
        self.0.fail(self.1);
    }
}

/// A WebSocket handler's instance.
struct Instance {
    id: InstanceId,
    store: wasmtime::Store<GuestCtx>,
    handler: bindings::Websocket,
}

impl Instance {
    fn sockets(&self) -> &InstanceSockets {
        self.store
            .data()
            .sockets
            .as_ref()
            .expect("a WebSocket instance's store has its sockets")
    }

    fn sockets_mut(&mut self) -> &mut InstanceSockets {
        self.store
            .data_mut()
            .sockets
            .as_mut()
            .expect("a WebSocket instance's store has its sockets")
    }

    /// Hands `event` to the guest, under the tenant's deadline for one
    /// event: `Ok(false)` when its instance has no socket left.
    async fn handle(
        &mut self,
        tenant: &Tenant,
        slot: &Arc<Slot>,
        event: Event,
    ) -> Result<bool, GuestError> {
        self.store.data_mut().start(RequestId::next());
        // An idle store's epoch deadline passed while it waited.
        self.store.set_epoch_deadline(1);
        let deadline = deadline(&tenant.sandbox);
        let guest = self.handler.catshost_websocket_handler();
        let store = &mut self.store;
        let result = match event {
            Event::Open {
                socket,
                request,
                link,
                reply,
            } => {
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
        result.map(|()| true)
    }
}

fn sockets_of(store: &mut wasmtime::Store<GuestCtx>) -> &mut InstanceSockets {
    store
        .data_mut()
        .sockets
        .as_mut()
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

/// Hands a socket's client's messages and its end to its guest.
pub struct SocketEvents {
    socket: u64,
    slot: Arc<Slot>,
    turns: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
    closed: bool,
}

impl SocketEvents {
    fn new(socket: u64, slot: Arc<Slot>) -> Self {
        Self {
            socket,
            slot,
            turns: Arc::new(Semaphore::new(TURNS_PER_SOCKET)),
            held: None,
            closed: false,
        }
    }

    /// Keeps `permit` until the socket's instance has let it go (after its
    /// guest's `on-close`).
    pub fn hold(&mut self, permit: OwnedSemaphorePermit) {
        self.held = Some(permit);
    }

    /// Hands `message` to the guest: resolves once the socket has a turn
    /// (at most two of its messages wait for its guest) and its instance
    /// room for it; an error when the instance is gone. Owns what it needs:
    /// the caller may poll it beside other work.
    pub fn message(
        &self,
        message: SocketMessage,
    ) -> impl Future<Output = Result<(), InstanceGone>> + Send + 'static {
        let (socket, turns, events) = (self.socket, self.turns.clone(), self.slot.events.clone());
        async move {
            let turn = turns.acquire_owned().await.map_err(|_| InstanceGone)?;
            let event = Event::Message {
                socket,
                message,
                _turn: turn,
            };
            events.send(event).await.map_err(|_| InstanceGone)
        }
    }

    /// Tells the guest its socket closed, with `code` and `reason`.
    pub async fn closed(mut self, code: u16, reason: String) {
        let event = Event::Closed {
            socket: self.socket,
            code,
            reason,
            _held: self.held.take(),
        };
        // Dropped before it is sent, the socket closes with 1006 (Drop).
        if let Err(mpsc::error::SendError(Event::Closed { _held, .. })) =
            self.slot.events.send(event).await
        {
            self.held = _held;
        }
        self.closed = true;
    }
}

impl Drop for SocketEvents {
    /// A socket dropped without a word (its connection cut) closed with
    /// 1006 as far as its guest knows.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let event = Event::Closed {
            socket: self.socket,
            code: 1006,
            reason: String::new(),
            _held: self.held.take(),
        };
        if let Err(mpsc::error::TrySendError::Full(event)) = self.slot.events.try_send(event)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let events = self.slot.events.clone();
            runtime.spawn(async move {
                let _ = events.send(event).await;
            });
        }
    }
}

/// The socket's instance is gone.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the socket's instance is gone")]
pub struct InstanceGone;

/// The guest's end of a socket: what it sends is queued here for the HTTP
/// side.
struct Link {
    socket: u64,
    tx: mpsc::UnboundedSender<Outgoing>,
    /// Bytes of messages queued and not yet taken by the HTTP side.
    queued: Arc<AtomicUsize>,
    budget: usize,
    /// Set once a close is queued: nothing more is sent.
    closing: AtomicBool,
}

impl Link {
    fn new(socket: u64, budget: usize) -> (Arc<Self>, Outbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let link = Arc::new(Self {
            socket,
            tx,
            queued: queued.clone(),
            budget,
            closing: AtomicBool::new(false),
        });
        (link, Outbox { rx, queued })
    }

    /// Queues `message`; a client that has more than the budget queued is
    /// too slow, and its socket is closed with 1008.
    fn send(&self, message: SocketMessage) -> Result<(), SocketError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(SocketError::Closed);
        }
        let len = message.len() + MESSAGE_OVERHEAD;
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before.saturating_add(len) > self.budget && before > 0 {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            tracing::debug!(socket = self.socket, "a WebSocket client reads too slowly");
            self.close(1008, "too slow".into());
            return Err(SocketError::Closed);
        }
        self.tx
            .send(Outgoing::Message(message))
            .map_err(|_| SocketError::Closed)
    }

    /// Queues a close frame, once.
    fn close(&self, code: u16, reason: String) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Outgoing::Close(code, reason));
        }
    }
}

/// What the guest sends on one socket, as the HTTP side takes it.
pub struct Outbox {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    queued: Arc<AtomicUsize>,
}

impl Outbox {
    /// The next thing to send; `None` once the guest can send no more (its
    /// instance is gone).
    pub async fn next(&mut self) -> Option<Outgoing> {
        let next = self.rx.recv().await?;
        if let Outgoing::Message(message) = &next {
            self.queued
                .fetch_sub(message.len() + MESSAGE_OVERHEAD, Ordering::AcqRel);
        }
        Some(next)
    }
}

/// The sockets an instance serves, in its store: what the guest's calls to
/// `catshost:websocket/sockets` reach.
pub(crate) struct InstanceSockets {
    links: HashMap<u64, Joined>,
    rooms: Arc<Rooms>,
    max_message: usize,
}

/// A socket of the instance and the rooms it is in.
struct Joined {
    link: Arc<Link>,
    rooms: Vec<String>,
}

impl Joined {
    fn new(link: Arc<Link>) -> Self {
        Self {
            link,
            rooms: Vec::new(),
        }
    }
}

impl InstanceSockets {
    /// `socket` is gone: out of its rooms and of the instance.
    fn remove(&mut self, socket: u64) {
        if let Some(joined) = self.links.remove(&socket) {
            for room in &joined.rooms {
                self.rooms.leave(socket, room);
            }
        }
    }

    /// The instance failed: every socket of it is closed with 1011.
    fn fail_all(&mut self) {
        let sockets: Vec<u64> = self.links.keys().copied().collect();
        for socket in sockets {
            if let Some(joined) = self.links.get(&socket) {
                joined.link.close(1011, "the guest failed".into());
            }
            self.remove(socket);
        }
    }

    fn link(&self, socket: u64) -> Result<&Arc<Link>, SocketError> {
        self.links
            .get(&socket)
            .map(|j| &j.link)
            .ok_or(SocketError::Closed)
    }

    fn message(&self, message: wit::Message) -> Result<SocketMessage, SocketError> {
        let message = SocketMessage::from_wit(message);
        if message.len() > self.max_message {
            return Err(SocketError::TooLarge);
        }
        Ok(message)
    }
}

/// Whether a guest may send `code` in a close frame (RFC 6455, section
/// 7.4, and IANA's registry): not 1005, 1006 or 1015, which mean no frame,
/// nor 1010 (a client's), 1002 (the host's to say), 1014 (a gateway's) or
/// the unassigned ones.
fn sendable_code(code: u16) -> bool {
    matches!(
        code,
        1000 | 1001 | 1003 | 1007 | 1008 | 1009 | 1011 | 1012 | 1013 | 3000..=4999
    )
}

impl wit::Host for GuestCtx {
    fn send(&mut self, socket: u64, message: wit::Message) -> Result<(), SocketError> {
        let sockets = self.sockets.as_ref().ok_or(SocketError::Closed)?;
        let link = sockets.link(socket)?;
        link.send(sockets.message(message)?)
    }

    fn close(&mut self, socket: u64, code: u16, reason: String) -> Result<(), SocketError> {
        let sockets = self.sockets.as_ref().ok_or(SocketError::Closed)?;
        let link = sockets.link(socket)?;
        if !sendable_code(code) || reason.len() > MAX_CLOSE_REASON {
            return Err(SocketError::BadClose);
        }
        if link.closing.load(Ordering::Acquire) {
            return Err(SocketError::Closed);
        }
        link.close(code, reason);
        Ok(())
    }

    fn join(&mut self, socket: u64, name: String) -> Result<(), SocketError> {
        let sockets = self.sockets.as_mut().ok_or(SocketError::Closed)?;
        let joined = sockets.links.get_mut(&socket).ok_or(SocketError::Closed)?;
        if joined.rooms.contains(&name) {
            return Ok(());
        }
        if name.is_empty()
            || name.len() > MAX_ROOM_NAME
            || joined.rooms.len() >= MAX_ROOMS_PER_SOCKET
        {
            return Err(SocketError::BadRoom);
        }
        sockets
            .rooms
            .lock()
            .entry(name.clone())
            .or_default()
            .insert(socket, joined.link.clone());
        joined.rooms.push(name);
        Ok(())
    }

    fn leave(&mut self, socket: u64, name: String) {
        let Some(sockets) = self.sockets.as_mut() else {
            return;
        };
        if let Some(joined) = sockets.links.get_mut(&socket)
            && let Some(i) = joined.rooms.iter().position(|r| *r == name)
        {
            joined.rooms.swap_remove(i);
            sockets.rooms.leave(socket, &name);
        }
    }

    fn publish(&mut self, name: String, message: wit::Message, except: u64) -> u32 {
        let Some(sockets) = self.sockets.as_ref() else {
            return 0;
        };
        let Ok(message) = sockets.message(message) else {
            return 0;
        };
        // Queued outside the tenant's lock: the room as it is now.
        let room: Vec<Arc<Link>> = match sockets.rooms.lock().get(&name) {
            Some(room) => room
                .iter()
                .filter(|&(&socket, _)| socket != except)
                .map(|(_, link)| link.clone())
                .collect(),
            None => return 0,
        };
        let sent = room
            .iter()
            .filter(|link| link.send(message.clone()).is_ok())
            .count();
        u32::try_from(sent).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_client_is_closed_with_1008_past_its_budget() {
        let (link, mut outbox) = Link::new(1, 10 + 2 * MESSAGE_OVERHEAD);
        let message = || SocketMessage::Binary(Bytes::from_static(b"123456"));
        assert!(link.send(message()).is_ok());
        assert!(matches!(link.send(message()), Err(SocketError::Closed)));
        assert!(matches!(link.send(message()), Err(SocketError::Closed)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(outbox.next().await, Some(Outgoing::Message(message())));
            assert_eq!(
                outbox.next().await,
                Some(Outgoing::Close(1008, "too slow".into()))
            );
        });
        // A single message larger than the budget still goes: the budget
        // is for a backlog.
        let (link, _outbox) = Link::new(2, 4);
        assert!(link.send(message()).is_ok());
    }

    #[test]
    fn a_server_sends_only_the_close_codes_it_may() {
        for code in [1000, 1001, 1003, 1008, 1011, 1013, 3000, 4999] {
            assert!(sendable_code(code), "{code}");
        }
        for code in [
            0, 999, 1002, 1004, 1005, 1006, 1010, 1014, 1015, 1016, 2999, 5000,
        ] {
            assert!(!sendable_code(code), "{code}");
        }
    }
}
