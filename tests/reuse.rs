//! Instance reuse (docs/reuse.md): WASI 0.3 components served by instances
//! that take several requests at once, WASI 0.2 instances reused one
//! request at a time and the fallback for components that cannot be reused,
//! what a failure in a reused instance takes with it and what it does not,
//! the instance metrics, and a graceful stop that drains a WASI 0.3
//! instance.
//!
//! The Python components take about 12 s each to compile: each is loaded
//! once per test binary, through one engine with a compile cache of its
//! own, and shared by the tests' servers.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use catshost::config::InstanceLimits;
use catshost::config::{HttpVersions, TenantLimits};
use catshost::routing::Route;
use catshost::{GuestPre, Reuse, Tenant};
use http::{StatusCode, Version};
use http_body_util::BodyExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use support::{
    Answer, Client, Process, TestServer, built, catshost, fixture, guest, pseudo_random, sample,
    temp_file, wait_for_sample,
};
use tokio::net::TcpStream;

const BOTH: [Version; 2] = [Version::HTTP_11, Version::HTTP_2];

/// How long any one test may take once its components are loaded.
const TEST_BOUND: Duration = Duration::from_secs(60);

/// The warning of a tenant that stops reusing instances.
const FALLBACK_WARNING: &str = "the component failed on a reused instance without answering";

/// The engine every component of these tests is loaded with: compiled
/// components are kept in a folder of this test binary's own.
fn engine() -> &'static catshost::Engine {
    static ENGINE: OnceLock<catshost::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reuse-compile-cache");
        catshost::Engine::new().unwrap().with_compile_cache(cache)
    })
}

/// tests/fixtures/p3-faults/app.py, built: a WASI 0.3 guest that counts,
/// names its instance, waits, hangs, spins, traps and runs out of memory
/// on request.
fn p3_faults() -> GuestPre {
    static PRE: OnceLock<GuestPre> = OnceLock::new();
    PRE.get_or_init(|| load_built("python", "p3-faults"))
        .clone()
}

/// guest-examples/python/echo-p3, built.
/// The counter of [`COUNTS_WITH_ITS_OWN_500`], which traps without an
/// answer on the path `/500` instead.
fn counts_and_traps() -> String {
    COUNTS_WITH_ITS_OWN_500.replace(
        "(then (local.set $status (i32.const 500))))",
        "(then unreachable))",
    )
}

#[tokio::test]
async fn a_component_that_answered_on_a_reused_instance_keeps_reuse_after_a_trap_there() {
    within(async {
        let component = engine()
            .load_bytes("traps", &guest(&counts_and_traps()))
            .unwrap();
        let long = Duration::from_secs(30);
        let server = serve(
            component,
            catshost::Server::builder().reuse(reuse(Some(100), long)),
        )
        .await;
        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        // The second request, on a reused instance, shows the component
        // can be reused.
        assert_eq!(oks(&mut client, "/", 2).await, counts(1..=2));
        // A trap there is the guest's own failure: its 500, and the
        // instance goes; the request is not served again on a fresh one
        // (which would have trapped too) and the tenant keeps reusing.
        let trap = client.request("GET", "/500", b"").await;
        assert_eq!(
            trap.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            trap.body
        );
        assert_eq!(oks(&mut client, "/", 2).await, counts(1..=2));
        assert_eq!(
            sample(&server.server.metrics().encode(), CREATED),
            Some(2.0)
        );
        server.stop().await;
    })
    .await;
}

fn echo_p3() -> GuestPre {
    static PRE: OnceLock<GuestPre> = OnceLock::new();
    PRE.get_or_init(|| load_built("python", "echo-p3")).clone()
}

fn load_built(language: &str, name: &str) -> GuestPre {
    let path = built(language, name);
    let pre = engine().load_file(&path).unwrap();
    assert_eq!(pre.wasi(), catshost::Wasi::P3, "{}", path.display());
    pre
}

/// Panics when `test` takes longer than [`TEST_BOUND`]. The tests load
/// their components before: a first compile takes as long as it takes.
async fn within<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_BOUND, test)
        .await
        .unwrap_or_else(|_| panic!("the test took more than {TEST_BOUND:?}"))
}

