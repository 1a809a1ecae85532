//! The server under attack: its config file (three tenants), the `catshost`
//! process pinned to its CPU, its RSS sampled every 100 ms, its admin
//! metrics, and its stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The process-wide guard (`[server] max_host_memory`).
pub const HOST_MEMORY_GUARD_MIB: u64 = 512;

/// Host names of the tenants: the good one, the two WebSocket ones; the
/// faults tenant takes every other host (route `/`).
pub const GOOD_HOST: &str = "good.test";
pub const WS_HOST: &str = "ws.test";
pub const OPEN_HOST: &str = "open.test";
pub const EVIL_HOST: &str = "evil.test";

/// What the config file is made of.
pub struct Setup<'a> {
    pub dir: &'a Path,
    pub good: &'a Path,
    pub faults: &'a Path,
    pub ws_faults: &'a Path,
    /// The header read, idle and write timeouts.
    pub timeout: Duration,
}

/// Writes the config file into `setup.dir` and returns its path.
///
/// Four tenants: a tenant serves one component and the hostile guests are
/// two, `faults.wat` (a WASI 0.2 HTTP guest: `/keep` and the fault suite's
/// paths) and ws-faults (a WebSocket handler); and the abandoned opens get
/// a ws-faults tenant of their own. An instance hands its guest one event at
/// a time, and each abandoned open still runs its second-long `open`, so
/// one client's 64 of them (its cap) queue about a minute of opens in front
/// of every other event of the instance: on the same tenant the hoarder got
/// one answer in a 60 s run, and the floods 503 (the tenant's concurrency).
pub fn write_config(setup: &Setup) -> anyhow::Result<PathBuf> {
    let ms = setup.timeout.as_millis();
    let text = format!(
        r#"# Made by bench/src/bin/attack: the good tenant and three hostile ones.
[server]
addr = "127.0.0.1:0"
max_host_memory = "{HOST_MEMORY_GUARD_MIB}MiB"
header_read_timeout = "{ms}ms"
idle_timeout = "{ms}ms"
write_timeout = "{ms}ms"
shutdown_timeout = "5s"

[[tenant]]
name = "good"
component = "{good}"
routes = ["{GOOD_HOST}"]

# The fault suite's paths and /keep; every host no other route names.
[[tenant]]
name = "evil"
component = "{faults}"
routes = ["/"]
max_instance_reuse_count = 100
request_timeout = "200ms"
max_memory = "8MiB"

[[tenant]]
name = "evil-ws"
component = "{ws}"
routes = ["{WS_HOST}"]
websockets = true

[[tenant]]
name = "evil-open"
component = "{ws}"
routes = ["{OPEN_HOST}"]
websockets = true
"#,
        good = setup.good.display(),
        faults = setup.faults.display(),
        ws = setup.ws_faults.display(),
    );
    let path = setup.dir.join("catshost.toml");
    std::fs::write(&path, text).with_context(|| format!("failed to write '{}'", path.display()))?;
    Ok(path)
}

