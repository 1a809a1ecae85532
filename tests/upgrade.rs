//! Upgrades handed to a library hook (`Builder::upgrade`): an HTTP/1.1
//! `Upgrade` a guest answers 101, and an HTTP/2 extended CONNECT (RFC 8441)
//! a guest answers 200, over real sockets; the tenants that may not
//! upgrade, and the stop that tells the hook and waits for it.

mod support;

use std::time::Duration;

use catshost::Upgraded;
use catshost::config::TenantLimits;
use catshost::routing::Route;
use catshost::{GuestPre, Tenant};
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{TestServer, fixture, websockets_python};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// What the hook saw of an upgrade.
#[derive(Debug, PartialEq)]
struct Seen {
    protocol: String,
    version: Version,
    path: String,
    tenant: String,
}

/// A hook that reports each upgrade on `seen`, then echoes what it reads
/// with `echo: ` in front, line by line, until the client closes or the
/// server stops (then, 50 ms later, it says `bye` and ends).
fn echo_hook(seen: mpsc::UnboundedSender<Seen>) -> impl catshost::UpgradeHook {
    move |upgraded: Upgraded| {
        let seen = seen.clone();
        async move {
            let _ = seen.send(Seen {
                protocol: upgraded.protocol.clone(),
                version: upgraded.version,
                path: upgraded.head.uri.path().to_string(),
                tenant: upgraded.tenant.to_string(),
            });
            let (read, mut write) = tokio::io::split(upgraded.io);
            let mut lines = BufReader::new(read).lines();
            loop {
                tokio::select! {
                    line = lines.next_line() => match line {
                        Ok(Some(line)) => {
                            if write.write_all(format!("echo: {line}\n").as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    },
                    () = upgraded.stop.switched() => {
                        // Not at once: the stop waits for the hook.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = write.write_all(b"bye\n").await;
                        let _ = write.shutdown().await;
                        return;
                    }
                }
            }
        }
    }
}

/// A self-signed certificate for localhost, served with `versions`: the
/// server's TLS, and the certificate's PEM in a file, for clients.
fn self_signed(
    versions: catshost::config::HttpVersions,
    name: &str,
) -> (catshost::Tls, std::path::PathBuf, String) {
    let (tls, _fingerprint, pem) = catshost::Tls::self_signed(versions).unwrap();
    let path = support::temp_file(name, pem.as_bytes());
    (tls, path, pem)
}

fn load(name: &str) -> GuestPre {
    catshost::Engine::new()
        .unwrap()
        .load_bytes(name, &fixture(name))
        .unwrap()
}

/// Sends an HTTP/1.1 GET of `path` asking to upgrade to `echo` (unless
/// `ask` is false) and returns the connection and the response head.
async fn http1_upgrade(
    addr: std::net::SocketAddr,
    path: &str,
    ask: bool,
) -> (BufReader<TcpStream>, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    http1_upgrade_over(tcp, &addr.to_string(), path, ask).await
}

/// The same over `tcp` (a TLS stream, say), with `Host: host`.
async fn http1_upgrade_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut tcp: S,
    host: &str,
    path: &str,
    ask: bool,
) -> (BufReader<S>, String) {
    let asks = if ask {
        "Connection: Upgrade\r\nUpgrade: echo, other\r\n"
    } else {
        ""
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{asks}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(tcp);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
            .await
            .expect("a response head")
            .unwrap();
        assert!(n > 0, "closed before the end of the head: {head:?}");
        head.push_str(&line.to_ascii_lowercase());
        if line == "\r\n" {
            return (reader, head);
        }
    }
}

async fn read_line<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> String {
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .expect("a line within 10 s")
        .unwrap();
    line
}

#[tokio::test]
async fn a_101_to_an_http1_upgrade_hands_the_connection_to_the_hook() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let mut builder = catshost::Server::builder();
    builder.upgrade(echo_hook(tx));
    let server = TestServer::serve(builder.build(load("faults")), None).await;

    // faults.wat answers /switch with 101 (and a body, which is not sent).
    let (mut conn, head) = http1_upgrade(server.addr, "/switch", true).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("\r\nupgrade: echo\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(
        seen.recv().await.unwrap(),
        Seen {
            protocol: "echo".into(),
            version: Version::HTTP_11,
            path: "/switch".into(),
            tenant: "default".into(),
        }
    );
    for text in ["one", "two"] {
        conn.get_mut()
            .write_all(format!("{text}\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(read_line(&mut conn).await, format!("echo: {text}\n"));
    }
    // The guest is done; the upgrade is counted, and open.
    assert_eq!(server.server.in_flight().requests, 0);
    let metrics = server.server.metrics().encode();
    assert!(
        metrics.contains("catshost_upgrades_total{tenant=\"default\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("catshost_upgraded_open{tenant=\"default\"} 1\n"),
        "{metrics}"
    );

    // A 101 the request did not ask for is not sent; nor is a request
    // that asks, answered 200, upgraded.
    let (_conn, head) = http1_upgrade(server.addr, "/switch", false).await;
    assert!(head.starts_with("http/1.1 500"), "{head}");
    let (_conn, head) = http1_upgrade(server.addr, "/ok", true).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(seen.try_recv().is_err(), "the hook ran for no upgrade");

    // A stop tells the hook, and waits for it.
    server.server.stop().switch();
    assert_eq!(read_line(&mut conn).await, "bye\n");
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    server.finished().await.unwrap();
}

#[tokio::test]
async fn an_extended_connect_over_http2_hands_the_stream_to_the_hook() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let mut builder = catshost::Server::builder();
    builder.upgrade(echo_hook(tx));
    // hello.wat answers every request 200.
    let server = TestServer::serve(builder.build(load("hello")), None).await;

    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{}/chat", server.addr))
        .version(Version::HTTP_2)
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("echo"));
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let stream = hyper::upgrade::on(response).await.unwrap();
    assert_eq!(
        seen.recv().await.unwrap(),
        Seen {
            protocol: "echo".into(),
            version: Version::HTTP_2,
            path: "/chat".into(),
            tenant: "default".into(),
        }
    );
    let mut stream = BufReader::new(TokioIo::new(stream));
    stream.get_mut().write_all(b"over h2\n").await.unwrap();
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    assert_eq!(line, "echo: over h2\n");

    // Other requests on the same connection go on beside the stream.
    let get = Request::get(format!("http://{}/", server.addr))
        .body(Empty::new())
        .unwrap();
    let answer = send.send_request(get).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    answer.into_body().collect().await.unwrap();

    server.server.stop().switch();
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    assert_eq!(line, "bye\n");
    server.finished().await.unwrap();
}

#[tokio::test]
async fn only_tenants_allowed_to_upgrade_reach_the_hook() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let tenant = |name: &str, allow_upgrade: bool| Tenant {
        name: name.into(),
        component: load("faults").into(),
        routes: vec![Route::parse(&format!("{name}.test")).unwrap()],
        limits: TenantLimits {
            allow_upgrade,
            ..TenantLimits::default()
        },
        access: Default::default(),
    };
    let mut builder = catshost::Server::builder();
    builder.upgrade(echo_hook(tx));
    let server = builder
        .build_tenants(vec![tenant("open", true), tenant("closed", false)])
        .unwrap();
    let server = TestServer::serve(server, None).await;
    let upgrade = |host: &str| {
        format!(
            "GET /switch HTTP/1.1\r\nHost: {host}\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n"
        )
    };
    for (host, status) in [("closed.test", "500"), ("open.test", "101")] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(upgrade(host).as_bytes()).await.unwrap();
        let mut head = [0; 12];
        tcp.read_exact(&mut head).await.unwrap();
        assert_eq!(&head[9..12], status.as_bytes(), "{host}");
    }
    assert_eq!(seen.recv().await.unwrap().tenant, "open");
    assert!(seen.try_recv().is_err());

    // Without a hook, a tenant allowed to upgrade gets 500 too.
    let server2 = TestServer::serve(
        catshost::Server::builder()
            .build_tenants(vec![tenant("open", true)])
            .unwrap(),
        None,
    )
    .await;
    let mut tcp = TcpStream::connect(server2.addr).await.unwrap();
    tcp.write_all(upgrade("open.test").as_bytes())
        .await
        .unwrap();
    let mut head = [0; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(&head[9..12], b"500");
    server2.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn an_upgrade_over_tls_hands_over_the_tls_connection() {
    use rustls::pki_types::pem::PemObject;
    let (tls, _path, pem) = self_signed(catshost::config::HttpVersions::Both, "cert.pem");
    let (tx, mut seen) = mpsc::unbounded_channel();
    let mut builder = catshost::Server::builder();
    builder.upgrade(echo_hook(tx));
    let server = TestServer::serve(builder.build(load("faults")), Some(tls)).await;

    let mut roots = rustls::RootCertStore::empty();
    for der in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut conn, head) = http1_upgrade_over(stream, "localhost", "/switch", true).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert_eq!(seen.recv().await.unwrap().protocol, "echo");
    conn.get_mut().write_all(b"secret\n").await.unwrap();
    assert_eq!(read_line(&mut conn).await, "echo: secret\n");
    server.stop().await;
}

