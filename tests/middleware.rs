//! Middleware chains (WASI 0.3 `wasi:http/middleware` components in front of
//! a handler, one sandbox for the chain) and tenant-to-tenant calls
//! (`http://NAME.tenant.internal/`, served in process), with the Rust and
//! Python middleware of guest-examples/ over real sockets.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use catshost::config::{Origin, Outbound, WasiAccess};
use catshost::{Engine, GuestPre, Middleware, Reuse};
use http::{StatusCode, Version};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use support::{
    Client, Process, TestServer, built, catshost, folder, json_lines, pseudo_random, sample,
    wait_for_sample,
};

const BOTH: [Version; 2] = [Version::HTTP_11, Version::HTTP_2];
const TOKEN: &str = "s3cret";

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new().unwrap())
}

fn handler(language: &str, name: &str) -> GuestPre {
    engine().load_file(&built(language, name)).unwrap()
}

fn middleware(language: &str, name: &str) -> Middleware {
    engine()
        .load_middleware_file(&built(language, name))
        .unwrap()
}

/// `names` (Rust middleware examples) in front of the Rust `handler`.
fn chain(names: &[&str], handler_name: &str) -> GuestPre {
    let hops: Vec<_> = names.iter().map(|n| middleware("rust", n)).collect();
    engine()
        .chain(&hops, &handler("rust", handler_name))
        .unwrap()
}

/// The settings of a tenant whose guests see `AUTH_TOKEN` (and `env`) and
/// may call `outbound`.
fn builder(env: &[(&str, &str)], outbound: &[&str]) -> catshost::Builder {
    let mut builder = catshost::Server::builder();
    let mut vars = vec![("AUTH_TOKEN".to_string(), TOKEN.to_string())];
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    builder.access(WasiAccess {
        env: vars,
        outbound: Outbound::new(outbound.iter().map(|o| Origin::parse(o).unwrap()).collect()),
        ..WasiAccess::default()
    });
    builder
}

async fn serve(pre: GuestPre, builder: &catshost::Builder) -> TestServer {
    TestServer::serve(builder.build(pre), None).await
}

