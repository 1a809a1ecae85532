//! HTTPS: ALPN outcomes for each `--http` mode, the handshake timeout,
//! garbage, certificates of each key type, bad certificate files, real
//! clients (rustls + hyper, curl).

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use catshost::config::HttpVersions;
use http::{StatusCode, Version};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use support::{Client, Process, Raw, TestServer, catshost, temp_file};
use tokio::net::TcpStream;

/// A certificate for localhost and 127.0.0.1: (cert PEM, key PEM).
fn certificate() -> (String, String) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names).unwrap();
    (cert.pem(), signing_key.serialize_pem())
}

/// A TLS server of the demo component in this process, and its certificate.
struct TlsServer {
    addr: SocketAddr,
    cert: String,
    server: TestServer,
}

impl TlsServer {
    async fn start(versions: HttpVersions, builder: &mut catshost::Builder) -> Self {
        let (cert, key) = certificate();
        let cert_path = temp_file("cert.pem", cert.as_bytes());
        let key_path = temp_file("key.pem", key.as_bytes());
        let tls = catshost::Tls::from_pem_files(&cert_path, &key_path, versions).unwrap();
        let server =
            TestServer::serve(builder.http_versions(versions).build(demo()), Some(tls)).await;
        Self {
            addr: server.addr,
            cert,
            server,
        }
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

fn demo() -> catshost::GuestPre {
    let engine = catshost::Engine::new().unwrap();
    engine.load_bytes("demo", catshost::DEMO_COMPONENT).unwrap()
}

fn client_config(cert_pem: &str, alpn: &[&str]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config
}

/// Connects with `alpn` offered. `Err` when the handshake is refused.
async fn connect(
    addr: SocketAddr,
    cert_pem: &str,
    alpn: &[&str],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(cert_pem, alpn)));
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// GET / over `stream` with the protocol ALPN chose (HTTP/1.1 without one,
/// unless `h2` is forced); returns the response version and body.
async fn get(stream: tokio_rustls::client::TlsStream<TcpStream>, h2: bool) -> (Version, String) {
    let version = if h2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    let answer = Client::over(stream, version, "https", "localhost")
        .await
        .request("GET", "/tls", b"")
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    (answer.version, answer.body)
}

#[tokio::test]
async fn alpn_outcomes_for_each_http_mode() {
    // (server mode, client ALPN offer, the protocol served or None: refused)
    let table: [(HttpVersions, &[&str], Option<&str>); 12] = [
        (HttpVersions::Both, &["h2", "http/1.1"], Some("h2")),
        (HttpVersions::Both, &["http/1.1"], Some("http/1.1")),
        (HttpVersions::Both, &["h2"], Some("h2")),
        (HttpVersions::Both, &[], Some("http/1.1")),
        (HttpVersions::Http1, &["h2", "http/1.1"], Some("http/1.1")),
        (HttpVersions::Http1, &["http/1.1"], Some("http/1.1")),
        (HttpVersions::Http1, &["h2"], None),
        (HttpVersions::Http1, &[], Some("http/1.1")),
        (HttpVersions::H2, &["h2", "http/1.1"], Some("h2")),
        (HttpVersions::H2, &["http/1.1"], None),
        (HttpVersions::H2, &["h2"], Some("h2")),
        (HttpVersions::H2, &[], Some("h2")),
    ];
    for mode in [HttpVersions::Both, HttpVersions::Http1, HttpVersions::H2] {
        let server = TlsServer::start(mode, &mut catshost::Server::builder()).await;
        for (_, offer, want) in table.iter().filter(|(m, _, _)| *m == mode) {
            let case = format!("{mode:?} server, client offers {offer:?}");
            match (connect(server.addr, &server.cert, offer).await, want) {
                (Err(_), None) => {}
                (Err(error), Some(_)) => panic!("{case}: refused: {error}"),
                (Ok(stream), None) => {
                    // rustls answers a client offering nothing it serves
                    // with no_application_protocol: no request may follow.
                    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                    panic!("{case}: accepted with ALPN {alpn:?}");
                }
                (Ok(stream), Some(want)) => {
                    let alpn = stream
                        .get_ref()
                        .1
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned());
                    if !offer.is_empty() {
                        assert_eq!(alpn.as_deref(), Some(*want), "{case}");
                    }
                    let (version, body) = get(stream, *want == "h2").await;
                    let expected_version = if *want == "h2" {
                        Version::HTTP_2
                    } else {
                        Version::HTTP_11
                    };
                    assert_eq!(version, expected_version, "{case}");
                    let protocol = if *want == "h2" { "HTTP/2" } else { "HTTP/1.1" };
                    // The guest sees the scheme and authority it was reached by.
                    assert!(
                        body.contains(&format!(
                            "protocol: {protocol}\nscheme: https\nauthority: localhost"
                        )),
                        "{case}: {body}"
                    );
                }
            }
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_handshakes_do_not_hold_up_good_clients() {
    let mut builder = catshost::Server::builder();
    builder.tls_handshake_timeout(Duration::from_millis(500));
    let server = TlsServer::start(HttpVersions::Both, &mut builder).await;
    // 200 connections that never finish a handshake: 100 silent, 100 that
    // send the start of a ClientHello.
    let mut stalled = Vec::new();
    for i in 0..200 {
        let mut tcp = Raw::connect(server.addr).await;
        if i % 2 == 0 {
            tcp.write(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
                .await
                .unwrap();
        }
        stalled.push(tcp);
    }
    // A good client is served while they hang.
    let stream = connect(server.addr, &server.cert, &["h2", "http/1.1"])
        .await
        .unwrap();
    let (version, _) = get(stream, true).await;
    assert_eq!(version, Version::HTTP_2);
    // The stalled ones are closed at the handshake timeout.
    for mut tcp in stalled {
        assert!(
            tcp.closed_within(Duration::from_secs(20)).await,
            "a stalled handshake was not closed"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn garbage_and_plaintext_on_the_tls_port_are_closed() {
    let server = TlsServer::start(HttpVersions::Both, &mut catshost::Server::builder()).await;
    for junk in [
        &b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"[..],
        &[0u8; 512][..],
        b"\x16\x03\x01\xff\xff garbage",
    ] {
        let mut tcp = Raw::connect(server.addr).await;
        let _ = tcp.write(junk).await;
        let closed = tcp.closed_within(Duration::from_secs(20)).await;
        assert!(closed, "the connection was not closed");
        assert!(!tcp.text().contains("HTTP/1.1 200"));
    }
    // The server goes on.
    let stream = connect(server.addr, &server.cert, &["http/1.1"])
        .await
        .unwrap();
    assert_eq!(get(stream, false).await.0, Version::HTTP_11);
    server.stop().await;
}

/// Runs openssl to make a certificate whose key is of `kind` (rsa, ec,
/// ed25519): (cert, key) paths.
fn openssl_certificate(kind: &str) -> (PathBuf, PathBuf) {
    let dir = temp_file("openssl-marker", b"")
        .parent()
        .unwrap()
        .to_path_buf();
    let (cert, key) = (
        dir.join(format!("{kind}.pem")),
        dir.join(format!("{kind}.key")),
    );
    let newkey = match kind {
        "rsa" => "rsa:2048",
        "ec" => "ec",
        _ => "ed25519",
    };
    let mut command = Command::new("openssl");
    command.args([
        "req",
        "-x509",
        "-newkey",
        newkey,
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
    ]);
    if kind == "ec" {
        command.args(["-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    command
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // A leaf, not the CA `req -x509` makes by default.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    assert!(
        command
            .status()
            .expect("openssl is installed (see .ci/run)")
            .success()
    );
    (cert, key)
}

#[tokio::test]
async fn rsa_ecdsa_and_ed25519_certificates_serve() {
    for kind in ["rsa", "ec", "ed25519"] {
        let (cert, key) = openssl_certificate(kind);
        let tls = catshost::Tls::from_pem_files(&cert, &key, HttpVersions::Both).unwrap();
        let server = TestServer::serve(catshost::Server::builder().build(demo()), Some(tls)).await;
        let pem = std::fs::read_to_string(&cert).unwrap();
        let stream = connect(server.addr, &pem, &["h2"])
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(get(stream, true).await.0, Version::HTTP_2, "{kind}");
        server.stop().await;
    }
}

#[test]
fn bad_certificate_files_are_refused_before_anything_is_bound() {
    let (cert, key) = certificate();
    let (_, other_key) = certificate();
    let cert_path = temp_file("cert.pem", cert.as_bytes());
    let key_path = temp_file("key.pem", key.as_bytes());
    let other_key_path = temp_file("other.key", other_key.as_bytes());
    let junk_path = temp_file("junk.pem", b"not a PEM file");
    let missing = PathBuf::from("/no/such/cert.pem");
    let cases = [
        (
            &missing,
            &key_path,
            format!("failed to read '{}'", missing.display()),
        ),
        (
            &junk_path,
            &key_path,
            format!("no PEM certificate found in '{}'", junk_path.display()),
        ),
        (
            &cert_path,
            &junk_path,
            format!(
                "no PEM private key (PKCS#8, PKCS#1 or SEC1) found in '{}'",
                junk_path.display()
            ),
        ),
        (
            &cert_path,
            &other_key_path,
            format!(
                "the private key in '{}' cannot be used with the certificate in '{}'",
                other_key_path.display(),
                cert_path.display()
            ),
        ),
    ];
    for (cert, key, want) in cases {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let output = catshost()
            .args(["serve", "--addr", &addr.to_string(), "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&want), "want {want:?} in {stderr}");
        assert!(!stderr.contains("serving"), "{stderr}");
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "something listens on {addr}"
        );
    }
}

fn curl(addr: SocketAddr, version_flag: &str) -> (String, String) {
    let output = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--insecure",
            version_flag,
            "--write-out",
            "\n%{http_version}",
        ])
        .arg(format!("https://{addr}/curl"))
        .output()
        .expect("curl is installed (see .ci/run)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, version) = text.rsplit_once('\n').unwrap();
    (body.to_string(), version.to_string())
}

#[test]
fn curl_speaks_h2_and_http1_to_a_self_signed_server() {
    let server = Process::serve(&["--tls-self-signed"]);
    let stderr = server.stderr();
    let fingerprint = stderr
        .iter()
        .find(|l| {
            l.starts_with("catshost: self-signed certificate for localhost, 127.0.0.1; SHA-256 ")
        })
        .unwrap_or_else(|| panic!("no fingerprint line in {stderr:#?}"));
    assert_eq!(
        fingerprint.rsplit(' ').next().unwrap().split(':').count(),
        32
    );
    assert!(
        stderr
            .iter()
            .any(|l| l == &format!("catshost: serving https://{}", server.addr))
    );

    let (body, version) = curl(server.addr, "--http2");
    assert_eq!(version, "2");
    assert!(body.contains("protocol: HTTP/2\nscheme: https"), "{body}");
    let (body, version) = curl(server.addr, "--http1.1");
    assert_eq!(version, "1.1");
    assert!(body.contains("protocol: HTTP/1.1\nscheme: https"), "{body}");
}

#[test]
fn serves_on_a_socket_passed_by_file_descriptor() {
    let (_listener, fd, addr) = support::inherited_listener();
    let server = Process::serve_with(&["--listen-fd", &fd], false);
    assert_eq!(server.addr, addr);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(support::get(addr, Version::HTTP_11, "/fd"));
    assert!(answer.body.contains("path: /fd"), "{}", answer.body);
}

#[test]
fn serves_on_a_socket_passed_by_systemd() {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    socket2::SockRef::from(&listener)
        .set_cloexec(false)
        .unwrap();
    // sd_listen_fds(3): the socket is fd 3, LISTEN_PID is the server's pid.
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!(
            "exec 3<&{}; export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" serve",
            listener.as_raw_fd()
        ))
        .arg(env!("CARGO_BIN_EXE_catshost"));
    let server = Process::spawn(command);
    assert_eq!(server.addr, addr);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(support::get(addr, Version::HTTP_2, "/systemd"));
    assert!(answer.body.contains("path: /systemd"), "{}", answer.body);
}

/// Headless Chromium (installed by scripts/test.sh) loads a guest's page
/// over HTTPS; the page reports the protocol the browser used.
#[test]
fn chromium_loads_a_page_over_h2() {
    let page = support::fixture_file("page");
    let server = Process::serve(&[page.to_str().unwrap(), "--tls-self-signed"]);
    let profile = temp_file("chromium-marker", b"")
        .parent()
        .unwrap()
        .join("chromium-profile");
    // The certificate is the self-signed one made at start.
    let url = format!("https://localhost:{}/", server.addr.port());
    let output = support::chromium_dump_dom(&profile, &url)
        .output()
        .expect("chromium is installed (scripts/test.sh installs it)");
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("protocol=h2"),
        "status {:?}\nDOM: {dom}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
