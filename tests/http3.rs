//! HTTP/3 with clients nobody here wrote: aioquic (tests/clients/h3.py)
//! and headless Chromium, against the real binary with `--http3`. The same
//! routing, limits and guests as the other versions; Alt-Svc on TCP; a
//! stop with streams in flight; and attacks at small size: streams that
//! never send their head, a client granting no flow-control credit,
//! floods of garbage datagrams and of Initials that never finish.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Process, catshost, fixture, folder, json_lines, websockets_python};

/// A self-signed certificate for `names`: (cert PEM, key PEM).
fn certificate(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names).unwrap();
    (cert.pem(), signing_key.serialize_pem())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A server of several tenants over HTTPS and HTTP/3 (JSON logs), with
/// `server` added to its `[server]` table: each tenant by host, `localhost`
/// the default certificate's, `shop.test` a certificate of its own.
fn serve(server: &str) -> Process {
    serve_with(server, &[])
}

/// [`serve`], with `args` given to `catshost serve` too.
fn serve_with(server: &str, args: &[&str]) -> Process {
    serve_in(&folder(), server, args)
}

/// [`serve_with`], its files in `dir`.
fn serve_in(dir: &Path, server: &str, args: &[&str]) -> Process {
    let dir = dir.to_path_buf();
    for name in ["echo", "faults", "slow", "hello"] {
        write(&dir, &format!("{name}.wasm"), &fixture(name));
    }
    std::fs::copy(support::built("rust", "echo-p3"), dir.join("echo-p3.wasm")).unwrap();
    for (name, names) in [
        ("default", &["localhost"][..]),
        ("shop", &["shop.test"][..]),
    ] {
        let (cert, key) = certificate(names);
        write(&dir, &format!("{name}.pem"), cert.as_bytes());
        write(&dir, &format!("{name}.key"), key.as_bytes());
    }
    let config = format!(
        r#"
[server]
addr = "127.0.0.1:0"
http3 = true
tls = {{ cert = "default.pem", key = "default.key" }}
{server}

[defaults]
request_timeout = "2s"

[[tenant]]
name = "p2"
component = "echo.wasm"
routes = ["p2.test"]

[[tenant]]
name = "p3"
component = "echo-p3.wasm"
routes = ["p3.test"]

[[tenant]]
name = "faults"
component = "faults.wasm"
routes = ["faults.test"]
max_body_size = "1KiB"

# /flood for as long as its client takes it.
[[tenant]]
name = "flood"
component = "faults.wasm"
routes = ["flood.test"]
request_timeout = "60s"

[[tenant]]
name = "slow"
component = "slow.wasm"
routes = ["slow.test"]

[[tenant]]
name = "shop"
component = "hello.wasm"
routes = ["shop.test"]
tls = {{ cert = "shop.pem", key = "shop.key" }}

[[tenant]]
name = "hello"
component = "hello.wasm"
routes = ["localhost"]
"#
    );
    let config = write(&dir, "catshost.toml", config.as_bytes());
    let mut command = catshost();
    command
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .args(args);
    Process::spawn(command)
}

/// Runs tests/clients/h3.py with `args`; its JSON line.
fn h3(args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/h3.py");
    let output = Command::new(websockets_python())
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the HTTP/3 client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|_| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr
            .get(stderr.len().saturating_sub(2000)..)
            .unwrap_or(&stderr);
        panic!(
            "h3.py {}: {:?}\nstdout: {}\nstderr: {stderr}",
            args[0],
            output.status,
            stdout.get(..2000).unwrap_or(&stdout)
        )
    })
}

/// The responses to `requests`, all sent at once on one connection made
/// for `sni`.
fn requests(server: &Process, sni: &str, requests: Value) -> Vec<Value> {
    let spec = json!({ "port": server.addr.port(), "sni": sni, "requests": requests });
    let out = h3(&["requests", &spec.to_string()]);
    out["responses"].as_array().unwrap().clone()
}

fn get(authority: &str, path: &str) -> Value {
    json!({ "method": "GET", "authority": authority, "path": path })
}

fn post(authority: &str, path: &str, size: usize) -> Value {
    json!({ "method": "POST", "authority": authority, "path": path, "body_size": size })
}

