//! End-to-end tests of the `catshost` binary: started on 127.0.0.1:0, ready
//! when it prints `catshost: serving http://ADDR`, driven by real clients
//! and real signals.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use support::{Client, Process, Raw, catshost, fixture_file, get, temp_file};

#[tokio::test]
async fn the_built_in_demo_reports_method_path_and_protocol() {
    let server = Process::serve(&[]);
    let answer = get(server.addr, Version::HTTP_11, "/hello?x=1").await;
    assert_eq!(answer.status, StatusCode::OK);
    let authority = server.addr.to_string();
    assert_eq!(
        answer.body,
        format!(
            "catshost demo\nmethod: GET\npath: /hello?x=1\nprotocol: HTTP/1.1\nscheme: http\nauthority: {authority}\n"
        )
    );
    let mut h2 = Client::connect(server.addr, Version::HTTP_2).await;
    let answer = h2.request("POST", "/submit", b"data").await;
    assert_eq!(answer.version, Version::HTTP_2);
    assert_eq!(
        answer.body,
        format!(
            "catshost demo\nmethod: POST\npath: /submit\nprotocol: HTTP/2\nscheme: http\nauthority: {authority}\n"
        )
    );
    let ready_lines = server
        .stderr()
        .iter()
        .filter(|l| l.starts_with("catshost: serving"))
        .count();
    assert_eq!(ready_lines, 1);
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let mut server = Process::serve(&[fixture_file("slow").to_str().unwrap()]);
    let addr = server.addr;
    // Raw: what is checked is the bytes on the wire and the close.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut tcp = runtime.block_on(async {
        let mut tcp = Raw::send(addr, b"GET /800 HTTP/1.1\r\nhost: test\r\n\r\n").await;
        tcp.read_until("started", 1).await;
        tcp
    });

    server.signal(libc::SIGTERM);
    // New connections are refused once the listener is closed...
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // ... the request in flight is answered whole, and the connection then
    // closed (HTTP/1: `Connection: close` semantics after a stop) ...
    let text = runtime.block_on(tcp.read_to_end()).unwrap();
    assert!(
        text.contains("finished\n") && text.ends_with("0\r\n\r\n"),
        "{text}"
    );
    // ... and the process exits 0.
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("catshost did not exit");
    assert_eq!(status.code(), Some(0), "{:?}", server.stderr());
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut server = Process::serve(&[fixture_file("slow").to_str().unwrap()]);
    let addr = server.addr;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A request that would hold the graceful stop for a minute, held open
    // (its client and body) until the end of the test.
    let _held = runtime.block_on(async {
        let mut client = Client::connect(addr, Version::HTTP_11).await;
        let response = client.send("GET", "/60000", b"").await.unwrap();
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "started\n");
        (client, body)
    });
    server.signal(libc::SIGTERM);
    server
        .wait_for_line(Duration::from_secs(10), |l| l.contains("stop requested"))
        .expect("the first signal was not seen");
    server.signal(libc::SIGINT);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("catshost did not exit");
    assert_eq!(status.code(), Some(130));
}

/// A request body of `remaining` bytes of a known pattern, made as it is
/// sent.
struct Pattern {
    sent: u64,
    remaining: u64,
}

const CHUNK: u64 = 256 * 1024;

fn pattern_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK);
        let chunk: Vec<u8> = (self.sent..self.sent + n).map(pattern_byte).collect();
        self.sent += n;
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

#[tokio::test]
async fn a_100_mib_upload_is_echoed_back_without_buffering_it() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let echo = fixture_file("echo");
    let server = Process::serve(&[echo.to_str().unwrap(), "--max-body-size", "200MiB"]);
    // Warm up, then take the peak memory so far as the baseline.
    assert_eq!(
        get(server.addr, Version::HTTP_11, "/").await.status,
        StatusCode::OK
    );
    let before = server.status_kib("VmHWM:");

    let mut client = Client::connect(server.addr, Version::HTTP_11).await;
    let body = Pattern {
        sent: 0,
        remaining: SIZE,
    };
    let response = client.send_body("POST", "/", body).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        for (i, byte) in data.iter().enumerate() {
            assert_eq!(
                *byte,
                pattern_byte(received + i as u64),
                "at byte {}",
                received + i as u64
            );
        }
        received += data.len() as u64;
    }
    assert_eq!(received, SIZE);

    let after = server.status_kib("VmHWM:");
    let growth_mib = (after.saturating_sub(before)) / 1024;
    eprintln!("VmHWM before {before} KiB, after {after} KiB");
    // Buffering the upload or the echo whole would add at least 100 MiB.
    assert!(
        growth_mib < 32,
        "peak memory grew by {growth_mib} MiB while echoing 100 MiB"
    );
}

/// Runs `catshost ARGS` to its end and returns its status and stderr.
fn run(args: &[&str]) -> (std::process::ExitStatus, String) {
    let output = catshost().args(args).stdin(Stdio::null()).output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn bad_components_are_refused_before_anything_is_bound() {
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "core.wat",
            b"(module)",
            "is a core WebAssembly module, not a WebAssembly component",
        ),
        ("junk.wasm", b"\x00\x01\x02", "is not WebAssembly"),
        (
            "broken.wat",
            b"(component (oops))",
            "is not valid WebAssembly text",
        ),
        (
            "empty.wat",
            b"(component)",
            "does not export `wasi:http/incoming-handler@0.2.x`",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = temp_file(name, bytes);
        let addr = free_port();
        let (status, stderr) = run(&["serve", path.to_str().unwrap(), "--addr", &addr.to_string()]);
        assert!(!status.success(), "{name}");
        assert!(
            stderr.contains(&format!("catshost: error: '{}' {want}", path.display())),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("serving"), "{name}: {stderr}");
        assert!(
            TcpStream::connect(addr).is_err(),
            "{name}: something listens on {addr}"
        );
    }
    let (status, stderr) = run(&["serve", "does/not/exist.wasm"]);
    assert!(!status.success());
    assert!(
        stderr.contains("failed to read the component 'does/not/exist.wasm'"),
        "{stderr}"
    );
    assert!(stderr.contains("No such file"), "{stderr}");
}

