//! What the end-to-end tests share: fixture components built from
//! `tests/fixtures/*.wat`, an in-process [`TestServer`], a running
//! `catshost` binary ([`Process`]), the HTTP client of the tests
//! ([`Client`]) and a raw TCP one for what no HTTP client sends ([`Raw`]).

#![allow(dead_code)] // Each test binary uses a different part of this.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

fn wit() -> &'static catshost_wat::Wit {
    static WIT: OnceLock<catshost_wat::Wit> = OnceLock::new();
    WIT.get_or_init(|| catshost_wat::Wit::workspace().expect("the WIT in wit/ parses"))
}

/// The component built from `tests/fixtures/NAME.wat`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(format!("{name}.wat"));
    wit()
        .component_from_wat_file(&path)
        .unwrap_or_else(|e| panic!("fixture {name}: {e:#}"))
}

/// The component built from `wat`, a guest written like the fixtures.
pub fn guest(wat: &str) -> Vec<u8> {
    wit()
        .component_from_wat(wat)
        .unwrap_or_else(|e| panic!("guest: {e:#}"))
}

/// Writes `bytes` to a fresh file named `name` under the test's temporary
/// folder and returns its path.
pub fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `target/guest-examples/LANG-NAME.wasm`, built by guest-examples/build.sh.
pub fn built(language: &str, name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guest-examples")
        .join(format!("{language}-{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run guest-examples/build.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The value of the sample `series` (name with labels, as exposed), if any.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().unwrap())
    })
}

