//! The clocks of one connection that hyper does not keep. hyper times an
//! HTTP/1 request head once it waits for one, and nothing else: not the
//! protocol detection or the HTTP/2 handshake of a new connection, not an
//! idle HTTP/2 connection, not a client that stops reading its responses.
//! [`Activity::watch`] closes a connection that
//!
//! - sends no first request within the header read timeout of its start
//!   (a lone `P`, a bare HTTP/2 preface, a preface and SETTINGS, ...);
//! - has no request in flight for the idle timeout;
//! - does not take its data for the write timeout: the socket refuses the
//!   host's bytes (the client's TCP window is closed), or a response has
//!   data ready that hyper does not take (an HTTP/2 stream or connection
//!   window of 0, or hyper's write buffer full).
//!
//! The connection's IO ([`Tracked`]) and its responses' bodies ([`Watched`])
//! mark what the watchdog reads; both are cheap on the hot path (a clock
//! read per frame, atomics).
//!
//! They also cap what hyper holds for a client: bodies give hyper no more
//! frames while the bytes it took from them and has not yet written reach
//! [`MAX_BUFFERED`] (HTTP/2 buffers up to ~400 KiB per stream, 200 streams
//! a connection, without it).

use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The longest the watchdog sleeps while a response is in flight (its
/// stalls start without telling it), so a stall is seen within this of
/// its deadline; a quarter of the write timeout when that is shorter.
const MAX_TICK: Duration = Duration::from_secs(1);

/// The most response bytes hyper holds for one connection, taken from its
/// bodies and not yet written to the socket (plus one frame).
pub(crate) const MAX_BUFFERED: usize = 1 << 20;

/// The timeouts the watchdog enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// From the start of the connection to its first request.
    pub(crate) first_request: Duration,
    /// With no request in flight.
    pub(crate) idle: Duration,
    /// Data the client does not take.
    pub(crate) write: Duration,
}

/// Why the watchdog cut a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// No request within the header read timeout of the connection's start.
    NoRequest,
    /// No request in flight for the idle timeout.
    Idle,
    /// The client took none of the data waiting for it for the write
    /// timeout.
    NotReading,
}

impl Cut {
    /// The metric label and log text.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cut::NoRequest => "no_request",
            Cut::Idle => "idle",
            Cut::NotReading => "not_reading",
        }
    }
}