#[test]
fn bad_flags_are_refused_with_usage() {
    for args in [
        &["serve", "--shutdown-timeout", "10x"][..],
        &["serve", "--addr", "localhost"],
        &["serve", "--workers", "0"],
        &["serve", "--http", "h3"],
        &["serve", "--max-memory", "1.5GiB"],
        &["serve", "--tls-cert", "cert.pem"],
        &["serve", "--addr", "127.0.0.1:0", "--listen-fd", "3"],
    ] {
        let (status, stderr) = run(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
    }
    // Values clap accepts but the server cannot use.
    for (args, want) in [
        (
            &["serve", "--http2-max-frame-size", "1KiB"][..],
            "'--http2-max-frame-size <SIZE>': 1024 is out of range",
        ),
        (
            &["serve", "--listen-fd", "999"],
            "--listen-fd 999 is not an open file descriptor",
        ),
    ] {
        let (status, stderr) = run(args);
        assert!(!status.success(), "{args:?}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("serving"), "{args:?}: {stderr}");
    }
}

/// The threads of `server` named like the runtime's workers, once their
/// number has settled (threads name themselves as they start).
fn worker_threads(server: &Process, expected: usize) -> usize {
    let count = || {
        std::fs::read_dir(format!("/proc/{}/task", server.child.id()))
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
            .filter(|name| name.trim() == "catshost-worker")
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count() != expected && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    count()
}

#[test]
fn workers_sets_the_worker_threads_and_defaults_to_the_cores() {
    let server = Process::serve(&["--workers", "3"]);
    assert_eq!(worker_threads(&server, 3), 3);
    let server = Process::serve(&[]);
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(worker_threads(&server, cores), cores);
}

#[test]
fn help_and_version_describe_the_command() {
    let output = catshost().arg("--version").output().unwrap();
    assert!(output.status.success());
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(
        version.starts_with("catshost 0.1.0 (wasmtime 48.0.") && version.contains("WASI 0.2."),
        "{version}"
    );
    let output = catshost().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--addr",
        "--workers",
        "--shutdown-timeout",
        "[default: 127.0.0.1:8080]",
        "[default: 30s]",
    ] {
        assert!(help.contains(flag), "{flag} not in:\n{help}");
    }
}

#[test]
fn reuse_port_serves_one_listener_per_worker() {
    let mut server = Process::serve(&["--reuse-port", "--workers", "2"]);
    assert_eq!(worker_threads(&server, 2), 2);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for version in [Version::HTTP_11, Version::HTTP_2] {
        for _ in 0..4 {
            let answer = runtime.block_on(get(server.addr, version, "/per-core"));
            assert!(answer.body.contains("path: /per-core"), "{}", answer.body);
        }
    }
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("catshost did not exit");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn readiness_reaches_a_ready_file_and_a_notify_socket() {
    use std::os::unix::net::UnixDatagram;
    let dir = temp_file("marker", b"").parent().unwrap().to_path_buf();
    let ready_file = dir.join("ready");
    let socket_path = dir.join("notify.sock");
    let supervisor = UnixDatagram::bind(&socket_path).unwrap();
    supervisor
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut command = catshost();
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--ready-file"])
        .arg(&ready_file)
        .env("NOTIFY_SOCKET", &socket_path);
    let mut server = Process::spawn(command);
    let mut buf = [0; 64];
    let n = supervisor.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    assert_eq!(
        std::fs::read_to_string(&ready_file).unwrap(),
        format!("http://{}\n", server.addr)
    );
    server.signal(libc::SIGTERM);
    let n = supervisor.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert_eq!(
        server.wait_exit(Duration::from_secs(30)).unwrap().code(),
        Some(0)
    );
}

#[test]
fn a_closed_stderr_does_not_keep_the_server_from_stopping() {
    use std::io::{BufRead, BufReader};
    // A supervisor that stopped reading our stderr (`catshost ... | head`):
    // every later line fails to write; SIGTERM must still stop the server.
    let mut child = catshost()
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("catshost: serving"));
    assert!(ready.is_some(), "no ready line");
    drop(lines);
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("catshost did not stop after SIGTERM with its stderr closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn a_stderr_nobody_reads_does_not_block_the_server() {
    // stderr is a pipe nobody reads: once its 64 KiB buffer is full, a log
    // line written there blocks its writer. Served requests each log an
    // access line; before log lines went through a bounded queue, the
    // workers stopped at the first full pipe and these requests hung.
    let ready_file = temp_file("unread-stderr-ready", b"");
    std::fs::remove_file(&ready_file).unwrap();
    let mut child = catshost()
        .env("RUST_LOG", "catshost=info")
        .args(["serve", "--addr", "127.0.0.1:0", "--ready-file"])
        .arg(&ready_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let url = loop {
        match std::fs::read_to_string(&ready_file) {
            Ok(url) if url.ends_with('\n') => break url,
            _ if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => panic!("catshost did not get ready"),
        }
    };
    let addr: SocketAddr = url.trim().trim_start_matches("http://").parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let served = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut client = Client::connect(addr, Version::HTTP_11).await;
            let mut served = 0;
            // About 1 MiB of access lines.
            for _ in 0..5000 {
                if client.request("GET", "/", b"").await.status == StatusCode::OK {
                    served += 1;
                }
            }
            served
        })
        .await
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(served, Ok(5000));
}