/// Waits up to `timeout` until `metrics` have `series` at `value`.
pub async fn wait_for_sample(
    metrics: &catshost::metrics::Metrics,
    series: &str,
    value: f64,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let metrics = metrics.encode();
        if sample(&metrics, series) == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no `{series} {value}` within {timeout:?} in:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A fresh folder under the test's temporary folder.
pub fn folder() -> PathBuf {
    temp_file("x", b"").parent().unwrap().to_path_buf()
}

/// The lines of `process`'s stderr that are JSON (`--log-format json`).
pub fn json_lines(process: &Process) -> Vec<serde_json::Value> {
    process
        .stderr()
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// `len` bytes of a xorshift sequence: every value of a byte, no pattern a
/// stream could get right by accident.
pub fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

/// A socket listening on 127.0.0.1:0 that a child process inherits, for
/// `--listen-fd`: returns it with its descriptor (as text) and address.
pub fn inherited_listener() -> (socket2::Socket, String, SocketAddr) {
    use std::os::fd::AsRawFd;
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(16).unwrap();
    // The child inherits it.
    listener.set_cloexec(false).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let fd = listener.as_raw_fd().to_string();
    (listener, fd, addr)
}

/// The fixture `name` written to a `.wasm` file.
pub fn fixture_file(name: &str) -> PathBuf {
    temp_file(&format!("{name}.wasm"), &fixture(name))
}

/// A catshost server running in this process on 127.0.0.1:0.
pub struct TestServer {
    pub addr: SocketAddr,
    pub server: catshost::Server,
    task: tokio::task::JoinHandle<Result<(), catshost::Error>>,
}

impl TestServer {
    /// Serves the fixture `name` with default settings.
    pub async fn fixture(name: &str) -> Self {
        Self::start(&fixture(name), &catshost::Server::builder()).await
    }

    /// Serves `component` with the settings of `builder`.
    pub async fn start(component: &[u8], builder: &catshost::Builder) -> Self {
        let engine = catshost::Engine::new().unwrap();
        let handler = engine.load_bytes("fixture", component).unwrap();
        Self::serve(builder.build(handler), None).await
    }

    /// Runs `server` on 127.0.0.1:0 (HTTPS with `tls`) and waits until it
    /// is ready.
    pub async fn serve(server: catshost::Server, tls: Option<catshost::Tls>) -> Self {
        let ready = server.ready();
        let task = tokio::spawn({
            let server = server.clone();
            let addr = "127.0.0.1:0".parse().unwrap();
            async move {
                match tls {
                    Some(tls) => server.serve_tls(addr, tls).await,
                    None => server.serve_clear(addr).await,
                }
            }
        });
        let addr = ready.await.expect("the test server failed to start");
        Self { addr, server, task }
    }

    /// Waits until no request holds a guest or a permit.
    pub async fn wait_idle(&self) {
        let idle = tokio::time::timeout(Duration::from_secs(10), async {
            while self.server.in_flight().requests != 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            idle.is_ok(),
            "requests still in flight: {:?}",
            self.server.in_flight()
        );
    }

    /// The connections this server closed for `reason`, by its metrics.
    pub fn closed(&self, reason: &str) -> u64 {
        let metrics = self.server.metrics().encode();
        let name = format!("catshost_connections_closed_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&name))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    /// Switches the stop and waits for the server to finish.
    pub async fn stop(self) {
        self.server.stop().switch();
        self.task.await.unwrap().unwrap();
    }

    /// Waits for the server to finish (after its stop was switched).
    pub async fn finished(self) -> Result<(), catshost::Error> {
        self.task.await.unwrap()
    }
}

/// The body of every request a [`Client`] sends: bytes, or a stream.
pub type RequestBody = BoxBody<Bytes, Infallible>;

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<RequestBody>),
    H2(hyper::client::conn::http2::SendRequest<RequestBody>),
}

/// The HTTP client of the tests: one HTTP/1.1 or HTTP/2 connection (prior
/// knowledge on TCP, or over a TLS stream) whose requests all go to one
/// authority (the `Host` header on HTTP/1, `:authority` on HTTP/2).
pub struct Client {
    sender: Sender,
    scheme: &'static str,
    authority: String,
}

/// A response with its body read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub version: Version,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Client {
    /// A connection to `addr`; requests name `addr` as their authority.
    pub async fn connect(addr: SocketAddr, version: Version) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Self::over(tcp, version, "http", &addr.to_string()).await
    }

    /// A connection of `version` over `io` (a TCP or TLS stream) whose
    /// requests go to `scheme://authority`.
    pub async fn over<T>(io: T, version: Version, scheme: &'static str, authority: &str) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let io = TokioIo::new(io);
        let sender = if version == Version::HTTP_2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Sender::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Sender::H1(send)
        };
        Self {
            sender,
            scheme,
            authority: authority.to_string(),
        }
    }

    /// The same connection, its requests addressed to `authority` (a host
    /// to route by, say) instead.
    pub fn with_authority(mut self, authority: &str) -> Self {
        self.authority = authority.to_string();
        self
    }

    /// Sends a request with `body` to `path` and returns the response head.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> hyper::Result<Response<Incoming>> {
        self.send_body(method, path, Full::new(Bytes::copy_from_slice(body)))
            .await
    }

    /// Sends a request with `body` (of a known length or streamed, as its
    /// size hint says) to `path` and returns the response head.
    pub async fn send_body<B>(
        &mut self,
        method: &str,
        path: &str,
        body: B,
    ) -> hyper::Result<Response<Incoming>>
    where
        B: Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
    {
        self.send_with_headers(method, path, body, &[]).await
    }

    /// Sends a request with `body` and the header `header`, when given, to
    /// `path` and returns the response head.
    pub async fn send_with(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
        header: Option<(&str, &str)>,
    ) -> hyper::Result<Response<Incoming>> {
        let body = Full::new(Bytes::copy_from_slice(body));
        self.send_with_headers(method, path, body, header.as_slice())
            .await
    }

    async fn send_with_headers<B>(
        &mut self,
        method: &str,
        path: &str,
        body: B,
        headers: &[(&str, &str)],
    ) -> hyper::Result<Response<Incoming>>
    where
        B: Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
    {
        let mut request = Request::builder().method(method);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = body.boxed();
        match &mut self.sender {
            Sender::H1(send) => {
                let request = request
                    .uri(path)
                    .header(http::header::HOST, &self.authority)
                    .body(body)
                    .unwrap();
                send.ready().await?;
                send.send_request(request).await
            }
            Sender::H2(send) => {
                let request = request
                    .uri(format!("{}://{}{path}", self.scheme, self.authority))
                    .version(Version::HTTP_2)
                    .body(body)
                    .unwrap();
                send.ready().await?;
                send.send_request(request).await
            }
        }
    }

    /// Sends a request and reads the whole response, or fails where hyper
    /// does.
    pub async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> hyper::Result<Answer> {
        let response = self.send(method, path, body).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Sends a request and reads the whole response.
    pub async fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Answer {
        self.try_request(method, path, body).await.unwrap()
    }
}

/// GET `path` on a new connection of `version`.
pub async fn get(addr: SocketAddr, version: Version, path: &str) -> Answer {
    Client::connect(addr, version)
        .await
        .request("GET", path, b"")
        .await
}

/// GET `path` on a new connection of `version`, with `host` as the `Host`
/// header (HTTP/1.1) or the authority (HTTP/2).
pub async fn get_host(addr: SocketAddr, version: Version, host: &str, path: &str) -> Answer {
    Client::connect(addr, version)
        .await
        .with_authority(host)
        .request("GET", path, b"")
        .await
}

