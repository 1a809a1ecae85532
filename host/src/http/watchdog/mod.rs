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

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Poll, Wake, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
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
    /// The clock of a body of the connection of `activity`.
    fn new(activity: &Arc<Activity>) -> Arc<Self> {
        Arc::new(Self {
            activity: Arc::downgrade(activity),
            owed_since: AtomicU64::new(0),
            waker: AtomicWaker::new(),
        })
    }

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

mod io;

pub(crate) use io::{Tracked, Watched};

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