/// The SHA-256 h3.py reports for the body it sends with `body_size`.
fn sent_sha256(size: usize) -> String {
    let script = "import hashlib, sys; \
        print(hashlib.sha256(bytes(i % 251 for i in range(int(sys.argv[1])))).hexdigest())";
    let output = Command::new(websockets_python())
        .args(["-c", script, &size.to_string()])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// The access lines of `process` so far.
fn access_lines(process: &Process) -> Vec<Value> {
    json_lines(process)
        .into_iter()
        .filter(|line| line["target"] == "catshost::access")
        .collect()
}

/// What `check` gives within 10 s, polled.
fn wait_for<T>(check: impl Fn() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Some(found) = check() {
            return Some(found);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn status(response: &Value) -> u64 {
    response["status"].as_u64().unwrap_or(0)
}

#[test]
fn requests_go_through_the_same_routing_and_guests_and_logs() {
    let server = serve("");
    const MIB: usize = 1 << 20;
    let responses = requests(
        &server,
        "localhost",
        json!([
            get("localhost", "/"),
            post("p2.test", "/", MIB),
            post("p3.test", "/echo", MIB),
        ]),
    );
    assert_eq!(status(&responses[0]), 200, "{:?}", responses[0]);
    let want = sent_sha256(MIB);
    for echo in &responses[1..] {
        assert_eq!(status(echo), 200);
        assert_eq!(echo["length"], MIB, "the whole echo");
        assert_eq!(echo["sha256"], want.as_str(), "byte for byte");
    }

    // Each in the access log, as HTTP/3, by its tenant.
    let lines = wait_for(|| Some(access_lines(&server)).filter(|l| l.len() >= 3))
        .expect("three access lines");
    let mut tenants: Vec<_> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["protocol"], "HTTP/3", "{l}");
            l["tenant"].as_str().unwrap().to_string()
        })
        .collect();
    tenants.sort();
    assert_eq!(tenants, ["hello", "p2", "p3"]);
}

#[test]
fn a_hundred_concurrent_streams_on_one_connection() {
    let server = serve("");
    let all: Vec<Value> = (0..100).map(|i| post("p2.test", "/", 1000 + i)).collect();
    let responses = requests(&server, "localhost", Value::Array(all));
    assert_eq!(responses.len(), 100);
    for (i, response) in responses.iter().enumerate() {
        assert_eq!(status(response), 200, "stream {i}");
        assert_eq!(response["length"], 1000 + i, "stream {i}");
    }
}

#[test]
fn sni_and_authority_choose_the_tenant_and_a_mismatch_gets_421() {
    let server = serve("");
    let cases = [
        ("shop.test", "shop.test", 200),
        ("localhost", "localhost", 200),
        ("localhost", "shop.test", 421),
        ("shop.test", "localhost", 421),
    ];
    for (sni, authority, want) in cases {
        let responses = requests(&server, sni, json!([get(authority, "/")]));
        assert_eq!(
            status(&responses[0]),
            want,
            "SNI {sni}, :authority {authority}"
        );
    }
}

#[test]
fn limits_and_guest_faults_answer_as_over_http2() {
    let server = serve("");
    let responses = requests(
        &server,
        "localhost",
        json!([
            post("faults.test", "/consume", 4096),
            get("faults.test", "/loop"),
            get("faults.test", "/trap"),
            get("nowhere.test", "/"),
            // Past --max-header-size (64 KiB): h3's own 431.
            json!({ "authority": "localhost", "path": "/", "headers": big_headers() }),
        ]),
    );
    let statuses: Vec<_> = responses.iter().map(status).collect();
    assert_eq!(statuses, [413, 504, 500, 404, 431], "{responses:?}");
}

/// Ten headers of 7 KiB: 70 KiB in all (aioquic refuses one that long).
fn big_headers() -> Value {
    (0..10)
        .map(|i| json!([format!("x-big-{i}"), "a".repeat(7 << 10)]))
        .collect()
}

