//! Stop and readiness: the [`Stop`] switch and the [`Ready`] latch. (The
//! process signals that drive them in the CLI are the binary's.)

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::watch;

/// A switch that starts a graceful stop of every server it was given to.
///
/// Cloning gives another handle to the same switch, so one `Stop` can control
/// several servers. [`Stop::switch`] is idempotent: switching a stopped
/// server again does nothing.
#[derive(Clone, Debug)]
pub struct Stop {
    tx: Arc<watch::Sender<bool>>,
}

impl Stop {
    /// A new switch, not yet switched.
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Starts a graceful stop: servers stop accepting, ask each connection
    /// to finish, and wait for in-flight requests up to their shutdown
    /// timeout. Does nothing when already switched.
    pub fn switch(&self) {
        self.tx
            .send_if_modified(|stopped| !std::mem::replace(stopped, true));
    }

    /// Whether [`Stop::switch`] has been called.
    pub fn is_switched(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once [`Stop::switch`] has been called.
    pub async fn switched(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so the channel cannot close here.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

impl Default for Stop {
    fn default() -> Self {
        Self::new()
    }
}

/// The sending half of a readiness latch, held by a server.
#[derive(Debug)]
pub(crate) struct ReadyLatch {
    tx: watch::Sender<ReadyState>,
}

#[derive(Clone, Copy, Debug)]
enum ReadyState {
    Pending,
    Ready(SocketAddr),
    Failed,
}

impl ReadyLatch {
    pub(crate) fn new() -> Self {
        Self {
            tx: watch::Sender::new(ReadyState::Pending),
        }
    }

    /// Marks the server ready on `addr`. A latch only opens once: later calls
    /// (a second listener, say) keep the first address.
    pub(crate) fn open(&self, addr: SocketAddr) {
        self.tx.send_if_modified(|state| match state {
            ReadyState::Pending => {
                *state = ReadyState::Ready(addr);
                true
            }
            _ => false,
        });
    }

    /// Whether the latch has opened.
    pub(crate) fn is_open(&self) -> bool {
        matches!(*self.tx.borrow(), ReadyState::Ready(_))
    }

    /// Marks the server as never going to be ready (it failed to start).
    pub(crate) fn fail(&self) {
        self.tx.send_if_modified(|state| match state {
            ReadyState::Pending => {
                *state = ReadyState::Failed;
                true
            }
            _ => false,
        });
    }

    pub(crate) fn subscribe(&self) -> Ready {
        let mut rx = self.tx.subscribe();
        Ready {
            fut: Box::pin(async move {
                match *rx
                    .wait_for(|s| !matches!(s, ReadyState::Pending))
                    .await
                    .ok()?
                {
                    ReadyState::Ready(addr) => Some(addr),
                    _ => None,
                }
            }),
        }
    }
}

/// Resolves once a server is ready: its listener is bound and its component
/// compiled and pre-instantiated.
///
/// The output is the address actually bound (so port 0 can be used), or
/// `None` if the server failed before it became ready.
pub struct Ready {
    fut: Pin<Box<dyn Future<Output = Option<SocketAddr>> + Send>>,
}

impl Future for Ready {
    type Output = Option<SocketAddr>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.fut.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn switch_is_idempotent_and_shared() {
        let stop = Stop::new();
        let other = stop.clone();
        assert!(!other.is_switched());
        stop.switch();
        stop.switch();
        assert!(other.is_switched());
        other.switched().await;
    }

    #[tokio::test]
    async fn ready_resolves_with_the_first_address() {
        let latch = ReadyLatch::new();
        let ready = latch.subscribe();
        let first: SocketAddr = "127.0.0.1:1".parse().unwrap();
        latch.open(first);
        latch.open("127.0.0.1:2".parse().unwrap());
        assert_eq!(ready.await, Some(first));
        assert_eq!(latch.subscribe().await, Some(first));
    }

    #[tokio::test]
    async fn ready_resolves_to_none_on_failure() {
        let latch = ReadyLatch::new();
        let ready = latch.subscribe();
        latch.fail();
        assert_eq!(ready.await, None);
    }
}
