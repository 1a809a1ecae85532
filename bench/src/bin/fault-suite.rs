//! The fault suite at full size, against the real `catshost` binary: prints
//! markdown tables of what every kind of abuse got.
//!
//!     cargo build --release -p catshost -p catshost-bench
//!     target/release/fault-suite

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use catshost_bench::client::{Conn, Outcome};
use catshost_bench::{abuse, faults, percentile};
use clap::Parser;
use http::Version;

#[derive(Parser)]
struct Args {
    /// The catshost binary.
    #[arg(long, default_value = "target/release/catshost")]
    catshost: PathBuf,
    /// Requests in the fault mix.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Concurrent clients in the fault mix.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Slowloris connections.
    #[arg(long, default_value_t = 1000)]
    slowloris: usize,
    /// Connections of each silent kind (nothing, `P`, the HTTP/2 preface,
    /// the preface and SETTINGS).
    #[arg(long, default_value_t = 2500)]
    silent: usize,
    /// Clients that never read: HTTP/2 zero-window connections (20 streams
    /// each) and HTTP/1 connections, each.
    #[arg(long, default_value_t = 200)]
    not_reading: usize,
    /// Clients of the admin listener that pipeline GET /metrics and never
    /// read.
    #[arg(long, default_value_t = 300)]
    admin_not_reading: usize,
    /// The server's --admin-max-connections.
    #[arg(long, default_value_t = 64)]
    admin_max_connections: usize,
    /// The server's --request-timeout, in milliseconds.
    #[arg(long, default_value_t = 200)]
    request_timeout_ms: u64,
    /// The server's --header-read-timeout, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    header_timeout_ms: u64,
}

struct Server {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Server {
    fn start(args: &Args, component: &std::path::Path) -> anyhow::Result<Self> {
        let mut child = Command::new(&args.catshost)
            .arg("serve")
            .arg(component)
            .args([
                "--addr",
                "127.0.0.1:0",
                "--max-memory",
                "8MiB",
                "--max-connections",
                "20000",
            ])
            .args([
                "--request-timeout",
                &format!("{}ms", args.request_timeout_ms),
            ])
            .args([
                "--header-read-timeout",
                &format!("{}ms", args.header_timeout_ms),
            ])
            // The idle and write timeouts as the header read timeout; every
            // client here is one address, so no per-client cap.
            .args(["--idle-timeout", &format!("{}ms", args.header_timeout_ms)])
            .args(["--write-timeout", &format!("{}ms", args.header_timeout_ms)])
            .args(["--max-connections-per-client", "100000"])
            .args(["--admin-addr", "127.0.0.1:0", "--admin-max-connections"])
            .arg(args.admin_max_connections.to_string())
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "failed to run '{}' (build it with cargo build --release)",
                    args.catshost.display()
                )
            })?;
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let mut admin = None;
        let addr = loop {
            let line = lines
                .next()
                .context("catshost exited before it was ready")??;
            if let Some(addr) = line.strip_prefix("catshost: admin endpoints on http://") {
                admin = Some(addr.parse()?);
            }
            if let Some(addr) = line.strip_prefix("catshost: serving http://") {
                break addr.parse()?;
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        let admin = admin.context("catshost printed no admin address")?;
        Ok(Self { child, addr, admin })
    }

    /// The descriptors the server has open.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }
}

/// GETs /ok on `clients` connections until `stop`, returning the latencies
/// and any request that did not get 200.
async fn good_clients(
    addr: SocketAddr,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<Duration>, usize) {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let version = if c % 2 == 0 {
                Version::HTTP_11
            } else {
                Version::HTTP_2
            };
            let mut conn = Conn::open(addr, version).await.expect("connect");
            let (mut latencies, mut failed) = (Vec::new(), 0);
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                if conn.get(addr, "/ok").await != Outcome::Status(200) {
                    failed += 1;
                }
                latencies.push(start.elapsed());
                if conn.is_closed() {
                    conn = Conn::open(addr, version).await.expect("connect");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (latencies, failed)
        }));
    }
    let (mut all, mut failed) = (Vec::new(), 0);
    for task in tasks {
        let (latencies, f) = task.await.expect("client");
        all.extend(latencies);
        failed += f;
    }
    (all, failed)
}

/// Runs `abuse` while good clients run; returns its result and the good
/// clients' (p50, p99, failures, count).
async fn under<T>(
    addr: SocketAddr,
    abuse: impl Future<Output = T>,
) -> (T, Duration, Duration, usize, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let good = tokio::spawn(good_clients(addr, 4, stop.clone()));
    let result = abuse.await;
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, failed) = good.await.expect("good clients");
    let p50 = percentile(&mut latencies, 50.0);
    let p99 = percentile(&mut latencies, 99.0);
    (result, p50, p99, failed, latencies.len())
}