#[test]
fn tcp_responses_advertise_http3_and_the_ready_file_says_it() {
    let dir = folder();
    let ready = dir.join("ready");
    let server = Process::serve(&[
        "--http3",
        "--tls-self-signed",
        "--ready-file",
        ready.to_str().unwrap(),
    ]);
    let port = server.addr.port();
    let line = server
        .stderr()
        .into_iter()
        .find(|l| l.starts_with("catshost: serving https://"))
        .unwrap();
    assert!(
        line.ends_with(&format!("and HTTP/3 on UDP port {port}")),
        "{line}"
    );
    assert_eq!(
        std::fs::read_to_string(&ready).unwrap(),
        format!("https://{}\nh3=\":{port}\"\n", server.addr)
    );
    let output = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-D", "-"])
        .arg(format!("https://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&output.stdout).to_lowercase();
    assert!(
        head.contains(&format!("alt-svc: h3=\":{port}\"; ma=86400")),
        "{head}"
    );
    // And the README's newcomer command answers over HTTP/3.
    let responses = requests(&server, "localhost", json!([get("localhost", "/hello")]));
    assert_eq!(status(&responses[0]), 200);
    assert!(
        responses[0]["body"]
            .as_str()
            .unwrap()
            .contains("protocol: HTTP/3")
    );
}

#[test]
fn http3_without_tls_or_in_per_core_mode_is_refused() {
    for args in [
        &["serve", "--http3"][..],
        &["serve", "--http3", "--tls-self-signed", "--reuse-port"][..],
    ] {
        let output = catshost().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--http3"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_stop_lets_streams_in_flight_finish() {
    let server = serve("shutdown_timeout = \"5m\"");
    let spec = json!({
        "port": server.addr.port(),
        "requests": [get("slow.test", "/1500"), get("slow.test", "/1500")],
        "announce_headers": true,
        // Kept open after the responses, as a browser would.
        "hold": 120,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/h3.py");
    let mut client = Command::new(websockets_python())
        .arg(script)
        .args(["requests", &spec.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "sent");
    // Both guests have sent their heads: they run until the stop.
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "headers");
    server.signal(libc::SIGTERM);
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let out: Value = serde_json::from_str(&line).unwrap();
    for response in out["responses"].as_array().unwrap() {
        assert_eq!(status(response), 200, "{out}");
        assert_eq!(response["body"], "started\nfinished\n", "{out}");
    }
    // Once its requests are served, the server closes the connection
    // itself (H3_NO_ERROR) rather than wait for the client.
    assert_eq!(out["terminated"], 0x100, "{out}");
    let mut server = server;
    assert_eq!(
        server.wait_exit(Duration::from_secs(30)).unwrap().code(),
        Some(0)
    );
    client.wait().unwrap();
}

#[test]
fn chromium_loads_a_page_and_a_fetch_over_http3() {
    let dir = folder();
    let (cert, key) = certificate(&["localhost"]);
    let cert_path = write(&dir, "cert.pem", cert.as_bytes());
    let key_path = write(&dir, "key.pem", key.as_bytes());
    let page = support::fixture_file("fetch-page");
    let mut command = catshost();
    command
        .args([
            "--log-format",
            "json",
            "serve",
            "--http3",
            "--addr",
            "127.0.0.1:0",
        ])
        .arg(&page)
        .arg("--tls-cert")
        .arg(&cert_path)
        .arg("--tls-key")
        .arg(&key_path);
    let server = Process::spawn(command);
    let port = server.addr.port();
    // Chromium takes a self-signed certificate over QUIC only by its key's
    // hash (base64 of the SHA-256 of its SubjectPublicKeyInfo).
    let spki = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -pubkey -noout -in \"$0\" | openssl pkey -pubin -outform der \
             | openssl dgst -sha256 -binary | base64",
        )
        .arg(&cert_path)
        .output()
        .expect("openssl is installed (scripts/test.sh installs it)");
    let spki = String::from_utf8(spki.stdout).unwrap().trim().to_string();
    let profile = dir.join("chromium-profile");
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-quic",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        // The server listens on 127.0.0.1 only; forced QUIC would try ::1.
        .arg("--host-resolver-rules=MAP localhost 127.0.0.1")
        .arg(format!("--origin-to-force-quic-on=localhost:{port}"))
        .arg(format!("--ignore-certificate-errors-spki-list={spki}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("https://localhost:{port}/"))
        .output()
        .expect("chromium is installed (scripts/test.sh installs it)");
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("page=h3 fetch=h3"),
        "status {:?}\nDOM: {dom}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // The server saw both as HTTP/3.
    let lines = wait_for(|| Some(access_lines(&server)).filter(|l| l.len() >= 2))
        .expect("two access lines");
    let paths: Vec<_> = lines
        .iter()
        .filter(|l| l["protocol"] == "HTTP/3")
        .map(|l| l["path"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(paths.contains(&"/".to_string()), "{lines:?}");
    assert!(paths.contains(&"/data".to_string()), "{lines:?}");
}

#[test]
fn streams_that_never_send_their_head_are_cut_at_the_header_read_timeout() {
    let server = serve("header_read_timeout = \"1s\"\nhttp3_max_concurrent_streams = 10");
    let out = h3(&["no-headers", &server.addr.port().to_string(), "10", "15"]);
    assert_eq!(out["ended"], 10, "{out}");
    assert_eq!(out["good"], 200, "{out}");
}

#[test]
fn a_client_granting_no_credit_is_reset_at_the_write_timeout() {
    let server = serve("write_timeout = \"1s\"");
    let port = server.addr.port().to_string();
    let out = h3(&["no-credit", &port, "flood.test", "/flood", "20"]);
    // The guest floods for 60 s, the client keeps the connection alive:
    // only the write timeout ends the stream.
    assert!(out.get("reset").is_some(), "{out}");
    assert!(
        out["terminated"].is_null(),
        "the connection lives on: {out}"
    );
    assert!(out["length"].as_u64().unwrap() <= 1024, "{out}");
    let responses = requests(&server, "localhost", json!([get("localhost", "/")]));
    assert_eq!(status(&responses[0]), 200);
}

#[test]
fn floods_of_garbage_and_of_initials_hold_bounded_memory_and_handshakes() {
    let server = serve_with("", &["--admin-addr", "127.0.0.1:0"]);
    let port = server.addr.port().to_string();
    // Warm: the first requests' allocations are not the flood's.
    let responses = requests(&server, "localhost", json!([get("localhost", "/")]));
    assert_eq!(status(&responses[0]), 200);
    let before = server.status_kib("VmRSS");
    h3(&["flood", &port, "5000", "300"]);
    let metrics = admin_metrics(&server);
    let open = support::sample(&metrics, "catshost_connections_open").unwrap();
    let retried = support::sample(
        &metrics,
        "catshost_connections_closed_total{reason=\"quic_retry\"}",
    )
    .unwrap_or(0.0);
    // Past 16 handshakes in progress, the others were sent a Retry, which
    // a flood from sockets that never answer does not come back from.
    assert!(open <= 17.0, "{open} connections open\n{metrics}");
    assert!(retried >= 200.0, "{retried} retries\n{metrics}");
    let responses = requests(&server, "localhost", json!([get("localhost", "/")]));
    assert_eq!(status(&responses[0]), 200, "a good client is served");
    let grown = server.status_kib("VmRSS").saturating_sub(before);
    assert!(grown < 32 << 10, "RSS grew by {grown} KiB");
}

/// The admin listener's /metrics.
fn admin_metrics(server: &Process) -> String {
    let output = Command::new("curl")
        .args(["-s", &format!("http://{}/metrics", server.admin_addr())])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_serves_http3_beside_tcp_and_refuses_it_without_tls() {
    let engine = catshost::Engine::new().unwrap();
    let demo = || engine.load_bytes("demo", catshost::DEMO_COMPONENT).unwrap();
    let (tls, _, _) = catshost::Tls::self_signed(catshost::config::HttpVersions::Both).unwrap();
    let mut builder = catshost::Server::builder();
    builder.http3(true);
    let server = support::TestServer::serve(builder.build(demo()), Some(tls)).await;
    let spec = json!({ "port": server.addr.port(), "requests": [get("localhost", "/lib")] });
    let out = tokio::task::spawn_blocking(move || h3(&["requests", &spec.to_string()]))
        .await
        .unwrap();
    let response = &out["responses"][0];
    assert_eq!(status(response), 200, "{out}");
    assert!(
        response["body"]
            .as_str()
            .unwrap()
            .contains("protocol: HTTP/3"),
        "{out}"
    );
    server.stop().await;

    let refused = builder
        .build(demo())
        .serve_clear("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("HTTP/3 needs TLS"),
        "{refused}"
    );
}

#[test]
fn a_reload_s_new_certificate_applies_to_quic_too() {
    let dir = folder();
    let server = serve_in(&dir, "", &[]);
    let port = server.addr.port().to_string();
    let shop = dir.join("shop.pem");
    let shown = |pem: &Path| h3(&["cert", &port, "shop.test", pem.to_str().unwrap()]);
    assert_eq!(shown(&shop)["same"], true, "the shop's certificate by SNI");
    let old = dir.join("old-shop.pem");
    std::fs::copy(&shop, &old).unwrap();

    let (cert, key) = certificate(&["shop.test"]);
    write(&dir, "shop.pem", cert.as_bytes());
    write(&dir, "shop.key", key.as_bytes());
    server.signal(libc::SIGHUP);
    server
        .wait_for_line(Duration::from_secs(30), |l| l.contains("config reloaded"))
        .expect("the reload");
    assert_eq!(shown(&shop)["same"], true, "the new certificate over QUIC");
    assert_eq!(shown(&old)["same"], false);
}

#[test]
fn what_http3_connections_hold_is_given_back_when_they_end() {
    let server = serve_with("", &["--admin-addr", "127.0.0.1:0"]);
    let responses = requests(
        &server,
        "localhost",
        json!([
            post("p2.test", "/", 1 << 20),
            post("p3.test", "/echo", 1 << 20)
        ]),
    );
    assert!(responses.iter().all(|r| status(r) == 200), "{responses:?}");
    // The client has closed its connection: its permit, its client slot
    // and its streams' tasks are given back.
    let open = wait_for(|| {
        let metrics = admin_metrics(&server);
        support::sample(&metrics, "catshost_connections_open").filter(|&open| open == 0.0)
    });
    assert_eq!(open, Some(0.0), "{}", admin_metrics(&server));
}