/// Reuse up to `count` requests per instance (the component's default when
/// `None`), idle instances kept `idle`.
fn reuse(count: Option<u32>, idle: Duration) -> Reuse {
    Reuse {
        max_instance_reuse_count: count,
        max_instance_concurrent_reuse_count: None,
        idle_instance_timeout: idle,
    }
}

/// Serves `component` with the settings of `builder`.
async fn serve(component: GuestPre, builder: &catshost::Builder) -> TestServer {
    TestServer::serve(builder.build(component), None).await
}

/// GETs `path` on `client` and returns the body of its 200.
async fn ok(client: &mut Client, path: &str) -> String {
    let answer = client.request("GET", path, b"").await;
    assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    answer.body
}

/// GETs `path` `n` times, one after the other, on `client`.
async fn oks(client: &mut Client, path: &str, n: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    for _ in 0..n {
        bodies.push(ok(client, path).await);
    }
    bodies
}

/// `count: 1` ... `count: N`, the answers of a counter on one instance.
fn counts(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|n| format!("count: {n}\n")).collect()
}

/// GETs `path` on a new HTTP/1.1 connection; the answer and how long it
/// took.
async fn timed_get(addr: SocketAddr, path: &str) -> (Answer, Duration) {
    let started = Instant::now();
    let answer = Client::connect(addr, Version::HTTP_11)
        .await
        .request("GET", path, b"")
        .await;
    (answer, started.elapsed())
}

/// The same on a task of its own.
fn spawn_get(addr: SocketAddr, path: &str) -> tokio::task::JoinHandle<(Answer, Duration)> {
    let path = path.to_string();
    tokio::spawn(async move { timed_get(addr, &path).await })
}

const LIVE: &str = r#"catshost_instances_live{tenant="default"}"#;
const RETIRED: &str = r#"catshost_instances_retired_total{tenant="default"}"#;
const CREATED: &str = r#"catshost_instance_creation_seconds_count{tenant="default"}"#;

/// GET / and POST /echo of `body` on `client`: the hello, and the body
/// back byte for byte, both over `version`.
async fn hello_and_echo(client: &mut Client, version: Version, body: &[u8], what: &str) {
    hello_and_echo_of("Python", client, version, body, what).await;
}

/// As [`hello_and_echo`], for the echo-p3 example of `language`.
async fn hello_and_echo_of(
    language: &str,
    client: &mut Client,
    version: Version,
    body: &[u8],
    what: &str,
) {
    let hello = client.request("GET", "/", b"").await;
    assert_eq!(hello.status, StatusCode::OK, "{what}: {}", hello.body);
    assert_eq!(hello.version, version, "{what}");
    assert_eq!(
        hello.body,
        format!("hello from {language} (WASI 0.3)\n"),
        "{what}"
    );

    let response = client.send("POST", "/echo", body).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{what}");
    assert_eq!(response.version(), version, "{what}");
    let echoed = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed.len(), body.len(), "{what}");
    assert!(echoed == body, "{what}: the echoed bytes differ");
}

/// `/both`'s two 50 ms waits overlap: the guest's own tasks run
/// concurrently (one after the other would take 100 ms).
async fn both_overlap(client: &mut Client, version: Version) {
    let both = ok(client, "/both").await;
    let took: u64 = both
        .strip_prefix("two 50 ms waits took ")
        .and_then(|rest| rest.strip_suffix(" ms\n"))
        .unwrap_or_else(|| panic!("{both:?}"))
        .parse()
        .unwrap();
    assert!((50..100).contains(&took), "{version:?}: {both:?}");
}

/// A certificate for localhost: (cert PEM, key PEM).
fn certificate() -> (String, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (cert.pem(), signing_key.serialize_pem())
}

