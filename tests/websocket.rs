//! WebSocket handlers written as components (`catshost:websocket/handler`,
//! wit/websocket): the Rust chat and the Python echo of guest-examples, and
//! tests/fixtures/ws-faults, with real clients over real sockets: the
//! `websockets` and `h2` Python libraries, tungstenite, and frames written
//! by hand for the protocol errors.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use catshost::config::TenantLimits;
use catshost::routing::Route;
use catshost::{GuestPre, Tenant};
use futures_util::{SinkExt, StreamExt};
use support::{Process, TestServer, built, get, temp_file, websockets_python};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

type Ws = WebSocketStream<TcpStream>;
type Handshake = Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error>;

/// A WebSocket handshake of `request` on a new connection to `addr`.
async fn handshake(
    addr: SocketAddr,
    request: tungstenite::handshake::client::Request,
) -> Handshake {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::client_async(request, tcp),
    )
    .await
    .expect("the handshake ends within 20 s")
}

/// The Rust chat (guest-examples/rust/chat): `/echo` echoes, `/rooms/NAME`
/// publishes to the room's other sockets.
fn chat() -> GuestPre {
    catshost::Engine::new()
        .unwrap()
        .load_file(&built("rust", "chat"))
        .unwrap()
}

/// tests/fixtures/ws-faults, compiled once for every test here (a Python
/// component takes seconds to compile).
fn faults() -> GuestPre {
    static FAULTS: OnceLock<GuestPre> = OnceLock::new();
    FAULTS
        .get_or_init(|| {
            let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ws-cache");
            catshost::Engine::new()
                .unwrap()
                .with_compile_cache(cache)
                .load_file(&built("python", "ws-faults"))
                .unwrap()
        })
        .clone()
}

/// Serves `component` alone with `limits`, its metrics in `metrics`.
async fn serve(
    component: GuestPre,
    limits: TenantLimits,
) -> (TestServer, Arc<catshost::metrics::Metrics>) {
    let metrics = Arc::new(catshost::metrics::Metrics::new());
    let mut builder = catshost::Server::builder();
    builder.limits(limits).metrics(metrics.clone());
    (
        TestServer::serve(builder.build(component), None).await,
        metrics,
    )
}

/// A WebSocket to `path` with `Host: host`.
async fn connect_host(addr: SocketAddr, host: &str, path: &str) -> Result<Ws, tungstenite::Error> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request.headers_mut().insert("host", host.parse().unwrap());
    handshake(addr, request).await.map(|(ws, _)| ws)
}

async fn connect(addr: SocketAddr, path: &str) -> Ws {
    connect_host(addr, &addr.to_string(), path).await.unwrap()
}

/// The status a refused handshake got.
async fn refused(addr: SocketAddr, path: &str) -> u16 {
    match connect_host(addr, &addr.to_string(), path).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Ok(_) => panic!("{path}: the socket opened"),
        Err(error) => panic!("{path}: {error}"),
    }
}

/// A WebSocket to `path`, once the server lets one open again (a socket
/// closed, an open ended): tried every 20 ms for 10 s.
async fn reopened(addr: SocketAddr, path: &str) -> Ws {
    let started = Instant::now();
    loop {
        if let Ok(ws) = connect_host(addr, &addr.to_string(), path).await {
            return ws;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no socket opened again within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next message, within `within`; `None` when none came.
async fn next_within(ws: &mut Ws, within: Duration) -> Option<Message> {
    match tokio::time::timeout(within, ws.next()).await {
        Ok(Some(Ok(message))) => Some(message),
        Ok(other) => panic!("the socket ended: {other:?}"),
        Err(_) => None,
    }
}

async fn text(ws: &mut Ws) -> String {
    match next_within(ws, Duration::from_secs(20)).await {
        Some(Message::Text(text)) => text.to_string(),
        other => panic!("not a text message: {other:?}"),
    }
}

/// The code and reason of the server's close, within 20 s.
async fn close_code(ws: &mut Ws) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                // Our answer goes out as the stream is read to its end.
                while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline, ws.next()).await {}
                return frame.map_or((1005, String::new()), |f| {
                    (f.code.into(), f.reason.to_string())
                });
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("the socket ended without a close: {other:?}"),
            Err(_) => panic!("no close within 20 s"),
        }
    }
}

