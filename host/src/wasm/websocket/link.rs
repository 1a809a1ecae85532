//! The guest's side of its sockets: what it sends, queued for the HTTP
//! side within a budget ([`Link`], [`Outbox`]), the sockets of an instance
//! and the tenant's rooms, and the host calls of
//! `catshost:websocket/sockets`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{
    MAX_CLOSE_REASON, MAX_ROOM_NAME, MAX_ROOMS_PER_SOCKET, MESSAGE_OVERHEAD, Outgoing, SocketError,
    SocketMessage, wit,
};
use crate::account::{Account, Charge};
use crate::wasm::guest::GuestCtx;

/// The tenant's rooms: name to the sockets in it.
#[derive(Default)]
pub(super) struct Rooms(Mutex<HashMap<String, HashMap<u64, Arc<Link>>>>);

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

/// The guest's end of a socket: what it sends is queued here for the HTTP
/// side.
pub(super) struct Link {
    socket: u64,
    tx: mpsc::UnboundedSender<(Outgoing, Option<Charge>)>,
    /// Bytes of messages queued and not yet taken by the HTTP side.
    queued: Arc<AtomicUsize>,
    budget: usize,
    /// Set once a close is queued: nothing more is sent.
    closing: AtomicBool,
    /// The tenant's account: queued messages are charged to it.
    account: Arc<Account>,
}

impl Link {
    pub(super) fn new(socket: u64, budget: usize, account: Arc<Account>) -> (Arc<Self>, Outbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let link = Arc::new(Self {
            socket,
            tx,
            queued: queued.clone(),
            budget,
            closing: AtomicBool::new(false),
            account,
        });
        let outbox = Outbox {
            rx,
            queued,
            sending: None,
        };
        (link, outbox)
    }

    /// Queues `message`; a client that has more than the budget queued is
    /// too slow, and its socket is closed with 1008, as it is when the
    /// tenant's account cannot take the message.
    fn send(&self, message: SocketMessage) -> Result<(), SocketError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(SocketError::Closed);
        }
        let len = message.len() + MESSAGE_OVERHEAD;
        let Ok(charge) = self.account.charge(len) else {
            tracing::debug!(
                socket = self.socket,
                "a WebSocket's tenant holds its most host memory"
            );
            self.close(1008, "host memory".into());
            return Err(SocketError::Closed);
        };
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before.saturating_add(len) > self.budget && before > 0 {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            tracing::debug!(socket = self.socket, "a WebSocket client reads too slowly");
            self.close(1008, "too slow".into());
            return Err(SocketError::Closed);
        }
        self.tx
            .send((Outgoing::Message(message), Some(charge)))
            .map_err(|_| SocketError::Closed)
    }

    /// Queues a close frame, once.
    fn close(&self, code: u16, reason: String) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send((Outgoing::Close(code, reason), None));
        }
    }
}

/// What the guest sends on one socket, as the HTTP side takes it.
pub struct Outbox {
    rx: mpsc::UnboundedReceiver<(Outgoing, Option<Charge>)>,
    queued: Arc<AtomicUsize>,
    /// The charge of the message last taken: it is being sent until the
    /// next is asked for.
    sending: Option<Charge>,
}

impl Outbox {
    /// The next thing to send; `None` once the guest can send no more (its
    /// instance is gone). What it takes stays charged to the tenant until
    /// the next call (or the outbox's end): ask once it is sent.
    pub async fn next(&mut self) -> Option<Outgoing> {
        self.sending = None;
        let (next, charge) = self.rx.recv().await?;
        self.sending = charge;
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
    pub(super) links: HashMap<u64, Joined>,
    pub(super) rooms: Arc<Rooms>,
    pub(super) max_message: usize,
}

/// A socket of the instance and the rooms it is in.
pub(super) struct Joined {
    link: Arc<Link>,
    rooms: Vec<String>,
}

impl Joined {
    pub(super) fn new(link: Arc<Link>) -> Self {
        Self {
            link,
            rooms: Vec::new(),
        }
    }
}

impl InstanceSockets {
    /// `socket` is gone: out of its rooms and of the instance.
    pub(super) fn remove(&mut self, socket: u64) {
        if let Some(joined) = self.links.remove(&socket) {
            for room in &joined.rooms {
                self.rooms.leave(socket, room);
            }
        }
    }

    /// The instance failed: every socket of it is closed with 1011.
    pub(super) fn fail_all(&mut self) {
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
        let sockets = self
            .attached::<InstanceSockets>()
            .ok_or(SocketError::Closed)?;
        let link = sockets.link(socket)?;
        link.send(sockets.message(message)?)
    }

    fn close(&mut self, socket: u64, code: u16, reason: String) -> Result<(), SocketError> {
        let sockets = self
            .attached::<InstanceSockets>()
            .ok_or(SocketError::Closed)?;
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
        let sockets = self
            .attached_mut::<InstanceSockets>()
            .ok_or(SocketError::Closed)?;
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
        let Some(sockets) = self.attached_mut::<InstanceSockets>() else {
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
        let Some(sockets) = self.attached::<InstanceSockets>() else {
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
    use bytes::Bytes;

    use super::*;

    #[test]
    fn a_slow_client_is_closed_with_1008_past_its_budget() {
        let (link, mut outbox) = Link::new(1, 10 + 2 * MESSAGE_OVERHEAD, Account::unlimited());
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
        let (link, _outbox) = Link::new(2, 4, Account::unlimited());
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
