//! The fault suite: many concurrent clients, a share of them sending each
//! request to a misbehaving path of the `faults` fixture, the rest to `/ok`.
//! Every request must get its expected outcome; the report says how long
//! they took.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Version;
use tokio::sync::Mutex;

use crate::client::{Conn, Outcome};

/// Each path of the `faults` fixture and the outcome it must get.
pub const EXPECTED: [(&str, Outcome); 11] = [
    ("/ok", Outcome::Status(200)),
    ("/loop", Outcome::Status(504)),
    ("/memory-bomb", Outcome::Status(500)),
    ("/recursion", Outcome::Status(500)),
    ("/trap", Outcome::Status(500)),
    ("/no-response", Outcome::Status(500)),
    ("/invalid-header", Outcome::Status(500)),
    ("/huge-headers", Outcome::Status(500)),
    ("/trap-mid-body", Outcome::Cut),
    ("/set-twice", Outcome::Cut),
    ("/slow-body", Outcome::Cut),
];

/// How to run the suite.
#[derive(Clone, Copy, Debug)]
pub struct Suite {
    /// Requests in all.
    pub requests: usize,
    /// Clients sending at once, each on its own connection (half HTTP/1.1,
    /// half HTTP/2).
    pub clients: usize,
    /// One request in this many goes to a faulty path.
    pub fault_every: usize,
}

/// What one path got.
#[derive(Debug, Default)]
pub struct Row {
    pub outcomes: BTreeMap<Outcome, usize>,
    pub latencies: Vec<Duration>,
}

/// What the suite saw, by path.
#[derive(Debug, Default)]
pub struct Report {
    pub rows: BTreeMap<&'static str, Row>,
    pub elapsed: Duration,
}

impl Report {
    /// Requests whose outcome was not the expected one, as `(path, got)`.
    pub fn unexpected(&self) -> Vec<(&'static str, Outcome, usize)> {
        let mut wrong = Vec::new();
        for (path, row) in &self.rows {
            let want = expected(path);
            for (&got, &count) in &row.outcomes {
                if got != want {
                    wrong.push((*path, got, count));
                }
            }
        }
        wrong
    }

    /// The slowest request of all.
    pub fn max_latency(&self) -> Duration {
        self.rows
            .values()
            .flat_map(|r| r.latencies.iter().copied())
            .max()
            .unwrap_or_default()
    }

    /// A markdown table: path, expected, outcomes, p50, p99, max.
    pub fn table(&mut self) -> String {
        let mut out = String::from(
            "| path | expected | got | p50 | p99 | max |\n|---|---|---|---|---|---|\n",
        );
        for (path, row) in &mut self.rows {
            let got: Vec<String> = row
                .outcomes
                .iter()
                .map(|(o, n)| format!("{o} x{n}"))
                .collect();
            let max = row.latencies.iter().max().copied().unwrap_or_default();
            let p50 = crate::percentile(&mut row.latencies, 50.0);
            let p99 = crate::percentile(&mut row.latencies, 99.0);
            out.push_str(&format!(
                "| {path} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms |\n",
                expected(path),
                got.join(", "),
                ms(p50),
                ms(p99),
                ms(max)
            ));
        }
        out
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn expected(path: &str) -> Outcome {
    EXPECTED
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, o)| *o)
        .unwrap_or(Outcome::Cut)
}

/// The path of request number `i`.
fn path_of(i: usize, fault_every: usize) -> &'static str {
    if !i.is_multiple_of(fault_every) {
        return "/ok";
    }
    let faults = &EXPECTED[1..];
    faults[(i / fault_every) % faults.len()].0
}

/// Runs the suite against the `faults` fixture served on `addr`.
pub async fn run(addr: SocketAddr, suite: Suite) -> anyhow::Result<Report> {
    let next = Arc::new(AtomicUsize::new(0));
    let report = Arc::new(Mutex::new(Report::default()));
    let start = Instant::now();
    let mut clients = Vec::new();
    for c in 0..suite.clients {
        let version = if c % 2 == 0 {
            Version::HTTP_11
        } else {
            Version::HTTP_2
        };
        let next = next.clone();
        let report = report.clone();
        clients.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr, version).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= suite.requests {
                    return anyhow::Ok(());
                }
                let path = path_of(i, suite.fault_every);
                let started = Instant::now();
                let outcome = conn.get(addr, path).await;
                let latency = started.elapsed();
                {
                    let mut report = report.lock().await;
                    let row = report.rows.entry(path).or_default();
                    *row.outcomes.entry(outcome).or_default() += 1;
                    row.latencies.push(latency);
                }
                if conn.is_closed() {
                    conn = Conn::open(addr, version).await?;
                }
            }
        }));
    }
    for client in clients {
        client.await??;
    }
    let mut report = Arc::try_unwrap(report)
        .expect("every client is done")
        .into_inner();
    report.elapsed = start.elapsed();
    Ok(report)
}