fn metric(metrics: &catshost::metrics::Metrics, line: &str) -> bool {
    metrics.encode().lines().any(|l| l == line)
}

/// Waits up to 10 s for `line` in the metrics: a socket is counted once
/// its close handshake is over.
async fn wait_metric(metrics: &catshost::metrics::Metrics, line: &str) {
    for _ in 0..1000 {
        if metric(metrics, line) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {line} within 10 s:\n{}", metrics.encode());
}

#[tokio::test]
async fn the_chat_echoes_and_its_rooms_reach_the_other_sockets_of_the_tenant_only() {
    let tenant = |name: &str, per_instance| Tenant {
        name: name.into(),
        component: chat().into(),
        routes: vec![Route::parse(&format!("{name}.test")).unwrap()],
        limits: TenantLimits {
            websocket_sockets_per_instance: per_instance,
            ..TenantLimits::default()
        },
        access: Default::default(),
    };
    let server = catshost::Server::builder()
        // Tenant a's sockets have an instance each: a room spans them.
        .build_tenants(vec![tenant("a", 1), tenant("b", 256)])
        .unwrap();
    let server = TestServer::serve(server, None).await;
    let addr = server.addr;
    let mut a: Vec<Ws> = Vec::new();
    for _ in 0..3 {
        a.push(connect_host(addr, "a.test", "/rooms/lobby").await.unwrap());
    }
    let mut b = connect_host(addr, "b.test", "/rooms/lobby").await.unwrap();
    a[0].send(Message::text("hello from a0")).await.unwrap();
    assert_eq!(text(&mut a[1]).await, "hello from a0");
    assert_eq!(text(&mut a[2]).await, "hello from a0");
    let quiet = Duration::from_millis(300);
    assert_eq!(
        next_within(&mut a[0], quiet).await,
        None,
        "not to its sender"
    );
    assert_eq!(
        next_within(&mut b, quiet).await,
        None,
        "not to another tenant's room of the same name"
    );
    b.send(Message::text("hello from b")).await.unwrap();
    for ws in &mut a {
        assert_eq!(next_within(ws, quiet).await, None);
    }
    // A closed socket is out of its room; the others still hear each other.
    let mut gone = a.remove(2);
    let bye = tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "bye".into(),
    };
    gone.close(Some(bye)).await.unwrap();
    assert_eq!(close_code(&mut gone).await, (1000, "bye".into()));
    a[1].send(Message::binary(vec![0u8, 1, 2])).await.unwrap();
    assert_eq!(
        next_within(&mut a[0], Duration::from_secs(20)).await,
        Some(Message::binary(vec![0u8, 1, 2]))
    );

    let mut echo = connect_host(addr, "b.test", "/echo").await.unwrap();
    echo.send(Message::text("echo me")).await.unwrap();
    assert_eq!(text(&mut echo).await, "echo me");
    // The guest refuses what it does not serve, and serves plain HTTP.
    assert!(matches!(
        connect_host(addr, "b.test", "/nowhere").await,
        Err(tungstenite::Error::Http(r)) if r.status() == 404
    ));
    let page = support::get_host(addr, http::Version::HTTP_11, "b.test", "/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("new WebSocket"), "{}", page.body);
    server.stop().await;
}

/// Runs tests/clients/ws_h2.py against `addr` with `args`; its stdout.
async fn ws_h2(addr: SocketAddr, args: &[&str]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/ws_h2.py");
    let output = tokio::process::Command::new(websockets_python())
        .arg(script)
        .arg("127.0.0.1")
        .arg(addr.port().to_string())
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn an_extended_connect_over_http2_opens_a_websocket() {
    let (server, metrics) = serve(chat(), TenantLimits::default()).await;
    let stdout = ws_h2(server.addr, &["/echo"]).await;
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "enable-connect-protocol 1",
            "status 200",
            "message 1 hello over h2",
            "closed 1000"
        ]
    );
    // The server saw it come over HTTP/2, as an extended CONNECT.
    assert!(
        metric(
            &metrics,
            r#"catshost_websockets_total{tenant="default",protocol="HTTP/2"} 1"#
        ),
        "{}",
        metrics.encode()
    );
    server.stop().await;
}