#[tokio::test]
async fn a_stop_tells_every_upgraded_connection_and_waits_for_it() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let mut builder = catshost::Server::builder();
    builder.upgrade(echo_hook(tx));
    let server = TestServer::serve(builder.build(load("faults")), None).await;
    let mut conns = Vec::new();
    for _ in 0..100 {
        let (conn, head) = http1_upgrade(server.addr, "/switch", true).await;
        assert!(head.starts_with("http/1.1 101"), "{head}");
        seen.recv().await.unwrap();
        conns.push(conn);
    }
    let metrics = server.server.metrics();
    assert!(
        metrics
            .encode()
            .contains("catshost_upgraded_open{tenant=\"default\"} 100\n")
    );
    server.server.stop().switch();
    for conn in &mut conns {
        assert_eq!(read_line(conn).await, "bye\n");
    }
    let metrics = metrics.clone();
    server.finished().await.unwrap();
    let after = metrics.encode();
    assert!(
        after.contains("catshost_upgraded_open{tenant=\"default\"} 0\n"),
        "{after}"
    );
}

#[tokio::test]
async fn a_hook_that_ignores_the_stop_is_cut_at_the_shutdown_timeout() {
    let mut builder = catshost::Server::builder();
    builder
        .shutdown_timeout(Duration::from_millis(300))
        .upgrade(|upgraded: Upgraded| async move {
            // Holds the connection and never looks at the stop.
            let _io = upgraded.io;
            std::future::pending::<()>().await;
        });
    let server = TestServer::serve(builder.build(load("faults")), None).await;
    let (mut conn, head) = http1_upgrade(server.addr, "/switch", true).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let stopped = std::time::Instant::now();
    server.server.stop().switch();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection outlived the shutdown timeout");
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "cut after {took:?}"
    );
    server.finished().await.unwrap();
}