/// What one connection does, as its IO, bodies and watchdog share it. Times
/// are milliseconds since the connection started, plus one, so that 0 can
/// mean "not now".
pub(crate) struct Activity {
    start: Instant,
    /// Requests whose response is not finished.
    in_flight: AtomicUsize,
    /// Whether any request has started.
    started: AtomicBool,
    /// When the last request in flight finished.
    idle_since: AtomicU64,
    /// When the socket refused a write, 0 once a write went through.
    write_blocked_since: AtomicU64,
    /// The bodies of the responses in flight.
    bodies: Mutex<Vec<Weak<BodyClock>>>,
    /// The watchdog, woken when a request starts on an idle connection (it
    /// sleeps until a deadline then, not a tick).
    watchdog: AtomicWaker,
    kicked: AtomicBool,
    /// Bytes hyper took from the bodies and has not written (about: HTTP/2
    /// framing is counted as written body bytes).
    buffered: AtomicUsize,
    /// Bodies waiting for `buffered` to go below [`MAX_BUFFERED`].
    parked: Mutex<Vec<Waker>>,
    any_parked: AtomicBool,
    /// Reset the socket when it closes, set when the client did not read.
    reset: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            idle_since: AtomicU64::new(1),
            write_blocked_since: AtomicU64::new(0),
            bodies: Mutex::new(Vec::new()),
            watchdog: AtomicWaker::new(),
            kicked: AtomicBool::new(false),
            buffered: AtomicUsize::new(0),
            parked: Mutex::new(Vec::new()),
            any_parked: AtomicBool::new(false),
            reset: AtomicBool::new(false),
        })
    }

    fn now(&self) -> u64 {
        stamp(self.start.elapsed())
    }

    /// Whether hyper holds [`MAX_BUFFERED`] bytes: then `waker` is woken
    /// once it wrote some of them.
    fn full(&self, waker: &Waker) -> bool {
        if self.buffered.load(Ordering::Acquire) < MAX_BUFFERED {
            return false;
        }
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        parked.push(waker.clone());
        self.any_parked.store(true, Ordering::Release);
        // Written meanwhile: do not wait for a wake that has passed.
        self.buffered.load(Ordering::Acquire) >= MAX_BUFFERED
    }

    /// `n` bytes went to the socket.
    fn written(&self, n: usize) {
        let before = self
            .buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b != 0).then(|| b.saturating_sub(n))
            })
            .unwrap_or(0);
        if before.saturating_sub(n) < MAX_BUFFERED && self.any_parked.load(Ordering::Acquire) {
            let parked = {
                let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
                self.any_parked.store(false, Ordering::Release);
                std::mem::take(&mut *parked)
            };
            parked.into_iter().for_each(Waker::wake);
        }
    }

    /// A request has started; it is in flight until the guard (moved into
    /// its response's body by [`Watched::new`]) is dropped.
    pub(crate) fn request_started(self: &Arc<Self>) -> ActiveRequest {
        self.started.store(true, Ordering::Relaxed);
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.kicked.store(true, Ordering::Release);
            self.watchdog.wake();
        }
        ActiveRequest(self.clone())
    }

    /// Waits until the connection breaks one of `timeouts`, and says which.
    pub(crate) async fn watch(&self, timeouts: Timeouts) -> Cut {
        let tick = MAX_TICK
            .min(timeouts.write / 4)
            .max(Duration::from_millis(10));
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        loop {
            std::future::poll_fn(|cx| {
                self.watchdog.register(cx.waker());
                if self.kicked.swap(false, Ordering::AcqRel) {
                    return Poll::Ready(());
                }
                sleep.as_mut().poll(cx)
            })
            .await;
            let now = self.start.elapsed();
            let next = match self.check(now, timeouts) {
                Ok(Some(deadline)) => deadline,
                Ok(None) => now + tick,
                Err(closed) => {
                    if closed == Cut::NotReading {
                        self.reset.store(true, Ordering::Release);
                    }
                    return closed;
                }
            };
            sleep.as_mut().reset(self.start + next);
        }
    }

    /// At `now` since the start: the timeout broken, or when to look again:
    /// at a deadline while no request is in flight (a starting request wakes
    /// the watchdog), else at the next tick (`None`: data can stall any
    /// time).
    fn check(&self, now: Duration, timeouts: Timeouts) -> Result<Option<Duration>, Cut> {
        let at = |stamp: u64| Duration::from_millis(stamp.saturating_sub(1));
        let past = |since: Duration, timeout: Duration| now.saturating_sub(since) >= timeout;
        if !self.started.load(Ordering::Relaxed) {
            if past(Duration::ZERO, timeouts.first_request) {
                return Err(Cut::NoRequest);
            }
            return Ok(Some(timeouts.first_request));
        }
        let blocked = self.write_blocked_since.load(Ordering::Relaxed);
        if blocked != 0 && past(at(blocked), timeouts.write) {
            return Err(Cut::NotReading);
        }
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let idle_since = at(self.idle_since.load(Ordering::Acquire));
            if past(idle_since, timeouts.idle) {
                return Err(Cut::Idle);
            }
            // While blocked, look again at the tick.
            return Ok((blocked == 0).then_some(idle_since + timeouts.idle));
        }
        let mut bodies = self.bodies.lock().unwrap_or_else(|p| p.into_inner());
        let mut stalled = false;
        bodies.retain(|body| match body.upgrade() {
            Some(body) => {
                let owed = body.owed_since.load(Ordering::Acquire);
                stalled |= owed != 0 && past(at(owed), timeouts.write);
                true
            }
            None => false,
        });
        match stalled {
            true => Err(Cut::NotReading),
            false => Ok(None),
        }
    }
}

/// Milliseconds in `elapsed`, plus one.
fn stamp(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

/// One request in flight on its connection: the connection is not idle
/// while it lives.
pub(crate) struct ActiveRequest(Arc<Activity>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity.idle_since.store(activity.now(), Ordering::Release);
        }
    }
}

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