/// The running server.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stderr: Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `catshost serve --config` pinned to `cpu` (set between fork
    /// and exec, as `taskset -c CPU` does) and waits for its ready line.
    pub fn start(
        catshost: &Path,
        config: &Path,
        cpu: Option<usize>,
        workers: usize,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(catshost);
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--admin-addr", "127.0.0.1:0", "--no-access-log"])
            .args(["--workers", &workers.to_string()])
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(cpu) = cpu {
            // SAFETY: between fork and exec only sched_setaffinity(2) runs,
            // on a set built on the stack: async-signal-safe.
            unsafe {
                command.pre_exec(move || pin_to(cpu));
            }
        }
        let mut child = command.spawn().with_context(|| {
            format!(
                "failed to run '{}' (cargo build --release -p catshost)",
                catshost.display()
            )
        })?;
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let (mut addr, mut admin, mut said) = (None, None, Vec::new());
        while addr.is_none() || admin.is_none() {
            let Some(line) = lines.next().transpose()? else {
                bail!("catshost exited before it was ready: {}", said.join("\n"));
            };
            if let Some(a) = line.strip_prefix("catshost: serving http://") {
                addr = Some(a.parse()?);
            } else if let Some(a) = line.strip_prefix("catshost: admin endpoints on http://") {
                admin = Some(a.parse()?);
            }
            said.push(line);
        }
        // Keep the last lines it writes, for the report.
        let stderr = Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut keep = keep.lock().expect("not poisoned");
                if keep.len() == 20 {
                    keep.remove(0);
                }
                keep.push(line);
            }
        });
        Ok(Self {
            child,
            addr: addr.expect("read"),
            admin: admin.expect("read"),
            stderr,
            reader: Some(reader),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then its exit status (`None` if it had not exited after
    /// `within`: it is then killed), how long it took, and the last lines
    /// it wrote to stderr.
    pub fn terminate(mut self, within: Duration) -> anyhow::Result<Stopped> {
        let start = Instant::now();
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let mut status = None;
        while status.is_none() && start.elapsed() < within {
            status = self.child.try_wait()?;
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = start.elapsed();
        if status.is_none() {
            self.child.kill()?;
            self.child.wait()?;
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let stderr = std::mem::take(&mut *self.stderr.lock().expect("not poisoned"));
        Ok(Stopped {
            status,
            took,
            stderr,
        })
    }
}

/// How the server ended.
pub struct Stopped {
    pub status: Option<ExitStatus>,
    pub took: Duration,
    pub stderr: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pins the calling thread (and what it starts later) to `cpu`.
pub fn pin_to(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The CPU time process `pid` has used (user and system), from
/// `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which ends with the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf(3) has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    // utime and stime are fields 14 and 15, 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
}

/// The highest value a sampler thread saw, until it is dropped.
pub struct Peak {
    value: Arc<AtomicU64>,
    pub failures: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peak {
    /// Samples `sample` every `every` on a thread of its own; a `None` is
    /// counted as a failure.
    pub fn sample(
        every: Duration,
        mut sample: impl FnMut() -> Option<u64> + Send + 'static,
    ) -> Self {
        let value = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (v, f, s) = (value.clone(), failures.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match sample() {
                    Some(x) => {
                        v.fetch_max(x, Ordering::Relaxed);
                    }
                    None => {
                        f.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(every);
            }
        });
        Self {
            value,
            failures,
            stop,
            thread: Some(thread),
        }
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    /// The peak so far, and starts again from 0.
    pub fn take(&self) -> u64 {
        self.value.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Peak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The admin endpoint's `/metrics` text, with blocking I/O and `timeout`.
pub fn scrape(admin: SocketAddr, timeout: Duration) -> Option<String> {
    let mut tcp = TcpStream::connect_timeout(&admin, timeout).ok()?;
    tcp.set_read_timeout(Some(timeout)).ok()?;
    tcp.set_write_timeout(Some(timeout)).ok()?;
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nhost: admin\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some(body.to_string())
}

/// The value of the series `name` (labels included, as written) in `text`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The series worth reading after an attack, those not zero: the accounts,
/// refusals, closed connections, guest faults and WebSocket closes.
pub fn interesting(text: &str) -> Vec<&str> {
    const PREFIXES: [&str; 12] = [
        "catshost_requests_in_flight",
        "catshost_websockets_open",
        "catshost_instances_live",
        "catshost_host_memory_bytes",
        "catshost_host_memory_process_bytes",
        "catshost_host_memory_refusals",
        "catshost_connections_closed",
        "catshost_connections_open",
        "catshost_admission_rejections",
        "catshost_guest_faults",
        "catshost_websocket_closes",
        "catshost_requests_total{tenant=\"good\"",
    ];
    text.lines()
        .filter(|l| PREFIXES.iter().any(|p| l.starts_with(p)))
        .filter(|l| !l.ends_with(" 0"))
        .collect()
}
