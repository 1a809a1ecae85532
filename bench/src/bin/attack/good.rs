//! The good tenant's load: a steady rate of GETs on a few HTTP/1.1
//! keep-alive connections, on a thread and runtime of its own (so the
//! attacks' tasks do not delay its timers), each latency filed under the
//! phase it was measured in.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::server::GOOD_HOST;
use crate::siege;

/// The phases of a run, in order.
pub const WARM_UP: u8 = 0;
pub const UNLOADED: u8 = 1;
pub const ATTACKED: u8 = 2;
pub const DONE: u8 = 3;

/// What the good clients saw in one phase.
#[derive(Default)]
pub struct Seen {
    /// From sending a request to its whole response, of every 200.
    pub latencies: Vec<Duration>,
    /// When each 200 was asked for, and its latency.
    pub when: Vec<(Instant, Duration)>,
    /// Requests that failed or got another status than 200.
    pub lost: u64,
    /// What the lost requests got (status or error), by kind.
    pub lost_how: std::collections::BTreeMap<String, u64>,
}

impl Seen {
    /// The p99 of each of `count` windows of `window` from `start` on, with
    /// its request count (a request sent after the last window is in it).
    pub fn p99_by(&self, start: Instant, window: Duration, count: usize) -> Vec<(Duration, usize)> {
        let mut windows = vec![Vec::new(); count.max(1)];
        let last = windows.len() - 1;
        for (at, took) in &self.when {
            let i = at.saturating_duration_since(start).as_secs_f64() / window.as_secs_f64();
            windows[(i as usize).min(last)].push(*took);
        }
        windows
            .iter_mut()
            .map(|w| (catshost_bench::percentile(w, 99.0), w.len()))
            .collect()
    }
}

/// The load, running until the phase is [`DONE`].
pub struct Load {
    pub phase: Arc<AtomicU8>,
    /// Whether its thread runs at real-time priority (SCHED_FIFO).
    pub realtime: bool,
    seen: Arc<Mutex<[Seen; 3]>>,
    thread: std::thread::JoinHandle<()>,
}

impl Load {
    /// `rate` requests a second in all over `connections` connections from
    /// `from`, each paced on its own.
    pub fn start(addr: SocketAddr, from: IpAddr, connections: usize, rate: u32) -> Self {
        let phase = Arc::new(AtomicU8::new(WARM_UP));
        let seen: Arc<Mutex<[Seen; 3]>> = Arc::default();
        let (p, s) = (phase.clone(), seen.clone());
        let period = Duration::from_secs(connections as u64) / rate;
        let (realtime_tx, realtime_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            // The good clients measure the server, not this CPU's queue:
            // real-time priority when allowed, so the attacks' threads
            // beside them never delay a request or a reading.
            let param = libc::sched_param { sched_priority: 1 };
            // SAFETY: sched_setscheduler(2) on this thread, with a valid param.
            let realtime = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0;
            let _ = realtime_tx.send(realtime);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                for c in 0..connections {
                    let (p, s) = (p.clone(), s.clone());
                    // Spread the connections' ticks over the period.
                    let offset = period * c as u32 / connections as u32;
                    tasks.push(tokio::spawn(client(addr, from, period, offset, p, s)));
                }
                for task in tasks {
                    let _ = task.await;
                }
            });
        });
        Self {
            phase,
            seen,
            thread,
            realtime: realtime_rx.recv().unwrap_or(false),
        }
    }

    /// Ends the load; what it saw in each phase (warm-up, unloaded, under
    /// attack).
    pub fn finish(self) -> [Seen; 3] {
        self.phase.store(DONE, Ordering::Relaxed);
        let _ = self.thread.join();
        std::mem::take(&mut *self.seen.lock().expect("not poisoned"))
    }
}

/// One connection's requests, one every `period`, until [`DONE`]. A lost
/// request is counted in the phase it was sent in, and the connection is
/// made again.
async fn client(
    addr: SocketAddr,
    from: IpAddr,
    period: Duration,
    offset: Duration,
    phase: Arc<AtomicU8>,
    seen: Arc<Mutex<[Seen; 3]>>,
) {
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut send = None;
    loop {
        tick.tick().await;
        let now = phase.load(Ordering::Relaxed);
        if now == DONE {
            return;
        }
        let started = Instant::now();
        let result = match &mut send {
            Some(send) => siege::get(send, GOOD_HOST, "/").await,
            None => match siege::http1(addr, from).await {
                Ok(new) => siege::get(send.insert(new), GOOD_HOST, "/").await,
                Err(error) => Err(error),
            },
        };
        let took = started.elapsed();
        let mut seen = seen.lock().expect("not poisoned");
        let seen = &mut seen[usize::from(now)];
        match result {
            Ok(StatusCode::OK) => {
                seen.latencies.push(took);
                seen.when.push((started, took));
            }
            other => {
                seen.lost += 1;
                let how = match other {
                    Ok(status) => format!("status {}", status.as_u16()),
                    Err(error) => format!("error: {error}"),
                };
                *seen.lost_how.entry(how).or_default() += 1;
                send = None;
            }
        }
    }
}