/// Whether a response body owes hyper something hyper has not taken.
struct BodyClock {
    activity: Weak<Activity>,
    /// When the body last had data (or its end) ready for hyper without
    /// hyper coming for it; 0 while hyper waits for the body.
    owed_since: AtomicU64,
    /// hyper's waker, woken through this clock.
    waker: AtomicWaker,
}

impl BodyClock {
    fn owe(&self) {
        if self.owed_since.load(Ordering::Relaxed) == 0
            && let Some(activity) = self.activity.upgrade()
        {
            self.owed_since.store(activity.now(), Ordering::Release);
        }
    }
}

impl Wake for BodyClock {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    /// The body's source has something: hyper owes a poll from now.
    fn wake_by_ref(self: &Arc<Self>) {
        self.owe();
        self.waker.wake();
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
        let clock = Arc::new(BodyClock {
            activity: Arc::downgrade(&in_flight.0),
            owed_since: AtomicU64::new(0),
            waker: AtomicWaker::new(),
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        first_request: Duration::from_secs(2),
        idle: Duration::from_secs(5),
        write: Duration::from_secs(3),
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_closes_at_the_header_read_timeout() {
        let activity = Activity::new();
        assert_eq!(activity.check(secs(1), TIMEOUTS), Ok(Some(secs(2))));
        assert_eq!(activity.check(secs(2), TIMEOUTS), Err(Cut::NoRequest));
        let started = Instant::now();
        assert_eq!(activity.watch(TIMEOUTS).await, Cut::NoRequest);
        assert_eq!(started.elapsed(), secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_idles_for_the_idle_timeout_after_its_last_request() {
        let activity = Activity::new();
        tokio::time::advance(secs(1)).await;
        let request = activity.request_started();
        // In flight: never idle.
        assert_eq!(activity.check(secs(100), TIMEOUTS), Ok(None));
        tokio::time::advance(secs(9)).await;
        drop(request);
        assert_eq!(activity.check(secs(14), TIMEOUTS), Ok(Some(secs(15))));
        assert_eq!(activity.check(secs(15), TIMEOUTS), Err(Cut::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_hyper_does_not_poll_stalls_its_connection() {
        let activity = Activity::new();
        let body = Watched::new(
            http_body_util::Full::new(bytes::Bytes::from_static(b"x")),
            activity.request_started(),
            false,
        );
        // Owed from the start, never polled.
        assert_eq!(activity.check(secs(2), TIMEOUTS), Ok(None));
        assert_eq!(activity.check(secs(3), TIMEOUTS), Err(Cut::NotReading));
        drop(body);
        assert_eq!(activity.check(secs(3), TIMEOUTS), Ok(Some(secs(5))));
    }

    #[test]
    fn a_keep_alive_connection_keeps_no_list_of_its_finished_bodies() {
        let activity = Activity::new();
        for _ in 0..10_000 {
            drop(Watched::new(
                http_body_util::Empty::<bytes::Bytes>::new(),
                activity.request_started(),
                true,
            ));
        }
        assert!(activity.bodies.lock().unwrap().len() <= 32);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_waiting_for_its_guest_does_not_stall() {
        use http_body_util::BodyExt;
        let activity = Activity::new();
        let (mut tx, rx) = http_body_util::channel::Channel::<bytes::Bytes>::new(1);
        let mut body = Watched::new(rx, activity.request_started(), false);
        let mut poll = std::pin::pin!(body.frame());
        assert!(futures_util::poll!(poll.as_mut()).is_pending());
        tokio::time::advance(secs(10)).await;
        assert_eq!(activity.check(secs(10), TIMEOUTS), Ok(None));
        // The guest sends; hyper does not come: stalled a write timeout
        // later.
        tx.send_data(bytes::Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(activity.check(secs(12), TIMEOUTS), Ok(None));
        assert_eq!(activity.check(secs(13), TIMEOUTS), Err(Cut::NotReading));
        assert!(futures_util::poll!(poll.as_mut()).is_ready());
    }
}
