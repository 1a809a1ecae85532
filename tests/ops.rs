//! Operating catshost: the access log, guest output as events, JSON logs,
//! the admin endpoints and the metrics they serve.

mod support;

use std::time::{Duration, Instant};

use http::{Request, StatusCode, Version};
use serde_json::Value;
use support::{
    Client, Process, Raw, TestServer, catshost, fixture, fixture_file, get, sample, wait_for_sample,
};

/// The JSON log events on `process`'s stderr with `target`.
fn events(process: &Process, target: &str) -> Vec<Value> {
    process
        .stderr()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["target"] == target)
        .collect()
}

/// Waits until `process` has logged at least `n` events with `target`.
fn wait_for_events(process: &Process, target: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = events(process, target);
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{n} {target} events expected, stderr:\n{}",
            process.stderr().join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_one_json_access_line_with_every_field() {
    let server = Process::serve(&[
        "--log-format",
        "json",
        fixture_file("echo").to_str().unwrap(),
    ]);
    let mut h1 = Client::connect(server.addr, Version::HTTP_11).await;
    let echoed = h1.request("POST", "/upload?token=secret", b"hello").await;
    assert_eq!(echoed.body, "hello");
    let answer = get(server.addr, Version::HTTP_2, "/two").await;
    assert_eq!(answer.status, StatusCode::OK);

    let lines = wait_for_events(&server, "catshost::access", 2);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let post = lines.iter().find(|l| l["method"] == "POST").unwrap();
    assert_eq!(post["level"], "INFO");
    // The path without the query: query strings often carry secrets.
    assert_eq!(post["path"], "/upload");
    assert_eq!(post["status"], 200);
    assert_eq!(post["protocol"], "HTTP/1.1");
    assert_eq!(post["bytes_in"], 5);
    assert_eq!(post["bytes_out"], 5);
    assert_eq!(post["complete"], true);
    assert_eq!(post["tenant"], "default");
    assert!(post["duration_ms"].as_f64().unwrap() > 0.0, "{post}");
    assert!(
        post["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{post}"
    );
    let get = lines.iter().find(|l| l["method"] == "GET").unwrap();
    assert_eq!(get["protocol"], "HTTP/2");
    assert_eq!(get["path"], "/two");
    assert_ne!(get["request_id"], post["request_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_output_lines_are_events_with_request_id_and_tenant() {
    let server = Process::serve(&[
        "--log-format",
        "json",
        fixture_file("stdio").to_str().unwrap(),
    ]);
    for _ in 0..2 {
        let answer = get(server.addr, Version::HTTP_11, "/").await;
        assert_eq!(answer.body, "logged\n");
    }
    // Each request's output is logged before its access line.
    let access = wait_for_events(&server, "catshost::access", 2);
    let output = events(&server, "catshost::guest");
    assert_eq!(output.len(), 6, "{output:#?}");
    for request in &access {
        let id = &request["request_id"];
        let mut lines: Vec<_> = output
            .iter()
            .filter(|e| &e["request_id"] == id)
            .map(|e| {
                assert_eq!(e["tenant"], "default");
                format!(
                    "{} {}",
                    e["stream"].as_str().unwrap(),
                    e["message"].as_str().unwrap()
                )
            })
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "stderr a line on stderr",
                "stdout first line on stdout",
                // Written when the guest drops its stream.
                "stdout unfinished line on stdout",
            ],
            "request {id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_log_budget_has_its_lines_dropped_and_counted() {
    let server = Process::serve(&[
        "--log-format",
        "json",
        "--max-log-lines-per-second",
        "5",
        fixture_file("stdio").to_str().unwrap(),
    ]);
    // 20 requests of 3 lines each, as fast as they go; then, a second
    // later, one more, whose first line brings the count of those dropped.
    let started = Instant::now();
    let mut client = Client::connect(server.addr, Version::HTTP_11).await;
    for _ in 0..20 {
        assert_eq!(client.request("GET", "/", b"").await.body, "logged\n");
    }
    let flood = started.elapsed();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.request("GET", "/", b"").await;
    wait_for_events(&server, "catshost::access", 21);
    let guest = events(&server, "catshost::guest");
    let (counts, lines): (Vec<_>, Vec<_>) = guest.iter().partition(|e| e["level"] == "WARN");
    let dropped: u64 = counts.iter().map(|e| e["dropped"].as_u64().unwrap()).sum();
    assert_eq!(lines.len() as u64 + dropped, 63, "{guest:#?}");
    // A burst of 5, 5 a second during the flood, and the last 3.
    let allowed = 5 + (5.0 * flood.as_secs_f64()).ceil() as usize + 3;
    assert!(
        lines.len() <= allowed,
        "{} lines logged in {flood:?}, at most {allowed} allowed",
        lines.len()
    );
    assert!(dropped > 0, "{guest:#?}");
}

/// Issue 26, item 7: the host's warning about a guest's fault is the
/// tenant's doing, so it comes out of the tenant's log budget: a tenant
/// whose guest fails on every request cannot fill the log for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_about_a_tenants_faults_come_out_of_its_log_budget() {
    let server = Process::serve(&[
        "--log-format",
        "json",
        "--max-log-lines-per-second",
        "5",
        fixture_file("trap").to_str().unwrap(),
    ]);
    let started = Instant::now();
    let mut client = Client::connect(server.addr, Version::HTTP_11).await;
    for _ in 0..40 {
        assert_eq!(client.request("GET", "/", b"").await.status, 500);
    }
    let flood = started.elapsed();
    wait_for_events(&server, "catshost::access", 40);
    let warned = events(&server, "catshost::http::error")
        .into_iter()
        .filter(|e| e["message"] == "guest failed")
        .count();
    let allowed = 5 + (5.0 * flood.as_secs_f64()).ceil() as usize;
    assert!(
        warned >= 1 && warned <= allowed,
        "{warned} warnings logged for 40 faults in {flood:?}, at most {allowed} allowed"
    );
    // What was dropped is counted, in the tenant's own warning.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.request("GET", "/", b"").await;
    let reported = wait_for_events(&server, "catshost::guest", 1);
    assert!(
        reported.iter().any(|e| e["dropped"].as_u64() > Some(0)),
        "{reported:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_carry_the_same_fields() {
    let server = Process::serve(&[fixture_file("stdio").to_str().unwrap()]);
    get(server.addr, Version::HTTP_11, "/x").await;
    let line = server
        .wait_for_line(Duration::from_secs(10), |l| l.contains("catshost::access"))
        .unwrap();
    for field in [
        "method=GET",
        "path=\"/x\"",
        "status=200",
        "protocol=\"HTTP/1.1\"",
        "tenant=\"default\"",
        "client=127.0.0.1:",
    ] {
        assert!(line.contains(field), "{field} not in {line}");
    }
    let guest = server
        .wait_for_line(Duration::from_secs(10), |l| l.contains("a line on stderr"))
        .unwrap();
    assert!(guest.contains("catshost::guest"), "{guest}");
    assert!(guest.contains("stream=\"stderr\""), "{guest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_runs_on_after_its_response_is_sent() {
    let server = Process::serve(&[fixture_file("after").to_str().unwrap()]);
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let answer = get(server.addr, version, "/").await;
        assert_eq!(answer.status, StatusCode::OK, "{version:?}");
        assert_eq!(answer.body, "answered\n", "{version:?}");
    }
    // One line per request: neither guest was stopped with its response.
    let lines = || {
        server
            .stderr()
            .iter()
            .filter(|l| l.contains("after the response"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lines() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines(), 2, "{:#?}", server.stderr());
}

#[test]
fn no_access_log_writes_no_access_lines() {
    let mut server = Process::serve(&["--no-access-log", fixture_file("hello").to_str().unwrap()]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(get(server.addr, Version::HTTP_11, "/"));
    assert_eq!(answer.status, StatusCode::OK);
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).unwrap().success());
    // Every line the process wrote before its stop line has been read.
    assert!(
        server
            .wait_for_line(Duration::from_secs(10), |l| l.contains("stop requested"))
            .is_some()
    );
    let stderr = server.stderr();
    assert!(
        !stderr.iter().any(|l| l.contains("catshost::access")),
        "{stderr:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_serve_health_readiness_and_metrics_that_move() {
    let server = Process::serve(&[
        "--admin-addr",
        "127.0.0.1:0",
        fixture_file("trap").to_str().unwrap(),
    ]);
    let admin = server.admin_addr();
    let health = get(admin, Version::HTTP_11, "/healthz").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "ok\n")
    );
    let ready = get(admin, Version::HTTP_11, "/readyz").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (StatusCode::OK, "ready\n")
    );
    assert_eq!(
        get(admin, Version::HTTP_11, "/nothing").await.status,
        StatusCode::NOT_FOUND
    );

    let before = get(admin, Version::HTTP_11, "/metrics").await;
    assert_eq!(
        before.headers[http::header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let ok = r#"catshost_requests_total{tenant="default",status="200",protocol="HTTP/1.1"}"#;
    let failed = r#"catshost_requests_total{tenant="default",status="500",protocol="HTTP/1.1"}"#;
    let traps = r#"catshost_guest_faults_total{tenant="default",kind="trap"}"#;
    assert_eq!(sample(&before.body, ok), None, "{}", before.body);
    assert!(
        before.body.contains("catshost_build_info{"),
        "{}",
        before.body
    );

    let mut client = Client::connect(server.addr, Version::HTTP_11).await;
    for _ in 0..3 {
        let answer = client.request("GET", "/ok", b"").await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let answer = client.request("GET", "/trap", b"").await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);

    // A request is counted once its response has ended: just after the
    // client read it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let after = get(admin, Version::HTTP_11, "/metrics").await.body;
        if sample(&after, failed) == Some(1.0) || Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sample(&after, ok), Some(3.0), "{after}");
    assert_eq!(sample(&after, failed), Some(1.0), "{after}");
    assert_eq!(sample(&after, traps), Some(1.0), "{after}");
    let latency =
        r#"catshost_request_duration_seconds_count{tenant="default",protocol="HTTP/1.1"}"#;
    assert_eq!(sample(&after, latency), Some(4.0), "{after}");
    let instances = r#"catshost_instance_creation_seconds_count{tenant="default"}"#;
    assert_eq!(sample(&after, instances), Some(4.0), "{after}");
    // This test's client connection, and the scrape's own is not counted:
    // the admin listener is not the server's.
    assert_eq!(
        sample(&after, "catshost_connections_open"),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, r#"catshost_requests_in_flight{tenant="default"}"#),
        Some(0.0),
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_while_stopping_and_healthz_stays_up() {
    let mut server = Process::serve(&[
        "--admin-addr",
        "127.0.0.1:0",
        fixture_file("slow").to_str().unwrap(),
    ]);
    let admin = server.admin_addr();
    // A request that takes five seconds keeps the server draining.
    let mut client = Client::connect(server.addr, Version::HTTP_11).await;
    let response = client.send("GET", "/5000", b"").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = get(admin, Version::HTTP_11, "/metrics").await.body;
    assert_eq!(
        sample(&metrics, r#"catshost_requests_in_flight{tenant="default"}"#),
        Some(1.0),
        "{metrics}"
    );

    server.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = get(admin, Version::HTTP_11, "/readyz").await;
        if ready.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(ready.body, "stopping\n");
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never turned 503");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let health = get(admin, Version::HTTP_11, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    // The request in flight still finishes whole.
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"started\nfinished\n");
    let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(status.unwrap().success());
}

#[test]
fn a_taken_or_bad_admin_address_is_refused_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = catshost()
        .args(["serve", "--addr", "127.0.0.1:0", "--admin-addr", &addr])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("failed to listen on --admin-addr {addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("catshost: serving"), "{stderr}");

    let output = catshost()
        .args(["serve", "--admin-addr", "localhost"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HOST:PORT"), "{stderr}");
}

fn admin_get(server: &catshost::Server, method: &str, path: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .unwrap();
    let response = catshost::admin::respond(server, &req);
    let status = response.status();
    let body = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(
        response.into_body(),
    ))
    .unwrap()
    .unwrap()
    .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_until_the_listener_is_bound() {
    let engine = catshost::Engine::new().unwrap();
    let handler = engine.load_bytes("hello", &fixture("hello")).unwrap();
    let server = catshost::Server::builder().build(handler);
    assert_eq!(
        admin_get(&server, "GET", "/readyz"),
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n".into())
    );
    assert_eq!(admin_get(&server, "GET", "/healthz").0, StatusCode::OK);
    assert_eq!(
        admin_get(&server, "POST", "/healthz").0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let running = TestServer::serve(server.clone(), None).await;
    assert_eq!(admin_get(&server, "GET", "/readyz").0, StatusCode::OK);
    running.stop().await;
    assert_eq!(
        admin_get(&server, "GET", "/readyz"),
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_rejections_tenants_and_failed_handshakes_are_counted() {
    let mut builder = catshost::Server::builder();
    builder.max_concurrent_requests(1).tenant("shop");
    let server = TestServer::start(&fixture("slow"), &builder).await;
    let mut busy = Client::connect(server.addr, Version::HTTP_11).await;
    // Held for 10 s: far longer than the next request takes to be refused.
    let held = busy.send("GET", "/10000", b"").await.unwrap();
    let refused = get(server.addr, Version::HTTP_11, "/").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    drop(held);
    drop(busy);
    let rejected = r#"catshost_admission_rejections_total{tenant="shop",reason="concurrency"}"#;
    wait_for_sample(
        server.server.metrics(),
        rejected,
        1.0,
        Duration::from_secs(10),
    )
    .await;
    let refused = r#"catshost_requests_total{tenant="shop",status="503",protocol="HTTP/1.1"}"#;
    wait_for_sample(
        server.server.metrics(),
        refused,
        1.0,
        Duration::from_secs(10),
    )
    .await;
    server.stop().await;

    // Plaintext on a TLS port fails the handshake.
    let (tls, _, _) = catshost::Tls::self_signed(Default::default()).unwrap();
    let engine = catshost::Engine::new().unwrap();
    let handler = engine.load_bytes("hello", &fixture("hello")).unwrap();
    let server = TestServer::serve(catshost::Server::builder().build(handler), Some(tls)).await;
    let mut tcp = Raw::send(server.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(tcp.closed_within(Duration::from_secs(5)).await);
    let failed = r#"catshost_tls_handshake_failures_total{reason="error"}"#;
    wait_for_sample(
        server.server.metrics(),
        failed,
        1.0,
        Duration::from_secs(10),
    )
    .await;
    server.stop().await;
}
