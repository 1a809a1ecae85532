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

mod instance;
mod link;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::account::{Account, Charge};
use crate::config::SocketLimits;
use crate::wasm::compile::GuestPre;
use crate::wasm::guest::{GuestError, Sandbox, guest_text};
use instance::{Event, HandlerInstances, Slot};
use link::Link;
pub use link::Outbox;

use crate::wasm::compile::websocket_wit::catshost::websocket::sockets::{self as wit, SocketError};
use crate::wasm::compile::websocket_wit::exports::catshost::websocket::handler::OpenRequest as WitOpenRequest;

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

/// How many bytes of messages a socket may have queued for its client.
fn outgoing_budget(limits: &SocketLimits) -> usize {
    limits.max_message.saturating_mul(OUTGOING_MESSAGES)
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
pub struct Sockets(Arc<HandlerInstances>);

static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

impl Sockets {
    /// The WebSocket side of one tenant, when its component `guest` exports
    /// a handler: instances made as they are needed, in `sandbox`, apart
    /// from those that serve its HTTP requests. Its instances run on
    /// `tasks`, for a stop to wait on.
    pub fn new(
        guest: &GuestPre,
        sandbox: Sandbox,
        limits: SocketLimits,
        tasks: tokio_util::task::TaskTracker,
    ) -> Option<Self> {
        let pre = guest.websocket()?.clone();
        Some(Self(Arc::new(HandlerInstances {
            pre,
            guest: guest.clone(),
            sandbox: Arc::new(sandbox),
            limits: SocketLimits {
                per_instance: limits.per_instance.max(1),
                ..limits
            },
            instances: Mutex::default(),
            rooms: Arc::default(),
            tasks,
        })))
    }

    /// What the sockets may use.
    pub fn limits(&self) -> SocketLimits {
        self.0.limits
    }

    /// The tenant's account of host memory: what its sockets hold is
    /// charged to it.
    pub fn account(&self) -> &Arc<Account> {
        &self.0.sandbox.account
    }

    /// Asks the guest to open a socket for `request`: on `Ok` the socket is
    /// open, and the HTTP side completes the handshake. `held` (the
    /// socket's permits, say) is given back with the answer.
    ///
    /// The guest's `open` runs to its end even if this future is dropped
    /// (its client gone): a socket it accepted then closes with 1006, and
    /// `held` is held until then, so that clients that go away cannot have
    /// more opens running than they may have sockets.
    ///
    /// `held` comes back unless the open's task panicked (then it went
    /// with it, and the answer is an error).
    pub async fn open<H: Send + 'static>(
        &self,
        request: OpenRequest,
        held: H,
    ) -> (Result<Opened, OpenError>, Option<H>) {
        let sockets = self.clone();
        let (tx, rx) = oneshot::channel();
        // Cleared when this future goes (its client gone): an open still
        // queued for its instance then is never handed to the guest.
        let waiting = Waiting(Arc::new(AtomicBool::new(true)));
        let still = waiting.0.clone();
        tokio::spawn(async move {
            let opened = sockets.open_now(request, still).await;
            // Nobody waits any more: the socket (if opened) closes, and
            // `held` goes, here.
            let _ = tx.send((opened, held));
        });
        let answer = match rx.await {
            Ok((opened, held)) => (opened, Some(held)),
            Err(_) => (Err(OpenError::Guest(gone())), None),
        };
        drop(waiting);
        answer
    }

    async fn open_now(
        &self,
        request: OpenRequest,
        waiting: Arc<AtomicBool>,
    ) -> Result<Opened, OpenError> {
        let socket = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
        let (link, outbox) = Link::new(
            socket,
            outgoing_budget(&self.0.limits),
            self.0.sandbox.account.clone(),
        );
        let slot = self.0.slot();
        let (reply, replied) = oneshot::channel();
        let offered = request.protocols.clone();
        let event = Event::Open {
            socket,
            request,
            link,
            reply,
            waiting,
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

/// Whether the client of an open still waits for it: cleared when dropped.
struct Waiting(Arc<AtomicBool>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The error of a socket whose instance is gone.
fn gone() -> GuestError {
    GuestError::Trap("the socket's instance ended".into())
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
    ///
    /// `charge` (the message's bytes on its tenant's account) is held until
    /// the guest has the message.
    pub fn message(
        &self,
        message: SocketMessage,
        charge: Charge,
    ) -> impl Future<Output = Result<(), InstanceGone>> + Send + 'static {
        let (socket, turns, events) = (self.socket, self.turns.clone(), self.slot.events.clone());
        async move {
            let turn = turns.acquire_owned().await.map_err(|_| InstanceGone)?;
            let event = Event::Message {
                socket,
                message,
                _turn: turn,
                _charge: charge,
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