#[tokio::test]
async fn the_websockets_library_gets_the_chat_echo_over_ws_and_wss_and_1001_on_a_stop() {
    let client =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/ws_echo.py");
    for tls in [false, true] {
        let (tls_config, cert, scheme, host) = if tls {
            let (config, _, pem) =
                catshost::Tls::self_signed(catshost::config::HttpVersions::Both).unwrap();
            let cert = temp_file("ws-guest-cert.pem", pem.as_bytes());
            (Some(config), Some(cert), "wss", "localhost")
        } else {
            (None, None, "ws", "127.0.0.1")
        };
        let metrics = Arc::new(catshost::metrics::Metrics::new());
        let mut builder = catshost::Server::builder();
        builder.metrics(metrics.clone());
        let server = TestServer::serve(builder.build(chat()), tls_config).await;
        let url = format!("{scheme}://{host}:{}/echo", server.addr.port());
        let mut command = tokio::process::Command::new(websockets_python());
        command.arg(&client).arg(&url);
        if let Some(cert) = &cert {
            command.arg(cert);
        }
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .expect("the client answers within 20 s")
                .unwrap()
        };
        assert_eq!(next().await.as_deref(), Some("echoed"), "{url}");
        server.server.stop().switch();
        assert_eq!(next().await.as_deref(), Some("closed 1001"), "{url}");
        assert!(child.wait().await.unwrap().success());
        server.finished().await.unwrap();
        wait_metric(
            &metrics,
            r#"catshost_websocket_closes_total{tenant="default",code="1001"} 1"#,
        )
        .await;
        wait_metric(
            &metrics,
            r#"catshost_websocket_messages_total{tenant="default",direction="in"} 2"#,
        )
        .await;
    }
}

#[test]
fn the_python_echo_serves_websockets_from_the_command_line() {
    let echo = built("python", "websocket");
    let server = Process::serve(&[echo.to_str().unwrap()]);
    let client =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/ws_guest.py");
    let output = std::process::Command::new(websockets_python())
        .arg(client)
        .arg(format!("ws://{}/", server.addr))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["subprotocol echo", "echoed", "closed 1000 bye"]
    );
    // The access line of the socket's end, with its counts.
    let line = server
        .wait_for_line(Duration::from_secs(10), |l| l.contains("WebSocket closed"))
        .expect("an access line for the socket");
    assert!(
        line.contains("messages_in=3")
            && line.contains("messages_out=2")
            && line.contains("code=1000"),
        "{line}"
    );
}

#[tokio::test]
async fn oversized_idle_and_surplus_sockets_are_closed_or_refused() {
    let limits = TenantLimits {
        max_websocket_message: 1024,
        websocket_idle_timeout: Duration::from_millis(500),
        max_websockets: 3,
        ..TenantLimits::default()
    };
    let (server, metrics) = serve(chat(), limits).await;
    let addr = server.addr;

    let mut big = connect(addr, "/echo").await;
    big.send(Message::text("x".repeat(1024))).await.unwrap();
    assert_eq!(text(&mut big).await.len(), 1024, "the limit itself passes");
    big.send(Message::text("x".repeat(1025))).await.unwrap();
    assert_eq!(
        close_code(&mut big).await,
        (1009, "message too large".into())
    );

    let mut idle = connect(addr, "/echo").await;
    let opened = Instant::now();
    assert_eq!(close_code(&mut idle).await, (1001, "idle".into()));
    let took = opened.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );

    // Three open at most: the fourth gets 503, and one closing makes room.
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect(addr, "/echo").await);
    }
    match connect_host(addr, &addr.to_string(), "/echo").await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(response.headers()["retry-after"], "1");
        }
        Ok(_) => panic!("a fourth socket opened"),
        Err(error) => panic!("{error}"),
    }
    // Counted as a WebSocket refused, not as a library hook's upgrade.
    assert!(
        metric(
            &metrics,
            r#"catshost_admission_rejections_total{tenant="default",reason="websockets"} 1"#
        ),
        "{}",
        metrics.encode()
    );
    assert!(
        !metrics.encode().contains(r#"reason="upgrades""#),
        "{}",
        metrics.encode()
    );
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    let _ = close_code(&mut first).await;
    let mut again = reopened(addr, "/echo").await;
    again.send(Message::text("room again")).await.unwrap();
    assert_eq!(text(&mut again).await, "room again");
    server.stop().await;
}