/// How long [`Raw`] waits for what it reads.
const RAW_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP connection written and read by hand, for what no HTTP client sends
/// or does: malformed or oversized heads, bytes that are not HTTP,
/// pipelined requests, a client that stops reading, and checks of the bytes
/// on the wire.
pub struct Raw {
    tcp: TcpStream,
    received: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            tcp: TcpStream::connect(addr).await.unwrap(),
            received: Vec::new(),
        }
    }

    /// Connects and writes `bytes`.
    pub async fn send(addr: SocketAddr, bytes: &[u8]) -> Self {
        let mut raw = Self::connect(addr).await;
        raw.write(bytes).await.unwrap();
        raw
    }

    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tcp.write_all(bytes).await
    }

    /// Everything received so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// Reads until what was received holds `needle` `count` times, and
    /// returns it; panics if the connection ends first or that takes 10 s.
    pub async fn read_until(&mut self, needle: &str, count: usize) -> String {
        let read = tokio::time::timeout(RAW_TIMEOUT, async {
            let mut buf = [0; 4096];
            while self.text().matches(needle).count() < count {
                let n = self.tcp.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed early: {}", self.text());
                self.received.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(
            read.is_ok(),
            "{count} times {needle:?} did not arrive: {}",
            self.text()
        );
        self.text()
    }

    /// Reads until the server closes the connection and returns what it
    /// sent, or the read's error (what came before it is in
    /// [`Raw::text`]); panics if it is still open after 10 s.
    pub async fn read_to_end(&mut self) -> std::io::Result<String> {
        let read = tokio::time::timeout(RAW_TIMEOUT, self.tcp.read_to_end(&mut self.received))
            .await
            .unwrap_or_else(|_| panic!("the connection is still open: {}", self.text()));
        read.map(|_| self.text())
    }

    /// Reads until the server closes the connection (or it fails); `false`
    /// if it is still open after `timeout`.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.tcp.read_to_end(&mut self.received))
            .await
            .is_ok()
    }
}

/// Sends `head` (a raw HTTP/1.1 request head) and returns the status line.
pub async fn raw_status(addr: SocketAddr, head: &str) -> String {
    let mut raw = Raw::send(addr, head.as_bytes()).await;
    let text = raw.read_until("\r\n", 1).await;
    text.lines().next().unwrap().to_string()
}

/// The `catshost` binary, running.
pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// The `catshost` binary under test.
pub fn catshost() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_catshost"));
    command.env("RUST_LOG", "catshost=debug");
    // The compile cache of the tests, not the user's.
    command.env(
        "XDG_CACHE_HOME",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg-cache"),
    );
    command
}

impl Process {
    /// Runs `catshost serve ARGS --addr 127.0.0.1:0` and waits for its ready
    /// line.
    pub fn serve(args: &[&str]) -> Self {
        Self::serve_with(args, true)
    }

    /// Runs `catshost serve ARGS` (and `--addr 127.0.0.1:0` if `any_port`)
    /// and waits for its ready line.
    pub fn serve_with(args: &[&str], any_port: bool) -> Self {
        let addr_args: &[&str] = if any_port {
            &["--addr", "127.0.0.1:0"]
        } else {
            &[]
        };
        let mut command = catshost();
        command.arg("serve").args(args).args(addr_args);
        Self::spawn(command)
    }

    /// Runs `command` (which runs `catshost serve`) and waits for the ready
    /// line.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn({
            let stderr = stderr.clone();
            move || {
                for line in lines.lines() {
                    let Ok(line) = line else { break };
                    let ready = line
                        .strip_prefix("catshost: serving http://")
                        .or_else(|| line.strip_prefix("catshost: serving https://"))
                        // With HTTP/3: ", and HTTP/3 on UDP port N" follows.
                        .map(|rest| rest.split(',').next().unwrap_or(rest))
                        .map(|addr| addr.parse::<SocketAddr>().unwrap());
                    // Recorded before the ready signal: a test that sees the
                    // server ready also sees every line up to the ready one.
                    stderr.lock().unwrap().push(line);
                    if let Some(addr) = ready {
                        let _ = ready_tx.send(addr);
                    }
                }
            }
        });
        let addr = match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "catshost did not become ready; stderr:\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
        };
        Self {
            child,
            addr,
            stderr,
        }
    }

    /// Every stderr line so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The address on its `catshost: admin endpoints on http://ADDR` line
    /// (printed before the ready line).
    pub fn admin_addr(&self) -> SocketAddr {
        let line = self
            .stderr()
            .into_iter()
            .find_map(|l| {
                l.strip_prefix("catshost: admin endpoints on http://")
                    .map(str::to_string)
            })
            .expect("an admin line");
        line.parse().unwrap()
    }

    /// Waits up to `timeout` for a stderr line that satisfies `want`.
    pub fn wait_for_line(&self, timeout: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(line) = self.stderr().into_iter().find(|l| want(l)) {
                return Some(line);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// A line of /proc/PID/status, in KiB (VmHWM, VmRSS, ...).
    pub fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("catshost stderr:\n{}", self.stderr().join("\n"));
        }
    }
}

/// Headless Chromium (scripts/test.sh installs it) that prints the DOM of
/// `url` once the page is done (virtual time, 5 s of it), with a profile
/// in `profile`; any certificate is accepted (the tests' are self-signed).
pub fn chromium_dump_dom(profile: &Path, url: &str) -> Command {
    let mut command = Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--ignore-certificate-errors",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url);
    command
}

/// The Python of the client venv scripts/test.sh makes (the `websockets`,
/// `h2` and `aioquic` libraries).
#[allow(dead_code)]
pub fn websockets_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guest-toolchains/ws-client/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: scripts/test.sh installs the websockets client",
        python.display()
    );
    python
}
