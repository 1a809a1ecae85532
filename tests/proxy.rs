//! Behind a load balancer: a trusted proxy's connections open with a PROXY
//! protocol header (v1 or v2, before TLS), and the client it names is the
//! one the per-client cap and the access log key on; from a peer not
//! trusted no header is read, and a bad or missing one from a trusted
//! proxy closes that connection only.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use catshost::config::{HttpVersions, TrustedProxies};
use support::{Process, Raw, TestServer, catshost, fixture, temp_file};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n";

/// A v1 header from `source` (IPv4) to the server.
fn v1(source: &str) -> Vec<u8> {
    let source: SocketAddr = source.parse().unwrap();
    format!(
        "PROXY TCP4 {} 127.0.0.1 {} 80\r\n",
        source.ip(),
        source.port()
    )
    .into_bytes()
}

/// A v2 header (PROXY, TCP over IPv4) from `source` to the server.
fn v2(source: &str) -> Vec<u8> {
    let SocketAddr::V4(source) = source.parse().unwrap() else {
        panic!("an IPv4 source")
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend(source.ip().octets());
    header.extend([127, 0, 0, 1]);
    header.extend(source.port().to_be_bytes());
    header.extend(80u16.to_be_bytes());
    header
}

fn trusting(networks: &[&str]) -> catshost::Builder {
    let mut builder = catshost::Server::builder();
    builder.trusted_proxies(TrustedProxies::parse(networks.iter().copied()).unwrap());
    builder
}

/// Sends `header` and a request on a new connection and reads the status
/// line; the connection stays open (keep-alive).
async fn served(addr: SocketAddr, header: &[u8]) -> Raw {
    let mut raw = Raw::send(addr, &[header, REQUEST].concat()).await;
    raw.read_until("HTTP/1.1 200 OK", 1).await;
    raw
}

/// Sends `bytes` on a new connection and checks that the server closes it
/// without a byte of answer.
async fn closed_unanswered(addr: SocketAddr, bytes: &[u8]) {
    let mut raw = Raw::send(addr, bytes).await;
    assert!(
        raw.closed_within(Duration::from_secs(5)).await,
        "still open"
    );
    assert_eq!(raw.text(), "", "sent {:?}", String::from_utf8_lossy(bytes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_s_clients_each_get_their_own_connection_cap() {
    let mut builder = trusting(&["127.0.0.1"]);
    builder.max_connections_per_client(2);
    let server = TestServer::start(&fixture("hello"), &builder).await;
    // Two connections of client A through the proxy, v1 and v2, held open.
    let a1 = served(server.addr, &v1("203.0.113.7:4000")).await;
    let a2 = served(server.addr, &v2("203.0.113.7:4001")).await;
    // A third of A's is over A's cap, the proxy's address has none counted.
    closed_unanswered(
        server.addr,
        &[&v2("203.0.113.7:4002")[..], REQUEST].concat(),
    )
    .await;
    assert_eq!(closed_by_host(&server, "per_client_limit"), 1);
    // Client B, through the same proxy, has its own.
    let b1 = served(server.addr, &v2("198.51.100.9:4000")).await;
    let b2 = served(server.addr, &v1("198.51.100.9:4001")).await;
    // A LOCAL header (the proxy's own health check) counts as the proxy's.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let health = served(server.addr, local).await;
    // A slot of A's comes back when one of its connections closes.
    drop(a1);
    while open_connections(&server) > 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let a3 = served(server.addr, &v1("203.0.113.7:4003")).await;
    assert_eq!(closed_by_host(&server, "per_client_limit"), 1);
    drop((a2, a3, b1, b2, health));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_from_a_peer_not_trusted_is_not_honoured() {
    let mut builder = trusting(&["10.0.0.0/8"]);
    builder.max_connections_per_client(2);
    let server = TestServer::start(&fixture("hello"), &builder).await;
    // Not read: it is the client's first bytes, and not HTTP.
    for header in [v1("203.0.113.7:4000"), v2("203.0.113.7:4000")] {
        let mut raw = Raw::send(server.addr, &[&header[..], REQUEST].concat()).await;
        let text = raw.read_to_end().await.unwrap_or_else(|_| raw.text());
        assert!(text.starts_with("HTTP/1.1 400 Bad Request"), "{text}");
    }
    while open_connections(&server) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The cap counts the real peer: with two connections of 127.0.0.1 open,
    // one claiming to carry client B is refused.
    let held = [
        Raw::connect(server.addr).await,
        Raw::connect(server.addr).await,
    ];
    closed_unanswered(
        server.addr,
        &[&v2("198.51.100.9:4000")[..], REQUEST].concat(),
    )
    .await;
    assert_eq!(closed_by_host(&server, "per_client_limit"), 1);
    drop(held);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_proxy_header_from_a_trusted_proxy_closes_its_connection_and_the_server_goes_on() {
    let mut builder = trusting(&["127.0.0.0/8"]);
    builder.header_read_timeout(Duration::from_secs(1));
    let server = TestServer::start(&fixture("hello"), &builder).await;
    let mut bad_version = v2("203.0.113.7:4000");
    bad_version[12] = 0x31;
    let mut too_long = v2("203.0.113.7:4000");
    too_long[14..16].copy_from_slice(&5000u16.to_be_bytes());
    too_long.extend([0; 5000 - 12]);
    let with_request = |header: &[u8]| [header, REQUEST].concat();
    let cases = [
        // No header: a request as it would come without the proxy.
        REQUEST.to_vec(),
        with_request(b"PROXY TCP4 203.0.113.7\r\n"),
        with_request(b"PROXY TCP4 203.0.113.700 127.0.0.1 1 2\r\n"),
        with_request(&bad_version),
        with_request(&too_long),
        // Unfinished, or nothing: closed at the header read timeout.
        b"PROXY TCP4 203.0.113.7 127.0.0.1 4000".to_vec(),
        Vec::new(),
    ];
    for case in &cases {
        closed_unanswered(server.addr, case).await;
    }
    assert_eq!(closed_by_host(&server, "proxy_header"), 7);
    served(server.addr, &v1("203.0.113.7:4000")).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_proxy_header_comes_before_the_handshake() {
    let (tls, _, cert) = catshost::Tls::self_signed(HttpVersions::Http1).unwrap();
    let mut builder = trusting(&["127.0.0.1"]);
    builder
        .max_connections_per_client(1)
        .http_versions(HttpVersions::Http1);
    let engine = catshost::Engine::new().unwrap();
    let hello = engine.load_bytes("hello", &fixture("hello")).unwrap();
    let server = TestServer::serve(builder.build(hello), Some(tls)).await;
    let a = https(server.addr, &cert, &v2("203.0.113.7:4000"))
        .await
        .unwrap();
    // A's second connection is closed before its handshake.
    assert!(
        https(server.addr, &cert, &v1("203.0.113.7:4001"))
            .await
            .is_err()
    );
    assert_eq!(closed_by_host(&server, "per_client_limit"), 1);
    let b = https(server.addr, &cert, &v1("198.51.100.9:4000"))
        .await
        .unwrap();
    drop((a, b));
    server.stop().await;
}

/// Sends `header`, then over TLS a request, and reads its status line;
/// `Err` when the connection fails first.
async fn https(
    addr: SocketAddr,
    cert_pem: &str,
    header: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let cert = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(header).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(REQUEST).await?;
    let mut head = [0; 15];
    tls.read_exact(&mut head).await?;
    assert_eq!(&head, b"HTTP/1.1 200 OK");
    Ok(tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_the_client_a_trusted_proxy_carries() {
    let hello = temp_file("hello.wasm", &fixture("hello"));
    let config = hello.with_file_name("catshost.toml");
    let tenant = "[[tenant]]\nname = \"hello\"\ncomponent = \"hello.wasm\"\nroutes = [\"/\"]\n";
    let file = format!(
        "[server]\naddr = \"127.0.0.1:0\"\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\n{tenant}"
    );
    std::fs::write(&config, file).unwrap();
    let flag = Process::serve(&[
        "--trusted-proxy",
        "10.0.0.0/8",
        "--trusted-proxy",
        "127.0.0.1",
        hello.to_str().unwrap(),
    ]);
    let mut command = catshost();
    command.args(["serve", "--config"]).arg(&config);
    let file = Process::spawn(command);
    for (server, source) in [(flag, "203.0.113.7:4711"), (file, "198.51.100.9:4712")] {
        served(server.addr, &v1(source)).await;
        let client = format!("client={source}");
        let line = server.wait_for_line(Duration::from_secs(10), |l| {
            l.contains("catshost::access") && l.contains(&client)
        });
        assert!(line.is_some(), "no access line with {client}");
    }
}

#[test]
fn trusted_proxies_are_flags_checked_before_anything_is_bound() {
    let help = catshost().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--trusted-proxy <CIDR>"), "{help}");
    for args in [
        &["serve", "--trusted-proxy", "10.0.0.0/33"][..],
        &["serve", "--trusted-proxy", "localhost"],
        &[
            "serve",
            "--config",
            "x.toml",
            "--trusted-proxy",
            "10.0.0.0/8",
        ],
    ] {
        let output = catshost().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

/// The connections `server` closed for `reason`, by its metrics.
fn closed_by_host(server: &TestServer, reason: &str) -> u64 {
    let metrics = server.server.metrics().encode();
    let name = format!("catshost_connections_closed_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&name))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// The connections open on `server`, by its metrics.
fn open_connections(server: &TestServer) -> u64 {
    let metrics = server.server.metrics().encode();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("catshost_connections_open "))
        .map_or(0, |n| n.trim().parse().unwrap())
}