/// A TLS connection to `addr` that trusts `cert_pem` and offers `alpn`.
async fn tls_connect(
    addr: SocketAddr,
    cert_pem: &str,
    alpn: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
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
    config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_rust_wasi_0_3_component_says_hello_echoes_and_awaits_concurrently() {
    let pre = load_built("rust", "echo-p3");
    within(async {
        let body = pseudo_random(1 << 20);
        let server = serve(pre, &catshost::Server::builder()).await;
        for version in BOTH {
            let mut client = Client::connect(server.addr, version).await;
            let what = format!("{version:?}");
            hello_and_echo_of("Rust", &mut client, version, &body, &what).await;
            both_overlap(&mut client, version).await;
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_0_3_component_says_hello_and_echoes_a_mebibyte_over_http1_h2c_and_tls() {
    let pre = echo_p3();
    within(async {
        let body = pseudo_random(1 << 20);
        let server = serve(pre.clone(), &catshost::Server::builder()).await;
        for version in BOTH {
            let mut client = Client::connect(server.addr, version).await;
            hello_and_echo(&mut client, version, &body, &format!("{version:?}")).await;
            both_overlap(&mut client, version).await;
        }
        server.stop().await;

        let (cert, key) = certificate();
        let tls = catshost::Tls::from_pem_files(
            &temp_file("cert.pem", cert.as_bytes()),
            &temp_file("key.pem", key.as_bytes()),
            HttpVersions::Both,
        )
        .unwrap();
        let server =
            TestServer::serve(catshost::Server::builder().build(pre.clone()), Some(tls)).await;
        for (alpn, version) in [("h2", Version::HTTP_2), ("http/1.1", Version::HTTP_11)] {
            let stream = tls_connect(server.addr, &cert, alpn).await;
            let mut client = Client::over(stream, version, "https", "localhost").await;
            hello_and_echo(&mut client, version, &body, &format!("TLS {alpn}")).await;
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_requests_held_at_a_latch_share_one_instance_and_are_released_together() {
    let pre = p3_faults();
    within(async {
        let server = serve(pre, &catshost::Server::builder()).await;
        let warm = ok(
            &mut Client::connect(server.addr, Version::HTTP_11).await,
            "/instance",
        )
        .await;

        // One at a time, so each finds the instance waiting for its next
        // request (a burst would find it busy and start others).
        let mut waiting = Vec::new();
        for _ in 0..15 {
            waiting.push(spawn_get(server.addr, "/latch?n=16"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            waiting.iter().all(|w| !w.is_finished()),
            "a request left the latch before the 16th came"
        );
        let sixteenth = Instant::now();
        waiting.push(spawn_get(server.addr, "/latch?n=16"));

        for (i, request) in waiting.into_iter().enumerate() {
            let (answer, _) = request.await.unwrap();
            assert_eq!(answer.status, StatusCode::OK, "{i}: {}", answer.body);
            assert_eq!(answer.body, warm, "request {i} ran on another instance");
        }
        // Released by the 16th, together: not each at its own deadline.
        assert!(
            sixteenth.elapsed() < Duration::from_secs(5),
            "released after {:?}",
            sixteenth.elapsed()
        );
        assert_eq!(
            sample(&server.server.metrics().encode(), CREATED),
            Some(1.0)
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_wasi_0_3_instance_counts_on_past_a_guests_own_500_until_it_idles_out() {
    let pre = p3_faults();
    within(async {
        let idle = Duration::from_millis(200);
        let server = serve(pre, catshost::Server::builder().reuse(reuse(None, idle))).await;
        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        assert_eq!(oks(&mut client, "/count", 5).await, counts(1..=5));

        // The guest's own 500 is an answer: the instance serves on.
        let own = client.request("GET", "/status/500", b"").await;
        assert_eq!(
            (own.status, own.body.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "guest's own 500\n")
        );
        assert_eq!(ok(&mut client, "/count").await, "count: 7\n");

        // Idle past its timeout: gone, the next request gets a new one.
        let idled = Instant::now();
        wait_for_sample(
            server.server.metrics(),
            RETIRED,
            1.0,
            Duration::from_secs(5),
        )
        .await;
        // Not at once (the request ended a moment before `idled`).
        assert!(
            idled.elapsed() >= idle * 3 / 4,
            "retired after {:?}",
            idled.elapsed()
        );
        assert_eq!(oks(&mut client, "/count", 2).await, counts(1..=2));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_wasi_0_3_instance_serves_its_reuse_count_then_a_new_one_takes_over() {
    let pre = p3_faults();
    within(async {
        let long = Duration::from_secs(30);
        let server = serve(
            pre.clone(),
            catshost::Server::builder().reuse(reuse(Some(3), long)),
        )
        .await;
        let mut client = Client::connect(server.addr, Version::HTTP_2).await;
        let mut expected = counts(1..=3);
        expected.extend(counts(1..=3));
        expected.extend(counts(1..=1));
        assert_eq!(oks(&mut client, "/count", 7).await, expected);
        server.stop().await;

        // A reuse count of one: a fresh instance for every request.
        let server = serve(pre, catshost::Server::builder().reuse(reuse(Some(1), long))).await;
        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        assert_eq!(
            oks(&mut client, "/count", 3).await,
            vec!["count: 1\n".to_string(); 3]
        );
        let ids = oks(&mut client, "/instance", 3).await;
        assert!(
            ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
            "{ids:?}"
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_wasi_0_2_counter_gets_a_fresh_instance_per_request_unless_reuse_is_asked_for() {
    within(async {
        let counter = engine().load_bytes("counter", &fixture("counter")).unwrap();
        let server = serve(counter.clone(), &catshost::Server::builder()).await;
        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        assert_eq!(
            oks(&mut client, "/", 3).await,
            vec!["count: 1\n".to_string(); 3]
        );
        server.stop().await;

        let idle = Duration::from_millis(200);
        let server = serve(
            counter,
            catshost::Server::builder().reuse(reuse(Some(3), idle)),
        )
        .await;
        let mut client = Client::connect(server.addr, Version::HTTP_2).await;
        let mut expected = counts(1..=3);
        expected.extend(counts(1..=2));
        assert_eq!(oks(&mut client, "/", 5).await, expected);
        // The first went at its reuse count; the second goes idle past its
        // timeout, having served 2.
        let idled = Instant::now();
        wait_for_sample(
            server.server.metrics(),
            RETIRED,
            2.0,
            Duration::from_secs(5),
        )
        .await;
        // Not at once (the request ended a moment before `idled`).
        assert!(
            idled.elapsed() >= idle * 3 / 4,
            "retired after {:?}",
            idled.elapsed()
        );
        assert_eq!(oks(&mut client, "/", 2).await, counts(1..=2));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reused_instance_that_keeps_its_requests_resources_serves_no_more() {
    within(async {
        let faults = engine().load_bytes("faults", &fixture("faults")).unwrap();
        let server = serve(
            faults,
            catshost::Server::builder().reuse(reuse(Some(100), Duration::from_secs(30))),
        )
        .await;
        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        oks(&mut client, "/ok", 3).await;
        let metrics = server.server.metrics();
        assert_eq!(sample(&metrics.encode(), CREATED), Some(1.0));
        // /hoard leaves 600 resources (200 unsent responses, their bodies
        // and streams) and about 10 MiB of host memory in its instance.
        ok(&mut client, "/hoard").await;
        wait_for_sample(metrics, RETIRED, 1.0, Duration::from_secs(5)).await;
        oks(&mut client, "/ok", 2).await;
        assert_eq!(sample(&metrics.encode(), CREATED), Some(2.0));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn bodies_a_reused_instance_keeps_come_out_of_its_next_requests_and_its_account() {
    within(async {
        let faults = engine().load_bytes("faults", &fixture("faults")).unwrap();
        let mut builder = catshost::Server::builder();
        builder.reuse(reuse(Some(100), Duration::from_secs(30)));
        let server = serve(faults.clone(), &builder).await;
        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        // /keep fills two bodies it never sends, and keeps them (6
        // resources: the instance is reused). The budget of four full body
        // buffers is the instance's: it is not filled again while the
        // instance keeps bodies, so the third request gets small ones.
        let took: Vec<u64> = oks(&mut client, "/keep", 3)
            .await
            .iter()
            .map(|body| body.trim().parse().unwrap())
            .collect();
        let metrics = server.server.metrics();
        assert_eq!(sample(&metrics.encode(), CREATED), Some(1.0));
        assert!(took[0] > 2 << 20 && took[1] > 2 << 20, "{took:?}");
        assert!(took[2] < took[0] / 20, "{took:?}");
        // What it keeps is charged to the tenant.
        let held = sample(
            &metrics.encode(),
            r#"catshost_host_memory_bytes{tenant="default"}"#,
        )
        .unwrap();
        assert!(held >= 4.0 * 1024.0 * 1024.0, "{held}");
        server.stop().await;

        // Past the tenant's account, an instance that keeps bodies is not
        // reused, and its charge goes with it.
        let mut builder = catshost::Server::builder();
        builder
            .limits(TenantLimits {
                max_host_memory: 1 << 20,
                ..TenantLimits::default()
            })
            .reuse(reuse(Some(100), Duration::from_secs(30)));
        let server = serve(faults, &builder).await;
        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        ok(&mut client, "/keep").await;
        let metrics = server.server.metrics();
        wait_for_sample(metrics, RETIRED, 1.0, Duration::from_secs(5)).await;
        wait_for_sample(
            metrics,
            r#"catshost_host_memory_bytes{tenant="default"}"#,
            0.0,
            Duration::from_secs(5),
        )
        .await;
        oks(&mut client, "/ok", 2).await;
        assert_eq!(sample(&metrics.encode(), CREATED), Some(2.0));
        server.stop().await;
    })
    .await;
}

/// A tenant named `name` on `component`, routed by the host `name.test`,
/// reusing instances.
fn counting_tenant(name: &str, component: &GuestPre) -> Tenant {
    Tenant {
        name: name.into(),
        component: component.clone().into(),
        routes: vec![Route::parse(&format!("{name}.test")).unwrap()],
        limits: TenantLimits {
            instance: InstanceLimits {
                reuse: reuse(Some(100), Duration::from_secs(30)),
                ..InstanceLimits::default()
            },
            ..TenantLimits::default()
        },
        access: Default::default(),
    }
}

#[tokio::test]
async fn two_tenants_of_one_compiled_component_never_share_an_instance() {
    let p3 = p3_faults();
    within(async {
        let p2 = engine().load_bytes("counter", &fixture("counter")).unwrap();
        for (component, path) in [(p2, "/"), (p3.clone(), "/count")] {
            let server = catshost::Server::builder()
                .build_tenants(vec![
                    counting_tenant("a", &component),
                    counting_tenant("b", &component),
                ])
                .unwrap();
            let server = TestServer::serve(server, None).await;
            let mut clients = [
                Client::connect(server.addr, Version::HTTP_11)
                    .await
                    .with_authority("a.test"),
                Client::connect(server.addr, Version::HTTP_11)
                    .await
                    .with_authority("b.test"),
            ];
            let mut seen = Vec::new();
            for tenant in [0, 1, 0, 1, 0] {
                seen.push(ok(&mut clients[tenant], path).await);
            }
            let expected = [
                "count: 1\n",
                "count: 1\n",
                "count: 2\n",
                "count: 2\n",
                "count: 3\n",
            ];
            assert_eq!(seen, expected, "{}", component.wasi().as_str());
            server.stop().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_fails_every_request_of_its_instance_and_the_next_gets_a_fresh_one() {
    let pre = p3_faults();
    within(async {
        let server = serve(pre, &catshost::Server::builder()).await;
        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        assert_eq!(ok(&mut client, "/count").await, "count: 1\n");

        // A request waiting in the instance when another one traps.
        let sleeper = spawn_get(server.addr, "/sleep?ms=1500");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let trap = client.request("GET", "/trap", b"").await;
        assert_eq!(
            trap.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            trap.body
        );
        let (slept, took) = sleeper.await.unwrap();
        assert_eq!(
            slept.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            slept.body
        );
        assert!(
            took < Duration::from_millis(1400),
            "failed after {took:?}, not with the trap"
        );

        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        assert_eq!(ok(&mut client, "/count").await, "count: 1\n");
        let metrics = server.server.metrics();
        wait_for_sample(metrics, RETIRED, 1.0, Duration::from_secs(1)).await;
        wait_for_sample(metrics, LIVE, 1.0, Duration::from_secs(1)).await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn memory_exhaustion_fails_the_instance_and_the_next_request_gets_a_fresh_one() {
    let pre = p3_faults();
    within(async {
        let server = serve(pre, catshost::Server::builder().max_memory(64 << 20)).await;
        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        assert_eq!(oks(&mut client, "/count", 2).await, counts(1..=2));
        let oom = client.request("GET", "/oom", b"").await;
        assert_eq!(
            oom.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            oom.body
        );
        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        assert_eq!(ok(&mut client, "/count").await, "count: 1\n");
        let metrics = server.server.metrics().encode();
        let memory = r#"catshost_guest_faults_total{tenant="default",kind="memory"}"#;
        assert_eq!(sample(&metrics, memory), Some(1.0), "{metrics}");
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_request_gets_504_while_its_siblings_finish_on_an_instance_that_takes_no_more() {
    let pre = p3_faults();
    within(async {
        let timeout = Duration::from_secs(2);
        let builder = catshost::Server::builder().request_timeout(timeout).clone();
        let server = serve(pre, &builder).await;
        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        let first = ok(&mut client, "/instance").await;

        let hang = spawn_get(server.addr, "/hang");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // Started before the deadline of /hang, ends after it.
        let sibling = spawn_get(server.addr, "/sleep?ms=1500");
        tokio::time::sleep(Duration::from_millis(100)).await;
        // All on one instance: this is its fourth request.
        assert_eq!(ok(&mut client, "/count").await, "count: 4\n");

        let (hung, took) = hang.await.unwrap();
        assert_eq!(hung.status, StatusCode::GATEWAY_TIMEOUT, "{}", hung.body);
        assert!(
            took >= timeout - Duration::from_millis(50)
                && took < timeout + Duration::from_millis(1500),
            "504 after {took:?}"
        );
        // Past a deadline the instance takes no new request, while its
        // sibling still runs there.
        assert!(!sibling.is_finished());
        let second = ok(
            &mut Client::connect(server.addr, Version::HTTP_11).await,
            "/instance",
        )
        .await;
        assert_ne!(first, second);

        let (slept, _) = sibling.await.unwrap();
        assert_eq!(
            (slept.status, slept.body.as_str()),
            (StatusCode::OK, "slept 1500\n")
        );
        server.stop().await;
    })
    .await;
}

/// The instance goes at the newest request's deadline + `HARD_BOUND_GRACE`
/// (here 6 s), not a request timeout after its last answer (7.5 s, before
/// `Expiry` remembered the newest request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_task_hangs_goes_at_the_newest_deadline_plus_the_grace() {
    let pre = p3_faults();
    within(async {
        let timeout = Duration::from_secs(3);
        let builder = catshost::Server::builder()
            .request_timeout(timeout)
            .reuse(reuse(None, Duration::from_secs(30)))
            .clone();
        let server = serve(pre, &builder).await;
        let started = Instant::now();
        let hang = spawn_get(server.addr, "/hang");
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The newest request: its deadline is at 5 s, it answers at 4.5 s.
        let newest = spawn_get(server.addr, "/sleep?ms=2500");
        assert_eq!(hang.await.unwrap().0.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(newest.await.unwrap().0.status, StatusCode::OK);
        let metrics = server.server.metrics();
        // Both on one instance.
        assert_eq!(sample(&metrics.encode(), CREATED), Some(1.0));
        let bound = Duration::from_secs(5) + Duration::from_secs(1);
        let waited = bound + Duration::from_millis(500) - started.elapsed();
        wait_for_sample(metrics, RETIRED, 1.0, waited).await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_guests_get_504_at_their_deadline_and_pin_no_worker() {
    let pre = p3_faults();
    within(async {
        let timeout = Duration::from_secs(1);
        let builder = catshost::Server::builder()
            .request_timeout(timeout)
            .reuse(reuse(None, Duration::from_secs(30)))
            .clone();
        let server = serve(pre, &builder).await;
        assert_eq!(
            ok(
                &mut Client::connect(server.addr, Version::HTTP_11).await,
                "/count"
            )
            .await,
            "count: 1\n"
        );

        // As many spinning guests as the runtime has workers.
        let spins = [spawn_get(server.addr, "/spin"), {
            tokio::time::sleep(Duration::from_millis(50)).await;
            spawn_get(server.addr, "/spin")
        }];
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (count, took) = timed_get(server.addr, "/count").await;
        assert_eq!(count.status, StatusCode::OK, "{}", count.body);
        // On an instance of its own: the spinning ones take no request.
        assert_eq!(count.body, "count: 1\n");
        assert!(took < timeout, "answered after {took:?}, with the spinners");
        assert!(spins.iter().all(|s| !s.is_finished()));

        for spin in spins {
            let (answer, took) = spin.await.unwrap();
            assert_eq!(
                answer.status,
                StatusCode::GATEWAY_TIMEOUT,
                "{}",
                answer.body
            );
            assert!(
                took >= timeout - Duration::from_millis(50)
                    && took < timeout + Duration::from_millis(1500),
                "504 after {took:?}"
            );
        }
        let (count, _) = timed_get(server.addr, "/count").await;
        assert_eq!(count.body, "count: 2\n");
        // The spinning instances go at the hard bound (deadline + 1 s).
        wait_for_sample(
            server.server.metrics(),
            RETIRED,
            2.0,
            Duration::from_secs(3),
        )
        .await;
        wait_for_sample(server.server.metrics(), LIVE, 1.0, Duration::from_secs(1)).await;
        server.stop().await;
    })
    .await;
}

/// A WASI 0.2 guest that counts its requests like counter.wat and answers
/// with its count, with a 500 on the path `/500`.
const COUNTS_WITH_ITS_OWN_500: &str = r#"
  (global $count (mut i32) (i32.const 0))
  (data (i32.const 2048) "count: ") ;; 7 bytes
  (data (i32.const 2056) "/500")    ;; 4 bytes

  (func (export "wasi:http/incoming-handler@0.2.12#handle") (param $request i32) (param $outparam i32)
    (local $n i32) (local $end i32) (local $start i32) (local $status i32)
    (global.set $outparam (local.get $outparam))
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (local.set $status (i32.const 200))
    (if (call $bytes_eq (call $path (local.get $request)) (i32.const 2056) (i32.const 4))
      (then (local.set $status (i32.const 500))))
    (local.set $end (i32.const 2080))
    (i32.store8 (local.get $end) (i32.const 10))
    (local.set $start (local.get $end))
    (local.set $n (global.get $count))
    (loop $digit
      (local.set $start (i32.sub (local.get $start) (i32.const 1)))
      (i32.store8 (local.get $start) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))
    (memory.copy (i32.sub (local.get $start) (i32.const 7)) (i32.const 2048) (i32.const 7))
    (local.set $start (i32.sub (local.get $start) (i32.const 7)))
    (call $respond (local.get $status) (local.get $start)
      (i32.sub (i32.add (local.get $end) (i32.const 1)) (local.get $start))))
"#;

#[tokio::test]
async fn a_guests_own_500_on_a_reused_wasi_0_2_instance_keeps_the_instance() {
    within(async {
        let component = engine()
            .load_bytes("own-500", &guest(COUNTS_WITH_ITS_OWN_500))
            .unwrap();
        let long = Duration::from_secs(30);
        let server = serve(
            component,
            catshost::Server::builder().reuse(reuse(Some(100), long)),
        )
        .await;
        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        let mut seen = Vec::new();
        for path in ["/500", "/", "/500", "/"] {
            let answer = client.request("GET", path, b"").await;
            seen.push((answer.status.as_u16(), answer.body));
        }
        let expected: Vec<(u16, String)> = [500, 200, 500, 200]
            .into_iter()
            .zip(counts(1..=4))
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(
            sample(&server.server.metrics().encode(), CREATED),
            Some(1.0)
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_fails_on_reuse_is_always_answered_and_reused_no_more_with_one_warning() {
    let component = built("js", "hello");
    let server = Process::serve(&[
        "--max-instance-reuse-count",
        "1000",
        component.to_str().unwrap(),
    ]);
    within(async {
        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        for i in 1..=20 {
            let answer = client.request("GET", "/", b"").await;
            assert_eq!(
                (answer.status, answer.body.as_str()),
                (StatusCode::OK, "hello from javascript\n"),
                "request {i}"
            );
        }
        // A request's warning comes before its access line.
        let deadline = Instant::now() + Duration::from_secs(10);
        while lines(&server, "catshost::access").len() < 20 {
            assert!(Instant::now() < deadline, "{:#?}", server.stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let warnings = lines(&server, FALLBACK_WARNING);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    // The second request, the first on a reused instance, failed there.
    let warning = &warnings[0];
    assert!(
        warning.contains(" WARN catshost::wasm::recycle: "),
        "{warning}"
    );
    assert!(warning.contains(" request_id=2 "), "{warning}");
    assert!(warning.contains("js-hello.wasm"), "{warning}");
    // It failed on the first instance; no instance served twice again.
    let failures = lines(&server, "respondWith can't be called twice");
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(failures[0].contains(" instance_id=1 "), "{}", failures[0]);
}

/// The lines of `process`'s stderr so far that contain `needle`.
fn lines(process: &Process, needle: &str) -> Vec<String> {
    process
        .stderr()
        .into_iter()
        .filter(|l| l.contains(needle))
        .collect()
}

#[test]
fn check_says_it_can_serve_a_wasi_0_3_component() {
    let mut check = catshost()
        .arg("check")
        .arg(built("python", "echo-p3"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It compiles the component (no cache): about 12 s.
    let deadline = Instant::now() + Duration::from_secs(120);
    while check.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            check.kill().unwrap();
            panic!("catshost check still runs after 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = check.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("world: wasi:http/service (WASI 0.3), exporting wasi:http/handler@0.3.0"),
        "{stdout}"
    );
    assert!(stdout.contains("catshost can serve it"), "{stdout}");
}

#[tokio::test]
async fn instance_metrics_count_the_live_and_retired_wasi_0_3_instances() {
    let pre = p3_faults();
    within(async {
        let idle = Duration::from_millis(200);
        let server = serve(pre, catshost::Server::builder().reuse(reuse(None, idle))).await;
        let metrics = server.server.metrics();
        let mut client = Client::connect(server.addr, Version::HTTP_11).await;
        assert_eq!(oks(&mut client, "/count", 3).await, counts(1..=3));
        let now = metrics.encode();
        assert_eq!(sample(&now, LIVE), Some(1.0), "{now}");
        assert_eq!(sample(&now, CREATED), Some(1.0), "{now}");
        assert_eq!(sample(&now, RETIRED), None, "{now}");

        // Idle past its timeout, it goes, and says how many it served.
        wait_for_sample(metrics, RETIRED, 1.0, Duration::from_secs(5)).await;
        let now = metrics.encode();
        assert_eq!(sample(&now, LIVE), Some(0.0), "{now}");
        let served = r#"catshost_instance_requests_sum{tenant="default"}"#;
        assert_eq!(sample(&now, served), Some(3.0), "{now}");

        assert_eq!(ok(&mut client, "/count").await, "count: 1\n");
        let now = metrics.encode();
        assert_eq!(sample(&now, LIVE), Some(1.0), "{now}");
        assert_eq!(sample(&now, CREATED), Some(2.0), "{now}");
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_lets_a_request_in_a_wasi_0_3_instance_finish() {
    let pre = p3_faults();
    within(async {
        let idle = Duration::from_secs(30);
        let server = serve(pre, catshost::Server::builder().reuse(reuse(None, idle))).await;
        let sleeper = spawn_get(server.addr, "/sleep?ms=500");
        while server.server.in_flight().requests == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.server.stop().switch();
        let (slept, took) = sleeper.await.unwrap();
        assert_eq!(
            (slept.status, slept.body.as_str()),
            (StatusCode::OK, "slept 500\n")
        );
        assert!(took >= Duration::from_millis(500), "{took:?}");
        let metrics = server.server.metrics().clone();
        server.finished().await.unwrap();
        // The stop retires the instance, idle now, long before its idle
        // timeout.
        wait_for_sample(&metrics, LIVE, 0.0, Duration::from_secs(1)).await;
        wait_for_sample(&metrics, RETIRED, 1.0, Duration::from_secs(1)).await;
    })
    .await;
}
