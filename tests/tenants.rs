//! Many tenants on one server: routing by host and path, a config file,
//! isolation of limits, environment, outbound HTTP and certificates, and
//! reloading without failed requests.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use catshost::Tenant;
use catshost::config::TenantLimits;
use catshost::routing::Route;
use http::{StatusCode, Version};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use support::{
    Client, Process, TestServer, built, catshost, fixture, folder, get_host, inherited_listener,
    json_lines, raw_status,
};
use tokio::net::TcpStream;

fn tenant(name: &str, component: &[u8], routes: &[&str]) -> Tenant {
    let engine = catshost::Engine::new().unwrap();
    Tenant {
        name: name.into(),
        component: engine.load_bytes(name, component).unwrap().into(),
        routes: routes.iter().map(|r| Route::parse(r).unwrap()).collect(),
        limits: TenantLimits::default(),
        access: Default::default(),
    }
}

#[tokio::test]
async fn requests_go_to_the_most_specific_tenant_with_their_path_unchanged() {
    let server = catshost::Server::builder()
        .build_tenants(vec![
            tenant("demo", catshost::DEMO_COMPONENT, &["demo.test", "/demo"]),
            tenant("hello", &fixture("hello"), &["*.hello.test", "/"]),
            tenant("faults", &fixture("faults"), &["x.hello.test/ok"]),
        ])
        .unwrap();
    let server = TestServer::serve(server, None).await;
    let addr = server.addr;
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let demo = get_host(addr, version, "demo.test", "/x/y?q=1").await;
        assert!(demo.body.contains("path: /x/y?q=1"), "{}", demo.body);
        // A prefix route hands the guest the whole original path.
        let demo = get_host(addr, version, "other.test:8080", "/demo/abc").await;
        assert!(demo.body.contains("path: /demo/abc"), "{}", demo.body);
        let hello = get_host(addr, version, "a.hello.test", "/ok").await;
        assert_eq!(hello.body, "hello from wasm\n");
        // A named host with a prefix beats the wildcard.
        let faults = get_host(addr, version, "X.Hello.Test", "/ok").await;
        assert_eq!(faults.body, "ok\n");
        // `/demo` covers whole segments only.
        let hello = get_host(addr, version, "other.test", "/demonstration").await;
        assert_eq!(hello.body, "hello from wasm\n");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_request_no_route_matches_gets_404_and_a_bad_replacement_changes_nothing() {
    let server = catshost::Server::builder()
        .build_tenants(vec![tenant("hello", &fixture("hello"), &["hello.test"])])
        .unwrap();
    let server = TestServer::serve(server, None).await;
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let missing = get_host(server.addr, version, "other.test", "/").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
        assert!(
            missing.body.starts_with("404 Not Found"),
            "{}",
            missing.body
        );
    }
    let metrics = server.server.metrics().encode();
    assert!(
        metrics.contains(r#"catshost_requests_total{tenant="-",status="404",protocol="HTTP/2"} 1"#),
        "{metrics}"
    );

    // Two tenants with the same route: refused, and the old ones serve on.
    let error = server
        .server
        .replace_tenants(vec![
            tenant("a", &fixture("hello"), &["/x"]),
            tenant("b", &fixture("faults"), &["/x/"]),
        ])
        .unwrap_err();
    assert_eq!((error.first.as_str(), error.second.as_str()), ("a", "b"));
    let hello = get_host(server.addr, Version::HTTP_11, "hello.test", "/").await;
    assert_eq!(hello.body, "hello from wasm\n");

    // A good replacement: new requests get the new tenants at once.
    server
        .server
        .replace_tenants(vec![tenant("faults", &fixture("faults"), &["hello.test"])])
        .unwrap();
    let faults = get_host(server.addr, Version::HTTP_11, "hello.test", "/ok").await;
    assert_eq!(faults.body, "ok\n");
    server.stop().await;
}

#[tokio::test]
async fn a_missing_doubled_or_malformed_host_is_refused_before_routing() {
    let server = catshost::Server::builder()
        .build_tenants(vec![tenant(
            "hello",
            &fixture("hello"),
            &["*.example.com", "/"],
        )])
        .unwrap();
    let server = TestServer::serve(server, None).await;
    let cases = [
        (
            "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
            "HTTP/1.1 200 OK",
        ),
        ("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (
            "GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "GET / HTTP/1.1\r\nHost: x, a.example.com\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "GET / HTTP/1.1\r\nHost: evil/.example.com\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "GET / HTTP/1.1\r\nHost: user@a.example.com\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        // An absolute-form target names the host itself.
        (
            "GET http://a.example.com/ HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
            "HTTP/1.1 200 OK",
        ),
    ];
    for (head, want) in cases {
        assert_eq!(raw_status(server.addr, head).await, want, "{head:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_tenant_gets_503_while_the_others_are_served() {
    let mut noisy = tenant("noisy", &fixture("faults"), &["noisy.test"]);
    noisy.limits.max_concurrent_requests = 2;
    noisy.limits.instance.request_timeout = Duration::from_secs(20);
    let server = catshost::Server::builder()
        .max_tenant_workers(Some(1))
        .shutdown_timeout(Duration::ZERO)
        .build_tenants(vec![
            noisy,
            tenant("quiet", &fixture("hello"), &["quiet.test"]),
        ])
        .unwrap();
    let server = TestServer::serve(server, None).await;
    let addr = server.addr;
    // Two guests that compute forever take every permit of their tenant.
    let loops: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(
                async move { get_host(addr, Version::HTTP_11, "noisy.test", "/loop").await },
            )
        })
        .collect();
    while server.server.in_flight().requests < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = get_host(addr, Version::HTTP_11, "noisy.test", "/ok").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    for _ in 0..20 {
        let quiet = get_host(addr, Version::HTTP_2, "quiet.test", "/").await;
        assert_eq!(
            (quiet.status, quiet.body.as_str()),
            (StatusCode::OK, "hello from wasm\n")
        );
    }
    let metrics = server.server.metrics().encode();
    assert!(
        metrics.contains(
            r#"catshost_admission_rejections_total{tenant="noisy",reason="concurrency"} 1"#
        ),
        "{metrics}"
    );
    // Replaced by the same tenants, the noisy one keeps its permits: its
    // two loops still hold them. (They also keep running, and stop at the
    // stop below, though the handlers that started them are gone.)
    let mut noisy = tenant("noisy", &fixture("faults"), &["noisy.test"]);
    noisy.limits.max_concurrent_requests = 2;
    server
        .server
        .replace_tenants(vec![
            noisy,
            tenant("quiet", &fixture("hello"), &["quiet.test"]),
        ])
        .unwrap();
    let refused = get_host(addr, Version::HTTP_11, "noisy.test", "/ok").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    server.server.stop().switch();

    for task in loops {
        // Cancelled by the stop: the server gives up on them.
        let _ = task.await;
    }
    server.finished().await.unwrap();
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_gives_each_tenant_its_environment_and_names_it_in_logs() {
    let dir = folder();
    let files = built("python", "files");
    std::fs::copy(&files, dir.join("files.wasm")).unwrap();
    write(&dir, "stdio.wasm", &fixture("stdio"));
    let config = write(
        &dir,
        "catshost.toml",
        br#"
[server]
addr = "127.0.0.1:0"

[defaults]
preload = true

[[tenant]]
name = "alpha"
component = "files.wasm"
routes = ["alpha.test"]
env = { GREETING = "hello alpha" }

[[tenant]]
name = "beta"
component = "files.wasm"
routes = ["beta.test"]
env = { GREETING = "hello beta" }

[[tenant]]
name = "gamma"
component = "stdio.wasm"
routes = ["/"]
"#,
    );
    let mut command = catshost();
    command
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config);
    let server = Process::spawn(command);
    let addr = server.addr;
    let alpha = get_host(addr, Version::HTTP_11, "alpha.test", "/env/GREETING").await;
    assert_eq!(
        (alpha.status, alpha.body.as_str()),
        (StatusCode::OK, "hello alpha\n")
    );
    let beta = get_host(addr, Version::HTTP_2, "beta.test", "/env/GREETING").await;
    assert_eq!(
        (beta.status, beta.body.as_str()),
        (StatusCode::OK, "hello beta\n")
    );
    let home = get_host(addr, Version::HTTP_11, "beta.test", "/env/HOME").await;
    assert_eq!(home.status, StatusCode::NOT_FOUND);
    let gamma = get_host(addr, Version::HTTP_11, "gamma.test", "/").await;
    assert_eq!(gamma.status, StatusCode::OK);

    // A request's access line is written when hyper drops its response
    // body, which may come after the client has read it: wait for the four.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines = json_lines(&server);
        let written = lines
            .iter()
            .filter(|l| l["target"] == "catshost::access")
            .count();
        if written >= 4 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let access: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["target"] == "catshost::access")
        .map(|l| (l["tenant"].as_str().unwrap(), l["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        access,
        [
            ("alpha", "/env/GREETING"),
            ("beta", "/env/GREETING"),
            ("beta", "/env/HOME"),
            ("gamma", "/")
        ]
    );
    let guest = lines
        .iter()
        .find(|l| l["target"] == "catshost::guest")
        .expect("a guest output line");
    assert_eq!(guest["tenant"], "gamma");
    // One component under two names is compiled once.
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "tenants loaded" && l["tenants"] == 3 && l["components"] == 2),
        "{lines:?}"
    );
}

#[test]
fn bad_config_files_are_refused_with_their_location_before_anything_is_bound() {
    let dir = folder();
    write(&dir, "hello.wasm", &fixture("hello"));
    write(&dir, "junk.wasm", b"\0asm\x0d\0\x01\0 not really");
    let tenant = |name: &str, component: &str, routes: &str| {
        format!("[[tenant]]\nname = \"{name}\"\ncomponent = \"{component}\"\nroutes = {routes}\n")
    };
    let cases = [
        (
            format!(
                "{}{}",
                tenant("a", "hello.wasm", r#"["a.test", "/x"]"#),
                tenant("b", "hello.wasm", r#"["/x/"]"#)
            ),
            "catshost.toml:8:11: tenant 'b': the route '/x' is also tenant 'a''s",
        ),
        (
            format!(
                "[server]\naddr = \"127.0.0.1:0\"\nworkers = 4\n{}",
                tenant("a", "hello.wasm", r#"["/"]"#)
            ),
            "catshost.toml:3:1: unknown field `workers`",
        ),
        (
            tenant("a", "missing.wasm", r#"["/"]"#),
            "catshost.toml:3:13: tenant 'a': the component",
        ),
        (
            format!(
                "{}max_memory = \"lots\"\n",
                tenant("a", "hello.wasm", r#"["/"]"#)
            ),
            "catshost.toml:5:14: invalid size 'lots'",
        ),
        (
            format!("{}preload = true\n", tenant("a", "junk.wasm", r#"["/"]"#)),
            "catshost.toml:3:13: tenant 'a': the component cannot be served",
        ),
    ];
    for (text, want) in cases {
        let config = write(&dir, "catshost.toml", text.as_bytes());
        let output = catshost()
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(want), "want {want:?} in:\n{stderr}");
        assert!(!stderr.contains("catshost: serving"), "{stderr}");
    }

    // Flags that are settings of the file cannot be given with it.
    let output = catshost()
        .args(["serve", "--config", "x.toml", "--max-memory", "1MiB"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot be used with"));
}

/// An upstream server on 127.0.0.1 that answers "upstream says hi".
async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(Bytes::from("upstream says hi")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_go_only_where_each_tenant_allows() {
    let upstream = upstream().await;
    let dir = folder();
    std::fs::copy(built("c", "fetch"), dir.join("fetch.wasm")).unwrap();
    let port = upstream.port();
    let config = write(
        &dir,
        "catshost.toml",
        format!(
            r#"
[server]
addr = "127.0.0.1:0"

[[tenant]]
name = "open"
component = "fetch.wasm"
routes = ["open.test"]
outbound = ["http://127.0.0.1:{port}", "http://localhost:{port}"]

[[tenant]]
name = "closed"
component = "fetch.wasm"
routes = ["closed.test"]
"#
        )
        .as_bytes(),
    );
    let mut command = catshost();
    command
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config);
    let server = Process::spawn(command);
    let fetch = |host: &'static str, url: String| {
        let addr = server.addr;
        async move { get_host(addr, Version::HTTP_11, host, &format!("/fetch?url={url}")).await }
    };
    let allowed = fetch("open.test", format!("http://127.0.0.1:{port}/x")).await;
    assert_eq!(
        (allowed.status, allowed.body.as_str()),
        (StatusCode::OK, "upstream 200: upstream says hi")
    );
    let cases = [
        // Another tenant: nothing is allowed.
        (
            "closed.test",
            format!("http://127.0.0.1:{port}/x"),
            "HTTP-request-denied",
        ),
        // Another port, another scheme.
        (
            "open.test",
            format!("http://127.0.0.1:{}/x", port.wrapping_add(1)),
            "HTTP-request-denied",
        ),
        (
            "open.test",
            format!("https://127.0.0.1:{port}/x"),
            "HTTP-request-denied",
        ),
        // Listed by name, but the name leads to loopback.
        (
            "open.test",
            format!("http://localhost:{port}/x"),
            "destination-IP-prohibited",
        ),
    ];
    for (host, url, code) in cases {
        let denied = fetch(host, url.clone()).await;
        assert_eq!(
            (denied.status, denied.body.as_str()),
            (StatusCode::BAD_GATEWAY, format!("error: {code}\n").as_str()),
            "{host} {url}"
        );
    }
    // Each denial is logged (the log may trail the response a little).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = json_lines(&server);
        let denials: Vec<&str> = lines
            .iter()
            .filter(|l| l["target"] == "catshost::outbound" && l["level"] == "WARN")
            .map(|l| l["tenant"].as_str().unwrap())
            .collect();
        if denials.len() == 4 || Instant::now() > deadline {
            assert_eq!(denials, ["closed", "open", "open", "open"], "{lines:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the first component of the SIGHUP test answers, and how the new
/// one's answers start.
const OLD_ANSWER: &str = "hello from wasm\n";
const NEW_ANSWER: &str = "catshost demo";

/// What a [`load`] got so far.
#[derive(Default)]
struct Tally {
    /// Answers from the first component, and from the new one.
    old: AtomicU64,
    new: AtomicU64,
    /// Answers from the first component on a connection that already had
    /// one from the new.
    old_after_new: AtomicU64,
    /// Anything else: an error, another status or body.
    failures: Mutex<Vec<String>>,
    /// The body of the last answer.
    last: Mutex<String>,
    /// Asks the load to stop.
    stop: AtomicBool,
}

/// Sends GET / with Host `host` over `connections` keep-alive connections,
/// counting answers in `tally`. A connection stops at its first failure, or
/// once `tally.stop` is set and it has had an answer from the new component.
async fn load(addr: SocketAddr, host: &'static str, connections: usize, tally: Arc<Tally>) {
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let tally = tally.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr, Version::HTTP_11)
                .await
                .with_authority(host);
            let mut had_new = false;
            while !(had_new && tally.stop.load(Ordering::Relaxed)) {
                match client.try_request("GET", "/", b"").await {
                    Ok(answer) if answer.status == StatusCode::OK && answer.body == OLD_ANSWER => {
                        let count = if had_new {
                            &tally.old_after_new
                        } else {
                            &tally.old
                        };
                        count.fetch_add(1, Ordering::Relaxed);
                        *tally.last.lock().unwrap() = answer.body;
                    }
                    Ok(answer)
                        if answer.status == StatusCode::OK
                            && answer.body.starts_with(NEW_ANSWER) =>
                    {
                        had_new = true;
                        tally.new.fetch_add(1, Ordering::Relaxed);
                        *tally.last.lock().unwrap() = answer.body;
                    }
                    other => {
                        tally.failures.lock().unwrap().push(format!("{other:?}"));
                        return;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Waits until `done`, checking every 10 ms; panics after 60 s.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "waited in vain for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for(server: &Process, message: &str, after: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = json_lines(server);
        if let Some(line) = lines.iter().skip(after).find(|l| l["message"] == message) {
            return line.clone();
        }
        assert!(Instant::now() < deadline, "no '{message}' in {lines:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config_of(component: &str, route: &str) -> String {
    format!(
        "[server]\naddr = \"127.0.0.1:0\"\n\n[[tenant]]\nname = \"site\"\ncomponent = \"{component}\"\nroutes = [\"{route}\"]\npreload = true\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_a_component_under_load_without_a_failed_request() {
    let dir = folder();
    write(&dir, "site.wasm", &fixture("hello"));
    let config = write(
        &dir,
        "catshost.toml",
        config_of("site.wasm", "site.test").as_bytes(),
    );
    let mut command = catshost();
    command
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config);
    let server = Process::spawn(command);
    let tally = Arc::new(Tally::default());
    let connections = 8;
    let load = tokio::spawn(load(server.addr, "site.test", connections, tally.clone()));
    // Swapped under load: once the first component has answered a few.
    eventually("the load to get under way", || {
        tally.old.load(Ordering::Relaxed) >= connections as u64
    })
    .await;

    // A new component under the same name, then SIGHUP.
    write(&dir, "site.wasm", catshost::DEMO_COMPONENT);
    let seen = json_lines(&server).len();
    server.signal(libc::SIGHUP);
    let reloaded = wait_for(&server, "config reloaded", seen).await;
    assert_eq!(reloaded["compiled"], 1);
    // The connections opened before the reload get the new component.
    eventually("an answer from the new component", || {
        tally.new.load(Ordering::Relaxed) > 0
    })
    .await;
    tally.stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(60), load)
        .await
        .expect("the load did not stop")
        .unwrap();
    let (old, new) = (
        tally.old.load(Ordering::Relaxed),
        tally.new.load(Ordering::Relaxed),
    );
    let failures = tally.failures.lock().unwrap().clone();
    assert_eq!(failures.len(), 0, "{old} + {new} answered: {failures:?}");
    assert!(old > 0 && new > 0, "{old} old and {new} new answers");
    assert_eq!(
        tally.old_after_new.load(Ordering::Relaxed),
        0,
        "the first component answered after the new one"
    );
    let last = tally.last.lock().unwrap().clone();
    assert!(last.starts_with(NEW_ANSWER), "{last}");

    // A config that fails is refused; the last good one serves on.
    write(
        &dir,
        "catshost.toml",
        config_of("missing.wasm", "site.test").as_bytes(),
    );
    let seen = json_lines(&server).len();
    server.signal(libc::SIGHUP);
    let failed = wait_for(
        &server,
        "config reload failed: the previous config keeps serving",
        seen,
    )
    .await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("catshost.toml:6:13"),
        "{failed}"
    );
    let demo = get_host(server.addr, Version::HTTP_11, "site.test", "/").await;
    assert!(demo.body.starts_with("catshost demo"), "{}", demo.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_when_the_config_file_changes() {
    let dir = folder();
    write(&dir, "hello.wasm", &fixture("hello"));
    let config = write(
        &dir,
        "catshost.toml",
        config_of("hello.wasm", "old.test").as_bytes(),
    );
    let mut command = catshost();
    command
        .args(["--log-format", "json", "serve", "--watch", "--config"])
        .arg(&config);
    let server = Process::spawn(command);
    let old = get_host(server.addr, Version::HTTP_11, "old.test", "/").await;
    assert_eq!(old.status, StatusCode::OK);

    let seen = json_lines(&server).len();
    write(
        &dir,
        "catshost.toml",
        config_of("hello.wasm", "new.test").as_bytes(),
    );
    let reloaded = wait_for(&server, "config reloaded", seen).await;
    // The component did not change: nothing was compiled.
    assert_eq!(reloaded["compiled"], 0);
    let new = get_host(server.addr, Version::HTTP_2, "new.test", "/").await;
    assert_eq!(new.status, StatusCode::OK);
    let old = get_host(server.addr, Version::HTTP_11, "old.test", "/").await;
    assert_eq!(old.status, StatusCode::NOT_FOUND);
}

/// A self-signed certificate for `names`: (cert PEM, key PEM).
fn certificate(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names).unwrap();
    (cert.pem(), signing_key.serialize_pem())
}

/// The leaf certificate the server shows a client asking for `name`; `None`
/// when the handshake fails.
async fn served_certificate(addr: SocketAddr, name: &str, trusted: &[&str]) -> Option<Vec<u8>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(trusted)));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = connector
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
        .ok()?;
    let (_, connection) = stream.get_ref();
    Some(connection.peer_certificates()?[0].to_vec())
}

/// A TLS client trusting the certificates `trusted` (PEM).
fn client_config(trusted: &[&str]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for pem in trusted {
        roots
            .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
            .unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_gets_its_own_certificate_by_sni() {
    let dir = folder();
    write(&dir, "hello.wasm", &fixture("hello"));
    let default = certificate(&["localhost"]);
    let shop = certificate(&["shop.test", "*.shop.test"]);
    for (name, (cert, key)) in [("default", &default), ("shop", &shop)] {
        write(&dir, &format!("{name}.pem"), cert.as_bytes());
        write(&dir, &format!("{name}.key"), key.as_bytes());
    }
    let config = write(
        &dir,
        "catshost.toml",
        br#"
[server]
addr = "127.0.0.1:0"
tls = { cert = "default.pem", key = "default.key" }

[[tenant]]
name = "shop"
component = "hello.wasm"
routes = ["shop.test", "*.shop.test"]
tls = { cert = "shop.pem", key = "shop.key" }

[[tenant]]
name = "other"
component = "hello.wasm"
routes = ["/"]
"#,
    );
    let mut command = catshost();
    command.args(["serve", "--config"]).arg(&config);
    let server = Process::spawn(command);
    let trusted = [default.0.as_str(), shop.0.as_str()];
    let cases = [
        ("shop.test", &shop),
        ("eu.shop.test", &shop),
        ("localhost", &default),
        ("elsewhere.test", &default),
    ];
    for (name, want) in cases {
        let served = served_certificate(server.addr, name, &trusted).await;
        // A name the served certificate does not cover fails verification.
        if name == "elsewhere.test" {
            assert_eq!(served, None, "{name}");
        } else {
            assert_eq!(served, Some(der(&want.0)), "{name}");
        }
    }

    // A request for a host of another certificate than its connection got
    // is misdirected (421); a host of the same certificate is served.
    let cases = [
        ("localhost", "shop.test", StatusCode::MISDIRECTED_REQUEST),
        ("shop.test", "localhost", StatusCode::MISDIRECTED_REQUEST),
        ("localhost", "localhost", StatusCode::OK),
        ("shop.test", "eu.shop.test", StatusCode::OK),
    ];
    for (sni, host, want) in cases {
        for version in [Version::HTTP_11, Version::HTTP_2] {
            let status = status_over_tls(server.addr, sni, host, version, &trusted).await;
            assert_eq!(status, want, "SNI {sni}, Host {host}, {version:?}");
        }
    }
}

/// The status of `GET /` for `host` on a TLS connection made for `sni`.
async fn status_over_tls(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    version: Version,
    trusted: &[&str],
) -> StatusCode {
    let mut config = client_config(trusted);
    config.alpn_protocols = vec![match version {
        Version::HTTP_2 => b"h2".to_vec(),
        _ => b"http/1.1".to_vec(),
    }];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = connector
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .unwrap();
    let mut client = Client::over(stream, version, "https", host).await;
    client.request("GET", "/", b"").await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_example_config_serves() {
    for (language, name) in [("wat", "hello"), ("wat", "upper"), ("c", "fetch")] {
        built(language, name);
    }
    // docs/catshost.toml listens on 127.0.0.1:8080; serve it on a socket
    // bound here instead.
    let (_listener, fd, _) = inherited_listener();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/catshost.toml");
    let mut command = catshost();
    command
        .args(["serve", "--listen-fd", &fd, "--config"])
        .arg(&example);
    let server = Process::spawn(command);
    let addr = server.addr;
    let shop = get_host(addr, Version::HTTP_11, "eu.shop.example.com", "/").await;
    assert_eq!(shop.body, "hello from wat\n");
    let shop = get_host(addr, Version::HTTP_2, "example.com", "/shop/cart").await;
    assert_eq!(shop.body, "hello from wat\n");
    let blog = get_host(addr, Version::HTTP_11, "blog.example.com", "/").await;
    assert_eq!(blog.status, StatusCode::OK);
    // Only 127.0.0.1:8080 is allowed, not this port.
    let url = format!("/tools/fetch?url=http://{addr}/blog/x");
    let tools = get_host(addr, Version::HTTP_11, "localhost", &url).await;
    assert_eq!(tools.body, "error: HTTP-request-denied\n");
    let nothing = get_host(addr, Version::HTTP_11, "example.org", "/").await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_a_broken_tenant_on_its_old_component_and_updates_the_others() {
    let dir = folder();
    write(&dir, "a.wasm", &fixture("hello"));
    write(&dir, "b.wasm", &fixture("hello"));
    let config = "[server]\naddr = \"127.0.0.1:0\"\n\n[defaults]\npreload = true\n\n\
        [[tenant]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"a.test\"]\n\n\
        [[tenant]]\nname = \"b\"\ncomponent = \"b.wasm\"\nroutes = [\"b.test\"]\n";
    let config = write(&dir, "catshost.toml", config.as_bytes());
    let mut command = catshost();
    command
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config);
    let server = Process::spawn(command);

    // a's new version is broken, b's is the demo. Before, the whole reload
    // failed and b stayed on its old component.
    write(&dir, "a.wasm", b"(component broken");
    write(&dir, "b.wasm", catshost::DEMO_COMPONENT);
    let seen = json_lines(&server).len();
    server.signal(libc::SIGHUP);
    let reloaded = wait_for(&server, "config reloaded", seen).await;
    assert_eq!(reloaded["stale"], 1, "{reloaded}");
    let failed = wait_for(
        &server,
        "tenant reload failed: it keeps serving its previous component",
        seen,
    )
    .await;
    assert_eq!(failed["tenant"], "a");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("catshost.toml:9:13"),
        "{failed}"
    );
    let a = get_host(server.addr, Version::HTTP_11, "a.test", "/").await;
    assert_eq!(a.body, "hello from wasm\n");
    let b = get_host(server.addr, Version::HTTP_11, "b.test", "/").await;
    assert!(b.body.starts_with("catshost demo"), "{}", b.body);
}

#[test]
fn a_broken_tenant_still_refuses_the_start() {
    let dir = folder();
    write(&dir, "a.wasm", b"(component broken");
    let config = write(
        &dir,
        "catshost.toml",
        config_of("a.wasm", "a.test").as_bytes(),
    );
    let output = catshost()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("tenant 'site': the component cannot be served"),
        "{stderr}"
    );
}
