//! Whether any guest may be running: the epoch ticker
//! (`wasm/compile/ticker.rs`) advances the epoch only while one may, and
//! sleeps (no wake-up at all) once none has for a while.
//!
//! A guest runs only inside a poll of its run (a WASI 0.2 request or a
//! WebSocket handler's instance, both through `Sandbox::rationed`) or of a
//! WASI 0.3 instance's store (alive from its instantiation to its expiry):
//! each holds a [`Busy`] for as long as it lives. Taking the first one
//! wakes every ticker that sleeps, before the guest can run, so a guest
//! that computes always meets an advancing epoch and yields.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;

/// The runs and stores alive that may run a guest (the low 32 bits), and
/// how many have started (the high 32, wrapping): a guest that starts and
/// ends between two ticks (a reused hello, inline in its connection's task)
/// counts as activity though none is alive when the ticker looks.
static BUSY: AtomicU64 = AtomicU64::new(0);
const ALIVE: u64 = 0xffff_ffff;
const STARTED: u64 = 1 << 32;
/// Whether a ticker sleeps (or is about to): the first [`Busy`] wakes it.
static SLEEPING: AtomicBool = AtomicBool::new(false);
/// The tickers that sleep.
static SLEEPERS: Mutex<Vec<Thread>> = Mutex::new(Vec::new());

/// Held while a guest may run (a request's run, a WASI 0.3 store): the
/// epoch advances.
#[derive(Debug)]
pub(crate) struct Busy(());

impl Busy {
    pub(crate) fn start() -> Self {
        // SeqCst with the sleeper's store and load below: either the
        // sleeper sees this count, or this sees it sleeping.
        if BUSY.fetch_add(STARTED + 1, Ordering::SeqCst) & ALIVE == 0
            && SLEEPING.load(Ordering::SeqCst)
        {
            for ticker in SLEEPERS.lock().expect("never poisoned").iter() {
                ticker.unpark();
            }
        }
        Self(())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What [`active_since`] compares with: the guests started so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen(u64);

/// Whether a guest may be running now, or one started since `seen`; and
/// what to pass next time.
pub(crate) fn active_since(seen: Seen) -> (bool, Seen) {
    let now = BUSY.load(Ordering::SeqCst);
    let started = Seen(now >> 32);
    (now & ALIVE > 0 || started != seen, started)
}

/// Whether a guest may be running now.
fn any() -> bool {
    BUSY.load(Ordering::SeqCst) & ALIVE > 0
}

/// Sleeps the calling thread (a ticker) until a guest may run or
/// `stopped` returns true (whoever sets it unparks the thread).
pub(crate) fn sleep_until_busy(stopped: impl Fn() -> bool) {
    let me = std::thread::current();
    {
        let mut sleepers = SLEEPERS.lock().expect("never poisoned");
        sleepers.push(me.clone());
        SLEEPING.store(true, Ordering::SeqCst);
    }
    // A `Busy` started before this saw SLEEPING false: the count says so.
    // One started after unparks this thread, and `park` returns at once if
    // the unpark came first.
    while !any() && !stopped() {
        std::thread::park();
    }
    let mut sleepers = SLEEPERS.lock().expect("never poisoned");
    sleepers.retain(|t| t.id() != me.id());
    SLEEPING.store(!sleepers.is_empty(), Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_sleeping_thread_wakes_when_a_guest_becomes_busy() {
        let woke = Arc::new(AtomicBool::new(false));
        let sleeper = {
            let woke = woke.clone();
            std::thread::spawn(move || {
                sleep_until_busy(|| false);
                woke.store(true, Ordering::SeqCst);
            })
        };
        // Other tests of this binary may hold a Busy: only wait for the
        // sleeper to sleep when none does.
        std::thread::sleep(Duration::from_millis(50));
        let busy = Busy::start();
        sleeper.join().unwrap();
        assert!(woke.load(Ordering::SeqCst));
        assert!(any());
        drop(busy);
    }

    #[test]
    fn a_guest_that_started_and_ended_between_two_looks_is_activity() {
        let (_, seen) = active_since(Seen::default());
        drop(Busy::start());
        let (active, _) = active_since(seen);
        assert!(active);
    }

    #[test]
    fn a_sleeping_thread_wakes_when_stopped() {
        let stop = Arc::new(AtomicBool::new(false));
        let sleeper = {
            let stop = stop.clone();
            std::thread::spawn(move || sleep_until_busy(|| stop.load(Ordering::SeqCst)))
        };
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::SeqCst);
        sleeper.thread().unpark();
        sleeper.join().unwrap();
    }
}
