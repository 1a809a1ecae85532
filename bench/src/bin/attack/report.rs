//! What a run measured, printed: the attacks' tallies, the server's metrics
//! after them, the good tenant's p99 by window, and the one table of
//! results against their targets.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use catshost_bench::percentile;

use crate::good::Seen;
use crate::server::{HOST_MEMORY_GUARD_MIB, Stopped};
use crate::siege::Tally;

/// Everything a run measured.
pub struct Report {
    /// Each attack: its name, where it came from, what it counted.
    pub tallies: Vec<(String, IpAddr, Arc<Tally>)>,
    /// The server's `/metrics` once the attacks stopped.
    pub metrics: Option<String>,
    /// What the good clients saw alone and under attack.
    pub alone: Seen,
    pub attacked: Seen,
    pub attack_start: Instant,
    /// The windows of the p99 by window: how long, how many.
    pub window: Duration,
    pub windows: usize,
    /// VmRSS in KiB: before the attacks, at its peak, after them.
    pub rss_before: u64,
    pub rss_peak: u64,
    pub rss_after: u64,
    /// VmHWM in KiB at the end.
    pub hwm: u64,
    /// When `rss_after` was read, after the attacks stopped.
    pub after: Duration,
    /// The peak of the host memory accounts in bytes, and the scrapes of
    /// it that failed.
    pub accounts_peak: u64,
    pub scrape_failures: u64,
    /// How long the accounts took to drain to 0, or what they still held
    /// (bytes) after `drain_wait`.
    pub drained: Result<Duration, Option<f64>>,
    pub drain_wait: Duration,
    /// Shares of one core: the server alone, under attack; this process
    /// alone, under attack.
    pub cpu: [f64; 4],
    pub stopped: Stopped,
}

impl Report {
    pub fn print(mut self) {
        println!("\n## The attacks\n");
        println!("| attack | from | what it did, what the server did |\n|---|---|---|");
        for (name, from, tally) in &self.tallies {
            println!("| {name} | {from} | {} |", tally.summary());
        }
        println!("\n## The server's metrics after the attacks (those not 0)\n");
        match &self.metrics {
            Some(text) => crate::server::interesting(text)
                .iter()
                .for_each(|l| println!("    {l}")),
            None => println!("    (the admin endpoint did not answer within 5 s)"),
        }
        let by_window: Vec<String> = self
            .attacked
            .p99_by(self.attack_start, self.window, self.windows)
            .iter()
            .enumerate()
            .map(|(i, (p99, n))| {
                let from = self.window.as_secs() * i as u64;
                let to = from + self.window.as_secs();
                format!("{from}-{to} s {} ({n})", ms(*p99))
            })
            .collect();
        println!(
            "\nThe good tenant's p99 by {} s of attack (requests): {}",
            self.window.as_secs(),
            by_window.join(", ")
        );
        self.results();
        if !self.stopped.stderr.is_empty() {
            println!("\nThe server's last lines on stderr (RUST_LOG=error):\n");
            self.stopped.stderr.iter().for_each(|l| println!("    {l}"));
        }
    }

    /// The one table: each measure, its value, its target, whether met.
    fn results(&mut self) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let yes = |ok: bool| if ok { "yes" } else { "NO" };
        println!("\n## Result\n");
        println!("| measure | value | target | met |\n|---|---|---|---|");
        println!(
            "| server peak RSS (VmRSS every 100 ms) | {:.1} MiB (VmHWM {:.1} MiB; {:.1} MiB before the attacks, {:.1} MiB {:.0} s after) | under the {HOST_MEMORY_GUARD_MIB} MiB guard | {} |",
            mib(self.rss_peak),
            mib(self.hwm),
            mib(self.rss_before),
            mib(self.rss_after),
            self.after.as_secs_f64(),
            yes(self.rss_peak.max(self.hwm) < HOST_MEMORY_GUARD_MIB * 1024)
        );
        println!(
            "| host memory accounts, peak (admin /metrics every 1 s) | {:.1} MiB ({} scrapes failed) | | |",
            self.accounts_peak as f64 / (1 << 20) as f64,
            self.scrape_failures
        );
        let drained = match self.drained {
            Ok(after) => format!(
                "back to 0 {:.1} s after the attacks stopped",
                after.as_secs_f64()
            ),
            Err(held) => format!(
                "{:.1} MiB still held {} s after the attacks stopped",
                held.unwrap_or(f64::NAN) / (1 << 20) as f64,
                self.drain_wait.as_secs()
            ),
        };
        println!(
            "| host memory accounts after the attacks | {drained} | 0 | {} |",
            yes(self.drained.is_ok())
        );
        let [server_alone, server_attacked, own_alone, own_attacked] = self.cpu;
        println!(
            "| CPU, alone / under attack (share of one core) | server {server_alone:.0}% / {server_attacked:.0}%; this process {own_alone:.0}% / {own_attacked:.0}% | | |"
        );
        let alone = Latencies::of(&mut self.alone);
        let attacked = Latencies::of(&mut self.attacked);
        let ratio = attacked.p99.as_secs_f64() / alone.p99.as_secs_f64();
        println!("| good p99 alone | {alone} | | |");
        println!(
            "| good p99 under attack | {attacked}: {ratio:.2}x alone | under 2x | {} |",
            yes(ratio < 2.0)
        );
        println!(
            "| good requests lost (error or not 200) | {} under attack{}, {} alone{} | 0 | {} |",
            self.attacked.lost,
            how(&self.attacked),
            self.alone.lost,
            how(&self.alone),
            yes(self.attacked.lost + self.alone.lost == 0)
        );
        let took = self.stopped.took.as_secs_f64();
        let exit = match self.stopped.status {
            Some(status) => format!("{status} after {took:.1} s"),
            None => format!("still running {took:.0} s after SIGTERM: killed"),
        };
        println!(
            "| exit after SIGTERM | {exit} | 0 | {} |",
            yes(self.stopped.status.is_some_and(|s| s.success()))
        );
    }
}

/// The percentiles of what the good clients saw in a phase.
struct Latencies {
    p50: Duration,
    p99: Duration,
    max: Duration,
    count: usize,
}

impl Latencies {
    fn of(seen: &mut Seen) -> Self {
        Self {
            p50: percentile(&mut seen.latencies, 50.0),
            p99: percentile(&mut seen.latencies, 99.0),
            max: seen.latencies.iter().max().copied().unwrap_or_default(),
            count: seen.latencies.len(),
        }
    }
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (p50 {}, max {}, {} requests)",
            ms(self.p99),
            ms(self.p50),
            ms(self.max),
            self.count
        )
    }
}

/// What the lost requests of a phase got, if any were lost.
fn how(seen: &Seen) -> String {
    if seen.lost_how.is_empty() {
        return String::new();
    }
    let how: Vec<String> = seen
        .lost_how
        .iter()
        .map(|(what, n)| format!("{what} x{n}"))
        .collect();
    format!(" ({})", how.join(", "))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