/// `request` with the bearer token when `token`.
async fn send(
    client: &mut Client,
    method: &str,
    path: &str,
    body: &[u8],
    token: bool,
) -> (StatusCode, http::HeaderMap, Bytes) {
    use http_body_util::BodyExt;
    let bearer = format!("Bearer {TOKEN}");
    let header = token.then_some(("authorization", bearer.as_str()));
    let response = client.send_with(method, path, body, header).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

fn middleware_seen(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all("x-middleware")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_runs_in_order_and_streams_a_mebibyte_through_two_hops() {
    let server = serve(chain(&["cors", "auth"], "echo-p3"), &builder(&[], &[])).await;
    let body = pseudo_random(1 << 20);
    for version in BOTH {
        let mut client = Client::connect(server.addr, version).await;
        let (status, headers, answer) = send(&mut client, "GET", "/", b"", true).await;
        assert_eq!(status, StatusCode::OK, "{version:?}");
        assert_eq!(answer, "hello from Rust (WASI 0.3)\n");
        // The response passes back through the hops in reverse: the inner
        // one (auth) adds its header first.
        assert_eq!(middleware_seen(&headers), ["auth", "cors"], "{version:?}");
        assert_eq!(headers["access-control-allow-origin"], "*");

        let (status, headers, echoed) = send(&mut client, "POST", "/echo", &body, true).await;
        assert_eq!(status, StatusCode::OK, "{version:?}");
        assert_eq!(middleware_seen(&headers), ["auth", "cors"]);
        assert!(echoed == body, "{version:?}: {} bytes back", echoed.len());
    }
    server.stop().await;
}

/// An upstream on 127.0.0.1 that counts its requests.
async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counted = counted.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(Bytes::from("counted")),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_middleware_answers_on_its_own_and_the_handler_never_runs() {
    // The handler (front) calls the upstream on /relay/...: the upstream's
    // count is how many times it ran.
    let (upstream, runs) = counting_upstream().await;
    let origin = format!("http://{upstream}");
    let server = serve(
        chain(&["cors", "auth"], "front"),
        &builder(&[("BACK", &origin)], &[&origin]),
    )
    .await;
    let mut client = Client::connect(server.addr, Version::HTTP_11).await;

    let (status, headers, body) = send(&mut client, "GET", "/relay/x", b"", false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:?}");
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(middleware_seen(&headers), ["auth", "cors"]);
    let preflight = client
        .send_with(
            "OPTIONS",
            "/relay/x",
            b"",
            Some(("access-control-request-method", "POST")),
        )
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(middleware_seen(preflight.headers()), ["cors"]);
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the handler ran");

    let (status, _, body) = send(&mut client, "GET", "/relay/x", b"", true).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(body, "relayed 200: counted");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_middleware_stands_in_front_of_a_rust_handler() {
    let python = middleware("python", "auth-p3");
    let pre = engine()
        .chain(&[python], &handler("rust", "echo-p3"))
        .unwrap();
    let server = serve(pre, &builder(&[], &[])).await;
    let body = pseudo_random(1 << 20);
    for version in BOTH {
        let mut client = Client::connect(server.addr, version).await;
        let (status, _, _) = send(&mut client, "GET", "/", b"", false).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, headers, echoed) = send(&mut client, "POST", "/echo", &body, true).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(middleware_seen(&headers), ["python-auth"]);
        assert!(echoed == body, "{version:?}: {} bytes back", echoed.len());
    }
    server.stop().await;
}

const CREATED: &str = r#"catshost_instance_creation_seconds_count{tenant="default"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_in_a_middleware_fails_that_request_and_the_chain_is_reused_as_one_instance() {
    let mut settings = builder(&[], &[]);
    settings.reuse(Reuse {
        max_instance_reuse_count: Some(2),
        max_instance_concurrent_reuse_count: Some(1),
        idle_instance_timeout: Duration::from_secs(30),
    });
    let server = serve(chain(&["pass", "cors"], "echo-p3"), &settings).await;
    let mut client = Client::connect(server.addr, Version::HTTP_11).await;
    // Four requests, two per instance: two instances of the whole chain
    // (three components each), not six.
    for _ in 0..4 {
        let (status, headers, _) = send(&mut client, "GET", "/", b"", false).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(middleware_seen(&headers), ["cors"]);
    }
    let metrics = server.server.metrics().encode();
    assert_eq!(sample(&metrics, CREATED), Some(2.0), "{metrics}");

    // The first hop traps: that request's 500, and the next is served.
    let (status, _, body) = send(&mut client, "GET", "/pass/trap", b"", false).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body:?}");
    let (status, _, _) = send(&mut client, "GET", "/", b"", false).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[test]
fn chains_that_do_not_fit_are_refused_naming_the_component_and_why() {
    let cors = middleware("rust", "cors");
    // A WASI 0.2 handler: no bridge between the two request types.
    let p2 = handler("rust", "hello");
    let error = engine()
        .chain(std::slice::from_ref(&cors), &p2)
        .unwrap_err()
        .to_string();
    assert!(error.contains("rust-hello.wasm"), "{error}");
    assert!(error.contains("WASI 0.2"), "{error}");
    // A service given as middleware: it has no next hop.
    let error = engine()
        .load_middleware_file(&built("rust", "echo-p3"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("is not a middleware"), "{error}");
    assert!(error.contains("does not import"), "{error}");
    // A middleware given as the handler.
    let error = engine()
        .load_file(&built("rust", "cors"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("is a middleware"), "{error}");
    assert!(error.contains("--middleware"), "{error}");
    // And a chain that fits is one.
    let pre = engine()
        .chain(
            &[cors, middleware("rust", "auth")],
            &handler("rust", "echo-p3"),
        )
        .unwrap();
    assert_eq!(pre.hops(), 3);
    assert_eq!(pre.middleware().len(), 2);
}

#[test]
fn catshost_check_says_which_world_and_whether_a_chain_fits() {
    let check = |args: &[&Path]| {
        let output = catshost().arg("check").args(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (cors, auth) = (built("rust", "cors"), built("rust", "auth"));
    let (code, out) = check(&[&cors]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("world: wasi:http/middleware (WASI 0.3)"),
        "{out}"
    );
    assert!(out.contains("the next hop of its chain"), "{out}");

    let echo = built("rust", "echo-p3");
    let m = Path::new("--middleware");
    let (code, out) = check(&[&echo, m, &cors, m, &auth]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("-> "), "{out}");
    assert!(out.contains(": can be served"), "{out}");

    let hello = built("rust", "hello");
    let (code, out) = check(&[&hello, m, &cors]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cannot be served"), "{out}");
    assert!(out.contains("WASI 0.2 component"), "{out}");
}

/// The first `n` lines after `after` that `want` picks, waiting up to a
/// minute for them.
async fn lines_where(
    process: &Process,
    after: usize,
    n: usize,
    want: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found: Vec<_> = json_lines(process)
            .into_iter()
            .skip(after)
            .filter(|l| want(l))
            .collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "waited in vain for {n} lines:\n{}",
            process.stderr().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn access_of(tenant: &'static str) -> impl Fn(&Value) -> bool {
    move |l| l["target"] == "catshost::access" && l["tenant"] == tenant
}

async fn get_body(addr: SocketAddr, host: &str, path: &str) -> (StatusCode, String) {
    let answer = support::get_host(addr, Version::HTTP_11, host, path).await;
    (answer.status, answer.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_call_each_other_in_process_only_when_their_allow_list_names_them() {
    let dir = folder();
    for (language, name) in [("rust", "front"), ("rust", "sum"), ("c", "fetch")] {
        std::fs::copy(built(language, name), dir.join(format!("{name}.wasm"))).unwrap();
    }
    let config = dir.join("catshost.toml");
    std::fs::write(
        &config,
        r#"
[server]
addr = "127.0.0.1:0"

# A WASI 0.3 caller, allowed to call sum.
[[tenant]]
name = "front"
component = "front.wasm"
routes = ["front.test"]
outbound = ["http://sum.tenant.internal"]

# The same guest, allowed nothing.
[[tenant]]
name = "closed"
component = "front.wasm"
routes = ["closed.test"]

# A WASI 0.2 caller.
[[tenant]]
name = "fetch"
component = "fetch.wasm"
routes = ["fetch.test"]
outbound = ["http://front.tenant.internal", "http://nobody.tenant.internal"]

[[tenant]]
name = "sum"
component = "sum.wasm"
routes = ["sum.test"]

# Two tenants that relay to each other: a loop.
[[tenant]]
name = "ping"
component = "front.wasm"
routes = ["ping.test"]
env = { BACK = "http://pong.tenant.internal" }
outbound = ["http://pong.tenant.internal"]

[[tenant]]
name = "pong"
component = "front.wasm"
routes = ["pong.test"]
env = { BACK = "http://ping.tenant.internal" }
outbound = ["http://ping.tenant.internal"]

# The same loop with a callee of one request at a time: its second call
# finds it full.
[[tenant]]
name = "tick"
component = "front.wasm"
routes = ["tick.test"]
env = { BACK = "http://tock.tenant.internal" }
outbound = ["http://tock.tenant.internal"]

[[tenant]]
name = "tock"
component = "front.wasm"
routes = ["tock.test"]
env = { BACK = "http://tick.tenant.internal" }
outbound = ["http://tick.tenant.internal"]
max_concurrent_requests = 1
"#,
    )
    .unwrap();
    let mut command = catshost();
    command
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config);
    let server = Process::spawn(command);
    let addr = server.addr;

    // Allowed: served by sum in process, under front's request id.
    let seen = json_lines(&server).len();
    let (status, body) = get_body(addr, "front.test", "/total?1,2,3.5").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "back 200: {\"count\":3,\"sum\":6.5}\n");
    let sum = lines_where(&server, seen, 1, access_of("sum")).await;
    let front = lines_where(&server, seen, 1, access_of("front")).await;
    assert_eq!(sum[0]["request_id"], front[0]["request_id"]);
    assert_eq!(sum[0]["client"], "0.0.0.0:0", "{}", sum[0]);
    assert_eq!(sum[0]["method"], "POST");

    // Not in the allow-list: denied, and sum never sees it.
    let seen = json_lines(&server).len();
    let (status, body) = get_body(addr, "closed.test", "/total?1").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    lines_where(&server, seen, 1, access_of("closed")).await;
    assert!(
        json_lines(&server)
            .iter()
            .skip(seen)
            .all(|l| !access_of("sum")(l)),
        "sum was called"
    );

    // A WASI 0.2 caller, calling a WASI 0.3 tenant that calls another.
    let (status, body) = get_body(
        addr,
        "fetch.test",
        "/fetch?url=http://front.tenant.internal/total?4,5",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "upstream 200: back 200: {\"count\":2,\"sum\":9}\n");
    // An internal name of no tenant.
    let (status, body) = get_body(
        addr,
        "fetch.test",
        "/fetch?url=http://nobody.tenant.internal/",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("destination-not-found"), "{body}");

    // A loop is cut at the documented depth, with its error.
    let seen = json_lines(&server).len();
    let (status, body) = get_body(addr, "ping.test", "/relay/x").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body.matches("relayed 200").count(),
        usize::from(catshost::wasm::MAX_CALL_DEPTH) - 1,
        "{body}"
    );
    assert!(
        body.ends_with("relayed 502: error: ErrorCode::LoopDetected\n"),
        "{body}"
    );
    let cut = lines_where(&server, seen, 1, |l| {
        l["message"] == "outgoing HTTP request denied"
    })
    .await;
    assert!(
        cut[0]["reason"].as_str().unwrap().contains("9 deep"),
        "{}",
        cut[0]
    );

    // A full callee answers its 503 at once (a wait would never end: the
    // callee's one permit is held by the request that calls): the caller's
    // guest sees it and answers.
    let (status, body) = get_body(addr, "tick.test", "/relay/x").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.starts_with("relayed 200: relayed 200: relayed 503: "),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_a_chain_swaps_it_like_a_component_change() {
    let dir = folder();
    for (name, file) in [
        ("echo-p3", "echo.wasm"),
        ("cors", "cors.wasm"),
        ("auth", "auth.wasm"),
    ] {
        std::fs::copy(built("rust", name), dir.join(file)).unwrap();
    }
    let config = dir.join("catshost.toml");
    let write = |middleware: &str| {
        let tenants: String = [("eager", true), ("lazy", false)]
            .iter()
            .map(|(name, preload)| {
                format!(
                    "[[tenant]]\nname = \"{name}\"\ncomponent = \"echo.wasm\"\nroutes = \
                     [\"{name}.test\"]\npreload = {preload}\nenv = {{ AUTH_TOKEN = \"{TOKEN}\" }}\n\
                     middleware = [{middleware}]\n\n"
                )
            })
            .collect();
        std::fs::write(
            &config,
            format!("[server]\naddr = \"127.0.0.1:0\"\n\n{tenants}"),
        )
        .unwrap();
    };
    write(r#""cors.wasm""#);
    let mut command = catshost();
    command
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config);
    let server = Process::spawn(command);
    for host in ["eager.test", "lazy.test"] {
        let mut client = Client::connect(server.addr, Version::HTTP_11)
            .await
            .with_authority(host);
        let (status, headers, _) = send(&mut client, "GET", "/", b"", false).await;
        assert_eq!(status, StatusCode::OK, "{host}");
        assert_eq!(middleware_seen(&headers), ["cors"], "{host}");
    }

    write(r#""cors.wasm", "auth.wasm""#);
    let seen = json_lines(&server).len();
    server.signal(libc::SIGHUP);
    lines_where(&server, seen, 1, |l| l["message"] == "config reloaded").await;
    for host in ["eager.test", "lazy.test"] {
        let mut client = Client::connect(server.addr, Version::HTTP_11)
            .await
            .with_authority(host);
        let (status, _, _) = send(&mut client, "GET", "/", b"", false).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{host}");
        let (status, headers, _) = send(&mut client, "GET", "/", b"", true).await;
        assert_eq!(status, StatusCode::OK, "{host}");
        assert_eq!(middleware_seen(&headers), ["auth", "cors"], "{host}");
    }

    // A chain that cannot be built is refused; the last good one serves on.
    std::fs::write(dir.join("cors.wasm"), b"not wasm").unwrap();
    let seen = json_lines(&server).len();
    server.signal(libc::SIGHUP);
    let failed = lines_where(&server, seen, 1, |l| {
        l["message"] == "config reload failed: the previous config keeps serving"
    })
    .await;
    assert!(
        failed[0]["error"].as_str().unwrap().contains("cors.wasm"),
        "{}",
        failed[0]
    );
    let mut client = Client::connect(server.addr, Version::HTTP_11)
        .await
        .with_authority("eager.test");
    let (status, headers, _) = send(&mut client, "GET", "/", b"", true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(middleware_seen(&headers), ["auth", "cors"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spins_header_adder_middleware_runs_unchanged() {
    // Spin's own middleware test component (guest-examples/rust/spin-header-adder),
    // built from Spin's source as it is.
    let pre = engine()
        .chain(
            &[middleware("rust", "spin-header-adder")],
            &handler("rust", "echo-p3"),
        )
        .unwrap();
    let server = serve(pre, &builder(&[], &[])).await;
    for version in BOTH {
        let mut client = Client::connect(server.addr, version).await;
        let (status, headers, body) = send(&mut client, "GET", "/", b"", false).await;
        assert_eq!(status, StatusCode::OK, "{version:?}");
        assert_eq!(body, "hello from Rust (WASI 0.3)\n");
        assert_eq!(headers["response-header-added-by"], "yep me again!");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chains_instances_and_host_memory_go_back_to_zero_when_it_is_idle() {
    let mut settings = builder(&[], &[]);
    settings.reuse(Reuse {
        max_instance_reuse_count: Some(100),
        max_instance_concurrent_reuse_count: None,
        idle_instance_timeout: Duration::from_secs(2),
    });
    let server = serve(chain(&["cors", "auth"], "echo-p3"), &settings).await;
    let body = pseudo_random(1 << 20);
    for version in BOTH {
        let mut client = Client::connect(server.addr, version).await;
        for _ in 0..3 {
            let (status, _, echoed) = send(&mut client, "POST", "/echo", &body, true).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(echoed.len(), body.len());
        }
    }
    // One chain instance served them all (its three components count as
    // one); idle past its timeout, it goes, and with it all that was
    // charged to the tenant for it.
    let metrics = server.server.metrics();
    let live = r#"catshost_instances_live{tenant="default"}"#;
    assert_eq!(sample(&metrics.encode(), live), Some(1.0));
    wait_for_sample(metrics, live, 0.0, Duration::from_secs(10)).await;
    wait_for_sample(
        metrics,
        r#"catshost_host_memory_bytes{tenant="default"}"#,
        0.0,
        Duration::from_secs(10),
    )
    .await;
    server.stop().await;
}