/// One row of a table of connections the server should close within
/// `timeout` + 1 s.
fn print_closed(
    name: &str,
    closed: &[Option<Duration>],
    timeout: Duration,
    good: usize,
    failed: usize,
    p99: Duration,
) {
    let times: Vec<Duration> = closed.iter().flatten().copied().collect();
    let (min, max) = (
        times.iter().min().copied().unwrap_or_default(),
        times.iter().max().copied().unwrap_or_default(),
    );
    let within = times.len() == closed.len() && max <= timeout + Duration::from_secs(1);
    println!(
        "| {name} | {} | {} | {} / {} | {} | {good} | {failed} | {} |",
        closed.len(),
        times.len(),
        ms(min),
        ms(max),
        if within { "yes" } else { "NO" },
        ms(p99)
    );
}

type AbuseRun = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<abuse::H2Abuse>>>>;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wit = catshost_wat::Wit::workspace()?;
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/faults.wat");
    let component =
        std::env::temp_dir().join(format!("catshost-faults-{}.wasm", std::process::id()));
    std::fs::write(&component, wit.component_from_wat_file(&fixture)?)?;
    let mut server = Server::start(&args, &component)?;
    let addr = server.addr;

    println!("# catshost fault suite\n");
    println!(
        "{} requests from {} clients, one in 5 to a faulty path; --request-timeout {} ms, --max-memory 8MiB.\n",
        args.requests, args.clients, args.request_timeout_ms
    );
    let mut warm = Conn::open(addr, Version::HTTP_11).await?;
    for _ in 0..100 {
        warm.get(addr, "/ok").await;
    }
    let rss_before = server.rss_mib();
    // The good clients alone, for the latency every table compares with.
    let ((), _, unloaded_p99, _, unloaded_count) =
        under(addr, tokio::time::sleep(Duration::from_secs(3))).await;
    let suite = faults::Suite {
        requests: args.requests,
        clients: args.clients,
        fault_every: 5,
    };
    let (report, _, mix_p99, mix_failed, mix_count) = under(addr, faults::run(addr, suite)).await;
    let mut report = report?;
    let deadline = Duration::from_millis(args.request_timeout_ms + 100);
    println!("{}", report.table());
    let wrong = report.unexpected();
    println!(
        "- unexpected outcomes: {}",
        if wrong.is_empty() {
            "none".to_string()
        } else {
            format!("{wrong:?}")
        }
    );
    println!(
        "- slowest request: {} (deadline + 100 ms = {}): {}",
        ms(report.max_latency()),
        ms(deadline),
        if report.max_latency() <= deadline {
            "within"
        } else {
            "OVER"
        }
    );
    println!(
        "- {:.0} requests/s; server RSS {:.1} MiB before, {:.1} MiB after",
        args.requests as f64 / report.elapsed.as_secs_f64(),
        rss_before,
        server.rss_mib()
    );
    println!(
        "- good clients (4, a GET /ok every 5 ms each, beside the mix's {} clients): p99 {} \
         unloaded ({unloaded_count} requests), {} during the mix ({mix_count} requests, \
         {mix_failed} not 200): {:.2}x (target < 2x; the load generator shares the 2 cores)",
        args.clients,
        ms(unloaded_p99),
        ms(mix_p99),
        mix_p99.as_secs_f64() / unloaded_p99.as_secs_f64()
    );

    println!("\n## Slowloris\n");
    let (closed, p50, p99, failed, count) = under(
        addr,
        abuse::slowloris(
            addr,
            args.slowloris,
            Duration::from_millis(500),
            Duration::from_millis(args.header_timeout_ms * 3),
        ),
    )
    .await;
    let closed = closed?;
    let mut times: Vec<Duration> = closed.iter().flatten().copied().collect();
    println!(
        "| slow connections | cut by the server | cut after (p50 / max) | good requests | good failures | good p50 | good p99 |\n|---|---|---|---|---|---|---|"
    );
    let max = times.iter().max().copied().unwrap_or_default();
    println!(
        "| {} | {} | {} / {} | {count} | {failed} | {} | {} |",
        closed.len(),
        times.len(),
        ms(percentile(&mut times, 50.0)),
        ms(max),
        ms(p50),
        ms(p99)
    );

    let timeout = Duration::from_millis(args.header_timeout_ms);
    let give_up = timeout * 3 + Duration::from_secs(5);
    println!("\n## Connections that never send a request\n");
    println!(
        "--header-read-timeout {}; closed within the timeout + 1 s is the bound.\n",
        ms(timeout)
    );
    println!(
        "| sends | connections | closed by the server | closed after (min / max) | within bound | good requests | good failures | good p99 |\n|---|---|---|---|---|---|---|---|"
    );
    for how in abuse::Silent::ALL {
        let (closed, _p50, p99, failed, count) =
            under(addr, abuse::silent(addr, how, args.silent, give_up)).await;
        let closed = closed?;
        print_closed(&format!("{how:?}"), &closed, timeout, count, failed, p99);
    }

    println!("\n## Clients that do not read\n");
    println!(
        "--write-timeout {}, --request-timeout {}; HTTP/2 connections with a window of 0 and 20 streams each, HTTP/1 connections that read nothing.\n",
        ms(timeout),
        ms(Duration::from_millis(args.request_timeout_ms))
    );
    println!(
        "| client | connections | closed by the server | closed after (min / max) | within bound | good requests | good failures | good p99 |\n|---|---|---|---|---|---|---|---|"
    );
    let zero = |path: &'static str| async move {
        let runs = (0..args.not_reading).map(|_| abuse::zero_window(addr, 20, path, give_up));
        futures_util::future::try_join_all(runs).await
    };
    // Twice: what the first round leaves (instance pool slots it warmed,
    // the allocator's pages) is there to be reused by the second.
    let mut rss = vec![server.rss_mib()];
    for round in 1..=2 {
        for (name, path) in [
            ("HTTP/2 zero window, /ok", "/ok"),
            ("HTTP/2 zero window, /flood", "/flood"),
        ] {
            let (closed, _p50, p99, failed, count) = under(addr, zero(path)).await;
            print_closed(
                &format!("{name} (round {round})"),
                &closed?,
                timeout,
                count,
                failed,
                p99,
            );
        }
        let (closed, _p50, p99, failed, count) = under(
            addr,
            abuse::not_reading(addr, args.not_reading, "/flood", give_up),
        )
        .await;
        print_closed(
            &format!("HTTP/1 reads nothing, /flood (round {round})"),
            &closed?,
            timeout,
            count,
            failed,
            p99,
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(server.rss_mib());
    }
    println!(
        "\nServer RSS: {:.1} MiB before the clients that do not read, {:.1} MiB after the first round, {:.1} MiB after the second.",
        rss[0], rss[1], rss[2]
    );

    println!("\n## Admin clients that pipeline and do not read\n");
    println!(
        "{} clients pipeline GET /metrics on --admin-addr and read nothing; \
         --admin-max-connections {}, --write-timeout {}: past the cap closed at accept, \
         the others at the write timeout.\n",
        args.admin_not_reading,
        args.admin_max_connections,
        ms(timeout)
    );
    println!(
        "| client | connections | closed by the server | closed after (min / max) | within bound | good requests | good failures | good p99 |\n|---|---|---|---|---|---|---|---|"
    );
    let fds_before = server.fds();
    let (stop, peak) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let sampler = std::thread::spawn({
        let (stop, peak, pid) = (stop.clone(), peak.clone(), server.child.id());
        move || {
            while !stop.load(Ordering::Relaxed) {
                let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
                peak.fetch_max(fds, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let admin = server.admin;
    let attack = abuse::pipelining_not_reading(admin, args.admin_not_reading, "/metrics", give_up);
    let (closed, _p50, p99, failed, count) = under(addr, attack).await;
    print_closed(
        "HTTP/1 pipelines /metrics, reads nothing",
        &closed?,
        timeout,
        count,
        failed,
        p99,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("the descriptor sampler");
    let healthz = Conn::open(admin, Version::HTTP_11)
        .await?
        .get(admin, "/healthz")
        .await;
    println!(
        "\nServer descriptors: {fds_before} before, at most {} during, {} a second after; admin /healthz after: {healthz}.",
        peak.load(Ordering::Relaxed),
        server.fds()
    );

    println!("\n## HTTP/2 abuse\n");
    println!(
        "| abuse | streams | server GOAWAY | server closed | RST_STREAM from server | responses | good requests | good failures | good p99 |\n|---|---|---|---|---|---|---|---|---|"
    );
    let listen = Duration::from_secs(3);
    let cases: Vec<(&str, AbuseRun)> = vec![
        (
            "rapid reset (HEADERS + RST_STREAM)",
            Box::pin(abuse::rapid_reset(addr, 20_000, "/ok", listen)),
        ),
        (
            "too many streams (/slow-body)",
            Box::pin(abuse::too_many_streams(addr, 1000, "/slow-body", listen)),
        ),
        (
            "huge header lists (100 KiB)",
            Box::pin(abuse::huge_headers(addr, 50, 100 << 10, listen)),
        ),
    ];
    for (name, case) in cases {
        let (result, _p50, p99, failed, count) = under(addr, case).await;
        let r = result?;
        println!(
            "| {name} | {} | {} | {} | {} | {} | {count} | {failed} | {} |",
            r.streams,
            r.goaway,
            r.closed,
            r.resets,
            r.responses,
            ms(p99)
        );
    }

    let mut check = Conn::open(addr, Version::HTTP_11).await?;
    let after = check.get(addr, "/ok").await;
    println!(
        "\nAfter everything: /ok -> {after}; server RSS {:.1} MiB.",
        server.rss_mib()
    );
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGTERM) };
    let status = server.child.wait()?;
    println!(
        "The server exited with {status} after SIGTERM (host crashes: {}).",
        if status.success() { 0 } else { 1 }
    );
    let _ = std::fs::remove_file(&component);
    if !wrong.is_empty()
        || after != Outcome::Status(200)
        || healthz != Outcome::Status(200)
        || !status.success()
    {
        bail!("the fault suite failed");
    }
    Ok(())
}
