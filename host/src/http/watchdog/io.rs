//! What the watchdog watches: a connection's IO ([`Tracked`], which marks
//! when the socket refuses the host's bytes and resets a connection cut for
//! not reading) and its responses' bodies ([`Watched`], whose stalls it
//! sees, and which keep their requests in flight).

use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{ActiveRequest, Activity, BodyClock};

/// A connection's IO, marking when the socket refuses the host's bytes.
/// When the watchdog closes a connection for not reading, or the connection
/// ends while the socket still refuses its bytes, it is reset (RST), not
/// closed: a FIN would wait behind the data the client does not take, and
/// the kernel would hold that data for minutes.
pub(crate) struct Tracked<I> {
    io: I,
    activity: Arc<Activity>,
    /// The connection's socket, which `io` owns.
    socket: RawFd,
}

impl<I: AsRawFd> Tracked<I> {
    /// `io` (a TCP socket, or TLS over one), its activity kept in
    /// `activity`.
    pub(crate) fn new(io: I, activity: Arc<Activity>) -> Self {
        Self {
            socket: io.as_raw_fd(),
            io,
            activity,
        }
    }
}

impl<I> Tracked<I> {
    fn wrote(&self, poll: &Poll<std::io::Result<usize>>) {
        let blocked = &self.activity.write_blocked_since;
        match poll {
            Poll::Pending => {
                if blocked.load(Ordering::Relaxed) == 0 {
                    blocked.store(self.activity.now(), Ordering::Relaxed);
                }
            }
            Poll::Ready(Ok(n)) if *n > 0 => {
                if blocked.load(Ordering::Relaxed) != 0 {
                    blocked.store(0, Ordering::Relaxed);
                }
                self.activity.written(*n);
            }
            Poll::Ready(_) => {}
        }
    }
}

impl<I> Drop for Tracked<I> {
    fn drop(&mut self) {
        // Reset, too, a connection dropped while the socket refuses its
        // bytes: hyper gave up on what is unsent (a response cut at its
        // guest's deadline), and a FIN would wait behind it.
        if self.activity.reset.load(Ordering::Acquire)
            || self.activity.write_blocked_since.load(Ordering::Relaxed) != 0
        {
            // SAFETY: `io` owns the socket and is dropped after this.
            let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.socket) };
            // Linger 0: close sends RST and drops what is unsent.
            if let Err(error) = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO)) {
                tracing::debug!(%error, "failed to set SO_LINGER before a reset");
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&poll);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body whose stalls its connection's watchdog sees; it keeps
/// its request in flight until it is dropped.
pub(crate) struct Watched<B> {
    body: B,
    clock: Arc<BodyClock>,
    waker: Waker,
    in_flight: ActiveRequest,
    /// An HTTP/1 response: one that fails ends its connection, which is
    /// then reset.
    http1: bool,
}

impl<B> Watched<B> {
    /// `http1`: the response of an HTTP/1 request.
    pub(crate) fn new(body: B, in_flight: ActiveRequest, http1: bool) -> Self {
        let clock = BodyClock::new(&in_flight.0);
        // Owed from the start: hyper takes the first frame when it can.
        clock.owe();
        let mut bodies = in_flight.0.bodies.lock().unwrap_or_else(|p| p.into_inner());
        // The watchdog drops finished bodies only while a request is in
        // flight; a keep-alive connection of many short requests drops them
        // here, whenever the list reaches a power of two (at most twice the
        // bodies alive, at a constant cost per request).
        if bodies.len() >= 16 && bodies.len().is_power_of_two() {
            bodies.retain(|body| body.strong_count() > 0);
        }
        bodies.push(Arc::downgrade(&clock));
        drop(bodies);
        Self {
            body,
            waker: Waker::from(clock.clone()),
            clock,
            in_flight,
            http1,
        }
    }
}

impl<B: Body + Unpin> Body for Watched<B>
where
    B::Data: bytes::Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let activity = &this.in_flight.0;
        // hyper came: nothing is owed until the body has more (or hyper
        // has written some of what it holds).
        this.clock.owed_since.store(0, Ordering::Relaxed);
        if activity.full(cx.waker()) {
            return Poll::Pending;
        }
        this.clock.waker.register(cx.waker());
        let mut inner = Context::from_waker(&this.waker);
        let poll = Pin::new(&mut this.body).poll_frame(&mut inner);
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    activity
                        .buffered
                        .fetch_add(bytes::Buf::remaining(data), Ordering::AcqRel);
                }
                // The next frame may be ready at once: hyper owes a poll
                // until it comes back (at once unless the client is not
                // reading).
                this.clock.owe();
            }
            // A cut HTTP/1 response (its guest failed or ran out of time):
            // hyper closes the connection, and what the kernel still holds
            // of the response is worth nothing, so it is reset.
            Poll::Ready(Some(Err(_))) if this.http1 => {
                activity.reset.store(true, Ordering::Release)
            }
            _ => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
