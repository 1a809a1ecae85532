//! A socket's connection as its codec writes to it, watched for output that
//! does not drain. tungstenite answers every ping itself and keeps writing
//! its pongs and close frames into its buffer whatever the client reads; its
//! buffer is capped (`max_write_buffer_size`), and this clock says since
//! when the connection has refused what the host wrote, so that a client
//! that sends and never reads is cut at the write timeout, control frames
//! and all.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Since when a socket's output has not drained: milliseconds since the
/// socket started, plus one; 0 while it drains.
pub(super) struct DrainClock {
    start: Instant,
    blocked_since: AtomicU64,
    /// [`Stalled`], woken when a write blocks while it is not armed.
    stalled: AtomicWaker,
}

impl DrainClock {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            blocked_since: AtomicU64::new(0),
            stalled: AtomicWaker::new(),
        })
    }

    fn wrote<T>(&self, poll: &Poll<std::io::Result<T>>, went: impl FnOnce(&T) -> bool) {
        match poll {
            Poll::Pending => {
                if self.blocked_since.load(Ordering::Relaxed) == 0 {
                    let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
                    self.blocked_since
                        .store(now.saturating_add(1), Ordering::Relaxed);
                    self.stalled.wake();
                }
            }
            Poll::Ready(Ok(value))
                if went(value) && self.blocked_since.load(Ordering::Relaxed) != 0 =>
            {
                self.blocked_since.store(0, Ordering::Relaxed);
            }
            Poll::Ready(_) => {}
        }
    }

    /// When output that has not drained since then is past `timeout`.
    fn deadline(&self, timeout: Duration) -> Option<Instant> {
        let since = self.blocked_since.load(Ordering::Relaxed);
        (since != 0).then(|| self.start + Duration::from_millis(since - 1) + timeout)
    }
}

/// Resolves once the socket's output has not drained for the timeout.
/// Polled beside the codec's reads and writes, in the same task: a write
/// that blocks wakes it (once), and it arms its timer on the poll that
/// follows.
pub(super) struct Stalled {
    clock: Arc<DrainClock>,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl Stalled {
    pub(super) fn new(clock: Arc<DrainClock>, timeout: Duration) -> Self {
        Self {
            clock,
            timeout,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
        }
    }
}

impl Future for Stalled {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.clock.deadline(self.timeout);
        if deadline != self.armed {
            self.armed = deadline;
            if let Some(deadline) = deadline {
                self.sleep.as_mut().reset(deadline);
            }
        }
        match self.armed {
            Some(_) => self.sleep.as_mut().poll(cx),
            None => {
                self.clock.stalled.register(cx.waker());
                Poll::Pending
            }
        }
    }
}

/// The connection of a socket, telling its [`DrainClock`] when writes
/// block and when they go through.
pub(super) struct Drained<S> {
    io: S,
    clock: Arc<DrainClock>,
}

impl<S> Drained<S> {
    pub(super) fn new(io: S, clock: Arc<DrainClock>) -> Self {
        Self { io, clock }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Drained<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Drained<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.clock.wrote(&poll, |&n| n > 0);
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.clock.wrote(&poll, |()| true);
        poll
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A client that never reads: the writes block once the pipe is full,
    /// and the clock fires a timeout after the first blocked write, not
    /// before; a write that goes through again stops it.
    #[tokio::test(start_paused = true)]
    async fn output_that_does_not_drain_is_timed_from_its_first_blocked_write() {
        let (server, mut client) = tokio::io::duplex(64);
        let clock = DrainClock::new();
        let mut io = Drained::new(server, clock.clone());
        let mut stalled = std::pin::pin!(Stalled::new(clock.clone(), Duration::from_secs(5)));
        io.write_all(&[0; 64]).await.unwrap();
        assert!(clock.deadline(Duration::ZERO).is_none());
        let blocked = tokio::time::timeout(Duration::from_secs(1), io.write_all(&[0; 1])).await;
        assert!(blocked.is_err(), "the pipe is full");
        let deadline = clock.deadline(Duration::from_secs(5)).expect("blocked");
        assert!(
            tokio::time::timeout_at(deadline - Duration::from_millis(10), stalled.as_mut())
                .await
                .is_err()
        );
        stalled.as_mut().await;
        // The client reads: the next write goes through and the clock stops.
        let mut buf = [0; 64];
        tokio::io::AsyncReadExt::read_exact(&mut client, &mut buf)
            .await
            .unwrap();
        io.write_all(&[0; 1]).await.unwrap();
        assert!(clock.deadline(Duration::ZERO).is_none());
    }
}
