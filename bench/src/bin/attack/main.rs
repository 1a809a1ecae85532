//! Every attack of issue 26 and the earlier fault suite at once against one
//! server with a good tenant and three hostile ones, and what the good tenant
//! and the server went through: the server's peak RSS, the good tenant's p99
//! under attack against its own unloaded p99, its lost requests, and the
//! server's exit status after SIGTERM (bench/README.md, "attack").
//!
//!     cargo build --release -p catshost -p catshost-bench
//!     target/release/attack                 # --duration 60
//!     target/release/attack --small         # a smoke run of a few seconds

mod good;
mod plan;
mod report;
mod server;
mod siege;
mod sockets;
mod suite;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::plan::{GOOD_FROM, Sizes};
use crate::server::{HOST_MEMORY_GUARD_MIB, Peak, Server};

/// The good load alone before it is measured.
const WARM_UP: Duration = Duration::from_secs(2);

#[derive(Parser)]
struct Args {
    /// The catshost binary.
    #[arg(long, default_value = "target/release/catshost")]
    catshost: PathBuf,
    /// The built guest examples (c-hello.wasm, python-ws-faults.wasm).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/guest-examples"))]
    guests: PathBuf,
    /// Seconds of attack [default: 60, 5 with --small].
    #[arg(long)]
    duration: Option<u64>,
    /// Seconds the good tenant's p99 is measured alone first [default: 10,
    /// 2 with --small].
    #[arg(long)]
    unloaded: Option<u64>,
    /// Seconds to wait, once the attacks stop, for the host memory
    /// accounts to drain to 0 before SIGTERM [default: 90, 5 with --small].
    #[arg(long)]
    drain: Option<u64>,
    /// Every attack at a tenth of its size or less, for a smoke run.
    #[arg(long)]
    small: bool,
    /// The server's CPU; this process takes --client-cpu.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// This process's CPU (the good load and the attacks).
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
    /// Pin nothing.
    #[arg(long)]
    no_pin: bool,
    /// The server's --workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// The good tenant's requests per second, in all.
    #[arg(long, default_value_t = 300)]
    good_rate: u32,
    /// The good tenant's keep-alive connections.
    #[arg(long, default_value_t = 4)]
    good_connections: usize,
    /// Only the attacks listed, by number (1-6) or id (1a, 6c: what the
    /// attack's name starts with), comma-separated, to see which one does
    /// what [default: all].
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The server's header read, idle and write timeouts, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.no_pin {
        // Before any thread starts: they all inherit it.
        server::pin_to(args.client_cpu).context("failed to pin this process")?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(|| {
            // The attacks' threads yield to the good load's on a busy CPU:
            // the clients of a real server are on other machines.
            // SAFETY: setpriority(2) on this thread's own id.
            unsafe { libc::setpriority(libc::PRIO_PROCESS as _, libc::gettid() as _, 5) };
        })
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let sizes = Sizes::new(args.small);
    let duration = Duration::from_secs(args.duration.unwrap_or(if args.small { 5 } else { 60 }));
    let unloaded = Duration::from_secs(args.unloaded.unwrap_or(if args.small { 2 } else { 10 }));
    let timeout = Duration::from_millis(args.timeout_ms);
    let drain_wait = Duration::from_secs(args.drain.unwrap_or(if args.small { 5 } else { 90 }));