/// A hook that speaks WebSocket with tokio-tungstenite: every message comes
/// back; a stop closes with 1001. Reports each socket's version on `seen`.
fn websocket_echo(seen: mpsc::UnboundedSender<Version>) -> impl catshost::UpgradeHook {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
    move |upgraded: Upgraded| {
        let seen = seen.clone();
        async move {
            let _ = seen.send(upgraded.version);
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                upgraded.io,
                Role::Server,
                None,
            )
            .await;
            loop {
                tokio::select! {
                    message = ws.next() => match message {
                        Some(Ok(message)) if message.is_text() || message.is_binary() => {
                            if ws.send(message).await.is_err() {
                                return;
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                    () = upgraded.stop.switched() => {
                        let close = CloseFrame { code: CloseCode::Away, reason: "stopping".into() };
                        let _ = ws.close(Some(close)).await;
                        // The client's close answers ours.
                        while let Some(Ok(_)) = ws.next().await {}
                        return;
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn the_websockets_library_talks_to_a_hook_over_ws_and_wss() {
    let client =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/ws_echo.py");
    for tls in [false, true] {
        let (tx, mut seen) = mpsc::unbounded_channel();
        let mut builder = catshost::Server::builder();
        builder.upgrade(websocket_echo(tx));
        let (cert, url_scheme, tls_config) = if tls {
            let (config, cert_path, _) =
                self_signed(catshost::config::HttpVersions::Both, "ws-cert.pem");
            (Some(cert_path), "wss", Some(config))
        } else {
            (None, "ws", None)
        };
        let server = TestServer::serve(builder.build(load("faults")), tls_config).await;
        let host = if tls {
            "localhost".to_string()
        } else {
            "127.0.0.1".to_string()
        };
        let url = format!("{url_scheme}://{host}:{}/switch", server.addr.port());
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
        assert_eq!(
            next_line(&mut lines).await.as_deref(),
            Some("echoed"),
            "{url}"
        );
        assert_eq!(seen.recv().await, Some(Version::HTTP_11));
        server.server.stop().switch();
        assert_eq!(
            next_line(&mut lines).await.as_deref(),
            Some("closed 1001"),
            "{url}"
        );
        assert!(child.wait().await.unwrap().success());
        server.finished().await.unwrap();
    }
}

/// The next line of a child's output, within 20 s.
async fn next_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the client answers within 20 s")
        .unwrap()
}

/// Serves tests/fixtures/ws-page.wat over TLS with `versions`, with the
/// tungstenite echo hook; loads its page in headless Chromium and returns
/// the page's text and the versions the hook saw.
async fn chromium_websocket(versions: catshost::config::HttpVersions) -> (String, Vec<Version>) {
    let (tls, _, _) = self_signed(versions, "chromium-ws-cert.pem");
    let (tx, mut seen) = mpsc::unbounded_channel();
    let mut builder = catshost::Server::builder();
    builder.http_versions(versions).upgrade(websocket_echo(tx));
    let server = TestServer::serve(builder.build(load("ws-page")), Some(tls)).await;
    let profile = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("chromium-ws-profile-{versions:?}"));
    let _ = std::fs::remove_dir_all(&profile);
    let url = format!("https://localhost:{}/", server.addr.port());
    let output = tokio::process::Command::from(support::chromium_dump_dom(&profile, &url))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("chromium ends within 60 s")
        .expect("chromium is installed (scripts/test.sh installs it)");
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    server.stop().await;
    let mut versions = Vec::new();
    while let Ok(version) = seen.try_recv() {
        versions.push(version);
    }
    (dom, versions)
}

#[tokio::test]
async fn chromium_opens_a_websocket_over_http2_and_over_http1() {
    use catshost::config::HttpVersions;
    for (versions, want) in [
        (HttpVersions::Both, Version::HTTP_2),
        (HttpVersions::Http1, Version::HTTP_11),
    ] {
        let (dom, seen) = chromium_websocket(versions).await;
        assert!(dom.contains("echo=from chromium"), "{versions:?}: {dom}");
        // Chromium falls back to HTTP/1.1 silently: the hook tells which.
        assert_eq!(seen, [want], "{versions:?}");
    }
}

#[tokio::test]
async fn a_tenant_past_its_open_upgrades_gets_503_until_one_closes() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let mut builder = catshost::Server::builder();
    builder
        .limits(TenantLimits {
            max_upgrades: 2,
            ..TenantLimits::default()
        })
        .upgrade(echo_hook(tx));
    let server = TestServer::serve(builder.build(load("faults")), None).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let (conn, head) = http1_upgrade(server.addr, "/switch", true).await;
        assert!(head.starts_with("http/1.1 101"), "{head}");
        seen.recv().await.unwrap();
        open.push(conn);
    }
    let (_refused, head) = http1_upgrade(server.addr, "/switch", true).await;
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("\r\nretry-after: 1\r\n"), "{head}");
    let metrics = server.server.metrics().encode();
    assert!(
        metrics.contains(
            "catshost_admission_rejections_total{tenant=\"default\",reason=\"upgrades\"} 1\n"
        ),
        "{metrics}"
    );
    // Requests that do not upgrade are not held back.
    let (_plain, head) = http1_upgrade(server.addr, "/ok", false).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");

    // One closes (its hook ends): the next upgrade gets its place.
    drop(open.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (conn, head) = http1_upgrade(server.addr, "/switch", true).await;
        if head.starts_with("http/1.1 101") {
            open.push(conn);
            break;
        }
        assert!(head.starts_with("http/1.1 503"), "{head}");
        assert!(
            std::time::Instant::now() < deadline,
            "no place after a close"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}