/// A WebSocket opened by hand, for frames no client library sends.
async fn raw_socket(addr: SocketAddr, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut read = Vec::new();
    while !read.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tcp.read_exact(&mut byte).await.unwrap();
        read.push(byte[0]);
    }
    let head = String::from_utf8(read).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    tcp
}

/// One frame: `fin`, `opcode`, masked (as clients must) or not.
fn frame(fin: bool, opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![(u8::from(fin) << 7) | opcode];
    frame.push((u8::from(masked) << 7) | payload.len() as u8);
    let key = [0x12, 0x34, 0x56, 0x78];
    if masked {
        frame.extend_from_slice(&key);
    }
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| if masked { b ^ key[i % 4] } else { *b }),
    );
    frame
}

/// The code of the close frame the server sends next (unmasked, short).
async fn raw_close_code(tcp: &mut TcpStream) -> u16 {
    let read = async {
        loop {
            let mut head = [0u8; 2];
            tcp.read_exact(&mut head).await.unwrap();
            let mut payload = vec![0u8; usize::from(head[1] & 0x7F)];
            tcp.read_exact(&mut payload).await.unwrap();
            if head[0] & 0x0F == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("a close frame within 20 s")
}

#[tokio::test]
async fn protocol_errors_close_the_socket_with_their_codes() {
    let (server, metrics) = serve(chat(), TenantLimits::default()).await;
    let addr = server.addr;
    // A well-formed text frame comes back, unmasked.
    let mut tcp = raw_socket(addr, "/echo").await;
    tcp.write_all(&frame(true, 0x1, true, b"fine"))
        .await
        .unwrap();
    let mut echoed = [0u8; 6];
    tcp.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, *b"\x81\x04fine");

    let cases: [(&str, Vec<u8>, u16); 5] = [
        (
            "text that is not UTF-8",
            frame(true, 0x1, true, b"\xff\xfe"),
            1007,
        ),
        ("a fragmented ping", frame(false, 0x9, true, b"ping"), 1002),
        ("an unmasked frame", frame(true, 0x1, false, b"hi"), 1002),
        ("an unknown opcode", frame(true, 0x3, true, b""), 1002),
        (
            "a continuation with nothing to continue",
            frame(true, 0x0, true, b"x"),
            1002,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut tcp = raw_socket(addr, "/echo").await;
        tcp.write_all(&bytes).await.unwrap();
        assert_eq!(raw_close_code(&mut tcp).await, code, "{what}");
    }
    // UTF-8 split across fragments is checked whole.
    let mut tcp = raw_socket(addr, "/echo").await;
    tcp.write_all(&frame(false, 0x1, true, b"caf\xc3"))
        .await
        .unwrap();
    tcp.write_all(&frame(true, 0x0, true, b"\xa9"))
        .await
        .unwrap();
    let mut echoed = [0u8; 7];
    tcp.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, *b"\x81\x05caf\xc3\xa9");
    // A client gone without a close frame is a 1006, and gets no frame.
    tcp.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tcp.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"", "a frame to a client that left");
    wait_metric(
        &metrics,
        r#"catshost_websocket_closes_total{tenant="default",code="1006"} 1"#,
    )
    .await;
    // A handshake that is not a GET, or of another version, is refused.
    for head in [
        "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    ] {
        let status = support::raw_status(addr, head).await;
        assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_closes_every_open_socket_with_1001() {
    // All from one client: past the default per-client cap of 64.
    let limits = TenantLimits {
        max_websockets_per_client: 100,
        ..TenantLimits::default()
    };
    let (server, _) = serve(chat(), limits).await;
    let mut sockets = Vec::new();
    for _ in 0..100 {
        sockets.push(connect(server.addr, "/echo").await);
    }
    server.server.stop().switch();
    let codes = futures_util::future::join_all(sockets.iter_mut().map(close_code)).await;
    assert!(
        codes
            .iter()
            .all(|c| *c == (1001, "server stopping".to_string())),
        "{codes:?}"
    );
    server.finished().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_guest_closes_its_sockets_with_1011_and_the_rest_goes_on() {
    let mut limits = TenantLimits {
        // Every socket on an instance of its own: one failing takes no other.
        websocket_sockets_per_instance: 1,
        ..TenantLimits::default()
    };
    limits.instance.request_timeout = Duration::from_secs(2);
    limits.instance.max_memory = 64 << 20;
    let (server, metrics) = serve(faults(), limits).await;
    let addr = server.addr;
    let mut good = connect(addr, "/").await;
    good.send(Message::text("still here")).await.unwrap();
    assert_eq!(text(&mut good).await, "still here");

    for (what, message) in [("a trap", "trap"), ("a loop past its deadline", "loop")] {
        let mut bad = connect(addr, "/").await;
        let sent = Instant::now();
        bad.send(Message::text(message)).await.unwrap();
        assert_eq!(
            close_code(&mut bad).await,
            (1011, "the guest failed".into()),
            "{what}"
        );
        if message == "loop" {
            assert!(sent.elapsed() >= Duration::from_millis(1900), "{what}");
        }
    }
    // Memory past the instance's cap.
    let mut hoarder = connect(addr, "/").await;
    let closed = async {
        for _ in 0..16 {
            if hoarder.send(Message::text("hoard")).await.is_err() {
                break;
            }
            match next_within(&mut hoarder, Duration::from_secs(20)).await {
                Some(Message::Text(_)) => continue,
                Some(Message::Close(Some(frame))) => return u16::from(frame.code),
                other => panic!("{other:?}"),
            }
        }
        panic!("16 x 8 MiB fit in 64 MiB")
    };
    assert_eq!(closed.await, 1011);

    // The good socket, a new one, and plain HTTP all go on.
    good.send(Message::text("after")).await.unwrap();
    assert_eq!(text(&mut good).await, "after");
    let mut new = connect(addr, "/").await;
    new.send(Message::binary(vec![7u8; 100])).await.unwrap();
    assert_eq!(
        next_within(&mut new, Duration::from_secs(20)).await,
        Some(Message::binary(vec![7u8; 100]))
    );
    let page = get(addr, http::Version::HTTP_11, "/").await;
    assert_eq!(
        (page.status, page.body.as_str()),
        (http::StatusCode::OK, "ws-faults\n")
    );
    wait_metric(
        &metrics,
        r#"catshost_websocket_closes_total{tenant="default",code="1011"} 3"#,
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn the_guest_refuses_sockets_and_chooses_among_the_offered_subprotocols() {
    let (server, _) = serve(faults(), TenantLimits::default()).await;
    let addr = server.addr;
    assert_eq!(refused(addr, "/refuse").await, 403);

    let mut request = format!("ws://{addr}/proto").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "chat, superchat".parse().unwrap());
    let (mut ws, response) = handshake(addr, request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "superchat");
    ws.send(Message::text("ok")).await.unwrap();
    assert_eq!(text(&mut ws).await, "ok");

    // A subprotocol the client did not offer is the guest's error: 500.
    let mut request = format!("ws://{addr}/bad-proto")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "chat".parse().unwrap());
    match handshake(addr, request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 500),
        other => panic!("{:?}", other.map(|(_, r)| r)),
    }

    // A handshake without its key is the client's error: 400.
    let status = support::raw_status(
        addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    server.stop().await;
}

#[test]
fn a_config_file_tenant_accepts_websockets_only_when_its_entry_says_so() {
    let dir = temp_file("ws-config-probe", b"").with_file_name("ws-config");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.as_path();
    std::fs::copy(built("rust", "chat"), dir.join("chat.wasm")).unwrap();
    std::fs::copy(built("rust", "hello"), dir.join("hello.wasm")).unwrap();
    let config = |tenants: &str| {
        let path = dir.join("catshost.toml");
        std::fs::write(
            &path,
            format!("[server]\naddr = \"127.0.0.1:0\"\n{tenants}"),
        )
        .unwrap();
        path
    };
    let path = config(
        "[[tenant]]\nname = \"on\"\ncomponent = \"chat.wasm\"\nroutes = [\"on.test\"]\n\
         websockets = true\n\
         [[tenant]]\nname = \"off\"\ncomponent = \"chat.wasm\"\nroutes = [\"off.test\"]\n",
    );
    let server = Process::serve_with(&["--config", path.to_str().unwrap()], false);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut ws = connect_host(server.addr, "on.test", "/echo").await.unwrap();
        ws.send(Message::text("on")).await.unwrap();
        assert_eq!(text(&mut ws).await, "on");
        // The other tenant's upgrade goes to its HTTP handler, which has no
        // /echo.
        match connect_host(server.addr, "off.test", "/echo").await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
            other => panic!("{:?}", other.map(|_| ())),
        }
    });
    drop(server);

    let path = config(
        "[[tenant]]\nname = \"hello\"\ncomponent = \"hello.wasm\"\nroutes = [\"/\"]\n\
         websockets = true\npreload = true\n",
    );
    let output = support::catshost()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("tenant 'hello': `websockets = true`, but its component cannot serve them")
            && stderr.contains("exports no catshost:websocket/handler@0.1.0"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_cut_at_the_write_timeout() {
    let metrics = Arc::new(catshost::metrics::Metrics::new());
    let mut builder = catshost::Server::builder();
    builder
        .metrics(metrics.clone())
        .write_timeout(Duration::from_millis(500));
    let server = TestServer::serve(builder.build(chat()), None).await;
    let mut ws = connect(server.addr, "/echo").await;
    // Echoes pile up until the server waits on us, then it stops reading.
    let chunk = Message::binary(vec![0u8; 60_000]);
    let started = Instant::now();
    while let Ok(Ok(())) =
        tokio::time::timeout(Duration::from_secs(2), ws.send(chunk.clone())).await
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server took a minute of echoes nobody read"
        );
    }
    wait_metric(
        &metrics,
        r#"catshost_websocket_closes_total{tenant="default",code="1006"} 1"#,
    )
    .await;
    wait_metric(&metrics, r#"catshost_websockets_open{tenant="default"} 0"#).await;
    server.stop().await;
}

/// Serves tests/fixtures/ws-page.wat's page at `/` and ws-faults' echo at
/// `/ws` (two tenants) over TLS with `versions`; loads the page in headless
/// Chromium and returns the page's text.
async fn chromium_websocket(
    versions: catshost::config::HttpVersions,
) -> (String, Arc<catshost::metrics::Metrics>) {
    let (tls, _, _) = catshost::Tls::self_signed(versions).unwrap();
    let page = catshost::Engine::new()
        .unwrap()
        .load_bytes("ws-page", &support::fixture("ws-page"))
        .unwrap();
    let tenant = |name: &str, component: catshost::GuestPre, route: &str| Tenant {
        name: name.into(),
        component: component.into(),
        routes: vec![Route::parse(route).unwrap()],
        limits: TenantLimits::default(),
        access: Default::default(),
    };
    let metrics = Arc::new(catshost::metrics::Metrics::new());
    let server = catshost::Server::builder()
        .http_versions(versions)
        .metrics(metrics.clone())
        .build_tenants(vec![
            tenant("page", page, "/"),
            tenant("echo", faults(), "/ws"),
        ])
        .unwrap();
    let server = TestServer::serve(server, Some(tls)).await;
    let profile = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("chromium-ws-guest-profile-{versions:?}"));
    let url = format!("https://localhost:{}/", server.addr.port());
    let output = tokio::process::Command::from(support::chromium_dump_dom(&profile, &url))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("chromium ends within 60 s")
        .expect("chromium is installed (scripts/test.sh installs it)");
    server.stop().await;
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        metrics,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_talks_to_a_websocket_handler_over_http2_and_over_http1() {
    use catshost::config::HttpVersions;
    for (versions, protocol) in [
        (HttpVersions::Both, "HTTP/2"),
        (HttpVersions::Http1, "HTTP/1.1"),
    ] {
        let (dom, metrics) = chromium_websocket(versions).await;
        assert!(dom.contains("echo=from chromium"), "{versions:?}: {dom}");
        // Chromium falls back to HTTP/1.1 silently: the server says which.
        let line = format!(r#"catshost_websockets_total{{tenant="echo",protocol="{protocol}"}} 1"#);
        assert!(
            metric(&metrics, &line),
            "{versions:?}: {}",
            metrics.encode()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_while_its_guest_opens_the_socket_leaks_no_instance() {
    let (server, metrics) = serve(faults(), TenantLimits::default()).await;
    // The stream is reset while the guest's `open` takes a second: the
    // socket it accepts is closed (1006), and its instance goes with it.
    let stdout = ws_h2(server.addr, &["/slow", "reset"]).await;
    assert_eq!(stdout.lines().last(), Some("reset"));
    wait_metric(
        &metrics,
        r#"catshost_instances_retired_total{tenant="default"} 1"#,
    )
    .await;
    wait_metric(&metrics, r#"catshost_instances_live{tenant="default"} 0"#).await;
    server.stop().await;
}

/// Issue 26, attack 1 at small size: a client that sends pings as fast as
/// it can and never reads. tungstenite answers each with a pong, whose
/// bytes the codec's capped write buffer and the drain clock bound (the
/// clock cuts a socket whose output does not drain for the write timeout,
/// `http/websocket/io.rs`); past 16 pings a second the socket is closed
/// with 1008 (before, the pongs piled up in the host without bound and the
/// socket stayed open for as long as pings came).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_floods_pings_and_never_reads_is_closed() {
    let metrics = Arc::new(catshost::metrics::Metrics::new());
    let mut builder = catshost::Server::builder();
    builder
        .metrics(metrics.clone())
        .write_timeout(Duration::from_millis(500));
    let server = TestServer::serve(builder.build(chat()), None).await;
    let mut tcp = raw_socket(server.addr, "/echo").await;
    let pings: Vec<u8> = (0..100)
        .flat_map(|_| frame(true, 0x9, true, &[b'p'; 125]))
        .collect();
    let started = Instant::now();
    let closed = |code: u16| {
        format!(r#"catshost_websocket_closes_total{{tenant="default",code="{code}"}} 1"#)
    };
    while !metric(&metrics, &closed(1008)) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the socket still took pings after 30 s:\n{}",
            metrics.encode()
        );
        // Once the server closed the socket, writes fail: keep looking.
        let _ = tokio::time::timeout(Duration::from_millis(200), tcp.write_all(&pings)).await;
    }
    wait_metric(&metrics, r#"catshost_websockets_open{tenant="default"} 0"#).await;
    // Its account is back at zero once the socket is gone.
    wait_metric(
        &metrics,
        r#"catshost_host_memory_bytes{tenant="default"} 0"#,
    )
    .await;
    server.stop().await;
}

/// Pings and pongs are not activity: a client that pings (and reads its
/// pongs) but sends no message is closed as idle.
#[tokio::test]
async fn pings_do_not_keep_an_idle_socket_open() {
    let limits = TenantLimits {
        websocket_idle_timeout: Duration::from_millis(500),
        ..TenantLimits::default()
    };
    let (server, _metrics) = serve(chat(), limits).await;
    let mut ws = connect(server.addr, "/echo").await;
    let started = Instant::now();
    let code = loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "pings kept the socket open for 10 s"
        );
        // Ten a second, within the 16 a client may send.
        ws.send(Message::Ping(b"still here".to_vec().into()))
            .await
            .unwrap();
        let next = tokio::time::sleep(Duration::from_millis(100));
        let mut closed = None;
        tokio::pin!(next);
        while closed.is_none() {
            tokio::select! {
                () = &mut next => break,
                message = ws.next() => match message {
                    Some(Ok(Message::Close(frame))) => closed = Some(frame.map(|f| u16::from(f.code))),
                    Some(Ok(_)) => {}
                    other => panic!("the socket ended without a close: {other:?}"),
                },
            }
        }
        if let Some(code) = closed {
            break code;
        }
    };
    assert_eq!(code, Some(1001));
    server.stop().await;
}

/// One client cannot take every socket of a tenant: past its
/// `max_websockets_per_client` an open gets 429, and another client's (an
/// IPv6 loopback here) still opens.
#[tokio::test]
async fn a_client_opens_at_most_its_share_of_a_tenants_sockets() {
    let limits = TenantLimits {
        max_websockets_per_client: 2,
        ..TenantLimits::default()
    };
    let (server, metrics) = serve(chat(), limits).await;
    let _first = connect(server.addr, "/echo").await;
    let _second = connect(server.addr, "/echo").await;
    assert_eq!(refused(server.addr, "/echo").await, 429);
    assert!(
        metric(
            &metrics,
            r#"catshost_admission_rejections_total{tenant="default",reason="websockets_per_client"} 1"#
        ),
        "{}",
        metrics.encode()
    );
    drop(_first);
    let mut again = reopened(server.addr, "/echo").await;
    again.send(Message::text("mine again")).await.unwrap();
    assert_eq!(text(&mut again).await, "mine again");
    server.stop().await;
}

/// Issue 26, attack 3 at small size: a client that resets its stream
/// while its `open` waits for its instance keeps its permits taken until
/// the `open` ends (here: is dropped, untried, or fails with its instance),
/// so clients that go away cannot have more opens (and instances) than the
/// tenant may have sockets; and an `open` whose client is gone is never
/// handed to the guest, so it holds up no other socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_abandoned_by_its_client_holds_its_permits_until_it_ends() {
    let limits = TenantLimits {
        max_websockets: 2,
        instance: catshost::config::InstanceLimits {
            request_timeout: Duration::from_secs(3),
            ..Default::default()
        },
        ..TenantLimits::default()
    };
    let (server, metrics) = serve(faults(), limits).await;
    // The instance is busy for its 3 s deadline: the opens after queue.
    let mut busy = connect(server.addr, "/echo").await;
    busy.send(Message::text("loop")).await.unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/ws_h2.py");
    let mut client = tokio::process::Command::new(websockets_python())
        .arg(script)
        .arg("127.0.0.1")
        .arg(server.addr.port().to_string())
        .args(["/slow", "reset"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line == "reset" {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The abandoned open still holds the tenant's second socket permit.
    assert_eq!(refused(server.addr, "/echo").await, 503);
    // The busy instance fails at its deadline, and the abandoned open with
    // it: sockets open again.
    let mut ws = reopened(server.addr, "/echo").await;
    ws.send(Message::text("after")).await.unwrap();
    assert_eq!(text(&mut ws).await, "after");
    wait_metric(&metrics, r#"catshost_instances_live{tenant="default"} 1"#).await;
    drop(ws);
    let _ = client.wait().await;
    server.stop().await;
}

#[tokio::test]
async fn at_the_host_memory_limits_upgrades_connections_and_messages_are_refused() {
    // One socket's codec: 4 KiB read buffer, the largest message, 1 KiB.
    let socket = 4096 + 1024 + 1024;
    let limits = TenantLimits {
        max_websocket_message: 1024,
        max_host_memory: socket + 100,
        ..TenantLimits::default()
    };
    let (server, metrics) = serve(chat(), limits).await;
    let mut first = connect(server.addr, "/echo").await;
    assert_eq!(refused(server.addr, "/echo").await, 503);
    assert!(
        metric(
            &metrics,
            r#"catshost_admission_rejections_total{tenant="default",reason="host_memory"} 1"#
        ),
        "{}",
        metrics.encode()
    );
    first.send(Message::text("x".repeat(200))).await.unwrap();
    assert_eq!(close_code(&mut first).await, (1008, "host memory".into()));
    server.stop().await;

    let metrics = Arc::new(catshost::metrics::Metrics::new());
    let mut builder = catshost::Server::builder();
    builder
        .limits(TenantLimits {
            max_websocket_message: 1024,
            ..TenantLimits::default()
        })
        .max_host_memory(socket)
        .metrics(metrics.clone());
    let server = TestServer::serve(builder.build(chat()), None).await;
    let mut first = connect(server.addr, "/echo").await;
    let held = format!("catshost_host_memory_process_bytes {socket}");
    assert!(metric(&metrics, &held), "{}", metrics.encode());
    // The process holds its most: the next connection is closed at once,
    // and the tenant holding the most (the only one) sheds its socket.
    assert!(
        connect_host(server.addr, &server.addr.to_string(), "/echo")
            .await
            .is_err()
    );
    assert!(
        metric(
            &metrics,
            r#"catshost_connections_closed_total{reason="host_memory"} 1"#
        ),
        "{}",
        metrics.encode()
    );
    assert_eq!(close_code(&mut first).await, (1013, "host memory".into()));
    wait_metric(&metrics, "catshost_host_memory_process_bytes 0").await;
    // Connections are accepted again, and a socket opens (its codec takes
    // the whole guard again).
    let again = reopened(server.addr, "/echo").await;
    assert!(metric(&metrics, &held), "{}", metrics.encode());
    drop(again);
    server.stop().await;
}