    let dir = std::env::temp_dir().join(format!("catshost-attack-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let faults = dir.join("faults.wasm");
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/faults.wat");
    std::fs::write(
        &faults,
        catshost_wat::Wit::workspace()?.component_from_wat_file(&fixture)?,
    )?;
    let guest = |name: &str| -> anyhow::Result<PathBuf> {
        let path = args.guests.join(name);
        path.canonicalize().with_context(|| {
            format!(
                "no '{}': build it with guest-examples/build.sh",
                path.display()
            )
        })
    };
    let config = server::write_config(&server::Setup {
        dir: &dir,
        good: &guest("c-hello.wasm")?,
        faults: &faults,
        ws_faults: &guest("python-ws-faults.wasm")?,
        timeout,
    })?;
    let server = Server::start(
        &args.catshost,
        &config,
        (!args.no_pin).then_some(args.server_cpu),
        args.workers,
    )?;
    let (addr, admin, pid) = (server.addr, server.admin, server.pid());
    // However the attacks go, the run ends.
    let bound = unloaded + duration + drain_wait + Duration::from_secs(120);
    std::thread::spawn(move || {
        std::thread::sleep(bound);
        eprintln!("attack: still running after {bound:?}: giving up");
        std::process::exit(2);
    });

    println!("# catshost under every attack at once\n");
    println!(
        "- config: {} (four tenants: good, evil (faults.wat), evil-ws and evil-open (ws-faults); \
         why four: server.rs, write_config)",
        config.display()
    );
    println!(
        "- server: {addr}, admin {admin}; header read, idle and write timeouts {} ms; \
         max_host_memory {HOST_MEMORY_GUARD_MIB} MiB",
        timeout.as_millis()
    );
    println!(
        "- good tenant: {} req/s on {} HTTP/1.1 keep-alive connections from {GOOD_FROM}; \
         {} s warm-up, {} s alone, then {} s under attack",
        args.good_rate,
        args.good_connections,
        WARM_UP.as_secs(),
        unloaded.as_secs(),
        duration.as_secs()
    );

    let rss = Peak::sample(Duration::from_millis(100), move || {
        server::status_kib(pid, "VmRSS:")
    });
    let accounts = Peak::sample(Duration::from_secs(1), move || {
        let text = server::scrape(admin, Duration::from_secs(1))?;
        server::metric(&text, "catshost_host_memory_process_bytes").map(|b| b as u64)
    });
    let load = good::Load::start(addr, GOOD_FROM, args.good_connections, args.good_rate);
    let good_thread = if load.realtime {
        "at real-time priority (SCHED_FIFO 1)"
    } else {
        "at nice 0 (SCHED_FIFO refused)"
    };
    if args.no_pin {
        println!("- pinning: none; the good load on a thread of its own {good_thread}");
    } else {
        println!(
            "- pinning: server on CPU {} (sched_setaffinity between fork and exec, as `taskset -c {}`), \
             --workers {}; this process (good load and attacks) on CPU {} (as `taskset -c {}`): \
             the good load on a thread of its own {good_thread}, the attacks on 2 threads at nice 5",
            args.server_cpu, args.server_cpu, args.workers, args.client_cpu, args.client_cpu
        );
    }
    tokio::time::sleep(WARM_UP).await;
    load.phase
        .store(good::UNLOADED, std::sync::atomic::Ordering::Relaxed);
    let rss_warm = rss.take();
    let own = std::process::id();
    let (cpu_start, own_start) = (server::cpu_time(pid), server::cpu_time(own));
    tokio::time::sleep(unloaded).await;
    let rss_before = rss.get().max(rss_warm);
    let (cpu_alone, own_alone) = (server::cpu_time(pid), server::cpu_time(own));

    load.phase
        .store(good::ATTACKED, std::sync::atomic::Ordering::Relaxed);
    let mut attacks = plan::attacks(&sizes, addr, admin, timeout);
    if !args.only.is_empty() {
        // An attack's id is what its name starts with: "1a", "6c"; "1"
        // picks every "1x".
        attacks.retain(|(name, ..)| {
            let id = name.split('.').next().unwrap_or_default();
            let number = id.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            args.only.iter().any(|n| n == id || n == number)
        });
    }
    let attack_start = std::time::Instant::now();
    let until = tokio::time::Instant::now() + duration;
    let running: Vec<_> = attacks
        .into_iter()
        .map(|(name, from, tally, attack)| {
            let task = tokio::spawn(tokio::time::timeout_at(until, attack));
            (name, from, tally, task)
        })
        .collect();
    tokio::time::sleep_until(until).await;
    let [_, alone, attacked] = load.finish();
    let (cpu_attacked, own_attacked) = (server::cpu_time(pid), server::cpu_time(own));
    let attacked_for = attack_start.elapsed();
    let mut tallies = Vec::new();
    for (name, from, tally, task) in running {
        let _ = task.await;
        tallies.push((name, from, tally));
    }
    let rss_peak = rss.get().max(rss_before);

    // What the attacks left held: the accounts should drain to 0.
    let stopped_at = std::time::Instant::now();
    let mut held = None;
    let drained = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        held = server::scrape(admin, Duration::from_secs(1))
            .and_then(|text| server::metric(&text, "catshost_host_memory_process_bytes"))
            .or(held);
        if held == Some(0.0) {
            break Ok(stopped_at.elapsed());
        }
        if stopped_at.elapsed() > drain_wait {
            break Err(held);
        }
    };
    let metrics = server::scrape(admin, Duration::from_secs(5));
    let after = stopped_at.elapsed();
    let rss_after = server::status_kib(pid, "VmRSS:").unwrap_or(0);
    let hwm = server::status_kib(pid, "VmHWM:").unwrap_or(0);
    let accounts_peak = accounts.get();
    let scrape_failures = accounts.failures.load(std::sync::atomic::Ordering::Relaxed);
    drop((rss, accounts));
    let stopped = server.terminate(Duration::from_secs(30))?;

    let window = Duration::from_secs(if args.small { 1 } else { 10 });
    let share = |used: Duration, over: Duration| 100.0 * used.as_secs_f64() / over.as_secs_f64();
    let report = report::Report {
        tallies,
        metrics,
        alone,
        attacked,
        attack_start,
        window,
        windows: duration.as_secs().div_ceil(window.as_secs()) as usize,
        rss_before,
        rss_peak,
        rss_after,
        hwm,
        after,
        accounts_peak,
        scrape_failures,
        drained,
        drain_wait,
        cpu: [
            share(cpu_alone - cpu_start, unloaded),
            share(cpu_attacked - cpu_alone, attacked_for),
            share(own_alone - own_start, unloaded),
            share(own_attacked - own_alone, attacked_for),
        ],
        stopped,
    };
    report.print();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
