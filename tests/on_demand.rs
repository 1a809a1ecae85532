//! On-demand tenants (docs/config.md, Loading): a component loaded by its tenant's
//! first request and never before, unloaded past the budget of loaded code
//! (least recently used first) or when idle, without cutting a request in
//! flight; a component that cannot load fails its tenant's requests, not
//! the start; a request that waits past the load timeout gets 503; a
//! reload hands a loaded component on; and `catshost check` and `catshost
//! compile` with a config file.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use catshost::config::{LoadSettings, ServerSettings, TenantLimits};
use catshost::metrics::Metrics;
use catshost::routing::Route;
use catshost::{ComponentFile, Engine, Tenant, TenantComponent};
use http::{StatusCode, Version};
use support::{Process, TestServer, catshost, folder, get_host};

const LOADED: &str = "catshost_component_load_duration_seconds_count{outcome=\"loaded\"}";
const FAILED: &str = "catshost_component_load_duration_seconds_count{outcome=\"failed\"}";
const COLD: &str = "catshost_cold_requests_total";
const IN_MEMORY: &str = "catshost_components_loaded";
const BY_BUDGET: &str = "catshost_component_unloads_total{reason=\"budget\"}";
const BY_IDLE: &str = "catshost_component_unloads_total{reason=\"idle\"}";

/// A hello component of its own: it answers "hello from NAME" (NAME of
/// four characters), so no two tenants share compiled code or a cache entry.
fn hello(name: &str) -> Vec<u8> {
    assert_eq!(name.len(), 4, "the body keeps the fixture's length");
    let wat = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hello.wat"),
    )
    .unwrap();
    support::guest(&wat.replace("hello from wasm", &format!("hello from {name}")))
}

fn cache_entries(cache: &Path) -> usize {
    std::fs::read_dir(cache).map_or(0, |dir| {
        dir.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        })
        .count()
    })
}

fn sample(metrics: &Metrics, series: &str) -> f64 {
    metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits up to 20 s until `series` counts at least 1, else fails with
/// `what`.
async fn wait_for(metrics: &Metrics, series: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while sample(metrics, series) < 1.0 {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Tenants NAME (routed by `NAME.test`) of the files `names` in `dir`,
/// loaded on demand by `engine`.
fn tenants(dir: &Path, engine: &Engine, names: &[&str]) -> Vec<Tenant> {
    names
        .iter()
        .map(|name| Tenant {
            name: (*name).into(),
            component: TenantComponent::OnDemand(ComponentFile::new(
                dir.join(format!("{name}.wasm")),
                engine,
            )),
            routes: vec![Route::parse(&format!("{name}.test")).unwrap()],
            limits: TenantLimits::default(),
            access: Default::default(),
        })
        .collect()
}

/// A server of `tenants` with `loading`, and its metrics.
async fn serve(tenants: Vec<Tenant>, loading: LoadSettings) -> (TestServer, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let server = catshost::Server::builder()
        .settings(ServerSettings {
            loading,
            ..ServerSettings::default()
        })
        .metrics(metrics.clone())
        .build_tenants(tenants)
        .unwrap();
    (TestServer::serve(server, None).await, metrics)
}

async fn body_of(server: &TestServer, tenant: &str) -> (StatusCode, String) {
    let answer = get_host(
        server.addr,
        Version::HTTP_11,
        &format!("{tenant}.test"),
        "/",
    )
    .await;
    (answer.status, answer.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_loads_on_its_first_request_and_one_never_asked_is_never_compiled() {
    let dir = folder();
    for name in ["aaaa", "bbbb", "cccc"] {
        std::fs::write(dir.join(format!("{name}.wasm")), hello(name)).unwrap();
    }
    let cache = dir.join("cache");
    let engine = Engine::new().unwrap().with_compile_cache(cache.clone());
    let (server, metrics) = serve(
        tenants(&dir, &engine, &["aaaa", "bbbb", "cccc"]),
        LoadSettings::default(),
    )
    .await;
    // Ready, and nothing compiled.
    assert_eq!(cache_entries(&cache), 0);
    assert_eq!(sample(&metrics, IN_MEMORY), 0.0);

    for _ in 0..3 {
        assert_eq!(
            body_of(&server, "aaaa").await,
            (StatusCode::OK, "hello from aaaa\n".into())
        );
    }
    // One load, by the first request; the others found it loaded.
    assert_eq!(sample(&metrics, LOADED), 1.0);
    assert_eq!(sample(&metrics, COLD), 1.0);
    assert_eq!(sample(&metrics, IN_MEMORY), 1.0);
    assert!(sample(&metrics, "catshost_loaded_code_bytes") > 0.0);
    // Only the tenant asked for was compiled.
    assert_eq!(cache_entries(&cache), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_budget_the_least_recently_used_is_unloaded_without_cutting_its_request() {
    let dir = folder();
    for name in ["aaaa", "bbbb"] {
        std::fs::write(dir.join(format!("{name}.wasm")), hello(name)).unwrap();
    }
    std::fs::write(dir.join("slow.wasm"), support::fixture("slow")).unwrap();
    let engine = Engine::new().unwrap();
    // A budget no two components fit in: each load unloads the others.
    let loading = LoadSettings {
        max_loaded_code: 1,
        ..LoadSettings::default()
    };
    let (server, metrics) = serve(tenants(&dir, &engine, &["aaaa", "bbbb", "slow"]), loading).await;

    // A response in flight on the slow tenant: its head is out, its guest
    // sleeps 3 s before the rest.
    let addr = server.addr;
    let slow =
        tokio::spawn(async move { get_host(addr, Version::HTTP_11, "slow.test", "/3000").await });
    wait_for(&metrics, LOADED, "the slow tenant did not load").await;
    // Loading the others unloads it, least recently used first.
    assert_eq!(body_of(&server, "aaaa").await.0, StatusCode::OK);
    assert_eq!(body_of(&server, "bbbb").await.0, StatusCode::OK);
    assert_eq!(body_of(&server, "aaaa").await.0, StatusCode::OK);
    assert_eq!(
        sample(&metrics, LOADED),
        4.0,
        "slow, aaaa, bbbb, aaaa again"
    );
    assert_eq!(sample(&metrics, BY_BUDGET), 3.0);
    assert_eq!(sample(&metrics, IN_MEMORY), 1.0);
    assert!(!slow.is_finished(), "the slow guest still sleeps");

    // The unloaded tenant's request in flight ends whole.
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "started\nfinished\n");
    // And its next request loads it again.
    let again = get_host(server.addr, Version::HTTP_11, "slow.test", "/1").await;
    assert_eq!(again.body, "started\nfinished\n");
    assert_eq!(sample(&metrics, LOADED), 5.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_component_is_unloaded_and_the_next_request_loads_it_again() {
    let dir = folder();
    std::fs::write(dir.join("aaaa.wasm"), hello("aaaa")).unwrap();
    let engine = Engine::new().unwrap();
    let loading = LoadSettings {
        idle_unload: Duration::from_millis(200),
        ..LoadSettings::default()
    };
    let (server, metrics) = serve(tenants(&dir, &engine, &["aaaa"]), loading).await;
    assert_eq!(body_of(&server, "aaaa").await.0, StatusCode::OK);
    wait_for(&metrics, BY_IDLE, "the idle component stayed loaded").await;
    assert_eq!(sample(&metrics, IN_MEMORY), 0.0);
    assert_eq!(sample(&metrics, "catshost_loaded_code_bytes"), 0.0);
    assert_eq!(
        body_of(&server, "aaaa").await,
        (StatusCode::OK, "hello from aaaa\n".into())
    );
    assert_eq!(sample(&metrics, LOADED), 2.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_cannot_load_fails_its_requests_until_its_file_changes() {
    let dir = folder();
    std::fs::write(dir.join("good.wasm"), hello("good")).unwrap();
    std::fs::write(dir.join("junk.wasm"), b"\0asm\x0d\0\x01\0 not really").unwrap();
    let engine = Engine::new().unwrap();
    let (server, metrics) = serve(
        tenants(&dir, &engine, &["good", "junk"]),
        LoadSettings::default(),
    )
    .await;
    assert_eq!(
        body_of(&server, "junk").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(body_of(&server, "good").await.0, StatusCode::OK);
    // The failure is remembered: no load per request.
    assert_eq!(
        body_of(&server, "junk").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(sample(&metrics, FAILED), 1.0);
    assert_eq!(
        sample(
            &metrics,
            "catshost_guest_faults_total{tenant=\"junk\",kind=\"load\"}"
        ),
        2.0
    );
    // Fixed: the next request loads it.
    std::fs::write(dir.join("junk.wasm"), hello("junk")).unwrap();
    assert_eq!(
        body_of(&server, "junk").await,
        (StatusCode::OK, "hello from junk\n".into())
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_waits_past_the_load_timeout_gets_503_and_the_load_goes_on() {
    let dir = folder();
    std::fs::write(dir.join("aaaa.wasm"), hello("aaaa")).unwrap();
    let engine = Engine::new().unwrap();
    let loading = LoadSettings {
        load_timeout: Duration::ZERO,
        ..LoadSettings::default()
    };
    let (server, metrics) = serve(tenants(&dir, &engine, &["aaaa"]), loading).await;
    let first = get_host(server.addr, Version::HTTP_11, "aaaa.test", "/").await;
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(first.headers["retry-after"], "1");
    wait_for(&metrics, LOADED, "the load did not go on").await;
    assert_eq!(body_of(&server, "aaaa").await.0, StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_hands_a_loaded_component_on_unless_its_file_changed() {
    let dir = folder();
    for name in ["aaaa", "bbbb"] {
        std::fs::write(dir.join(format!("{name}.wasm")), hello(name)).unwrap();
    }
    let engine = Engine::new().unwrap();
    let (server, metrics) = serve(
        tenants(&dir, &engine, &["aaaa", "bbbb"]),
        LoadSettings::default(),
    )
    .await;
    assert_eq!(body_of(&server, "aaaa").await.0, StatusCode::OK);
    assert_eq!(body_of(&server, "bbbb").await.0, StatusCode::OK);
    assert_eq!(sample(&metrics, LOADED), 2.0);

    // bbbb's file changes; aaaa's does not.
    std::fs::write(dir.join("bbbb.wasm"), hello("BBBB")).unwrap();
    server
        .server
        .replace_tenants(tenants(&dir, &engine, &["aaaa", "bbbb"]))
        .unwrap();
    assert_eq!(
        body_of(&server, "aaaa").await,
        (StatusCode::OK, "hello from aaaa\n".into())
    );
    assert_eq!(sample(&metrics, LOADED), 2.0, "aaaa was handed on");
    assert_eq!(
        body_of(&server, "bbbb").await,
        (StatusCode::OK, "hello from BBBB\n".into())
    );
    assert_eq!(sample(&metrics, LOADED), 3.0, "bbbb was loaded again");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_compile_take_a_config_file_and_serve_starts_without_compiling() {
    let dir = folder();
    std::fs::write(dir.join("good.wasm"), hello("good")).unwrap();
    std::fs::write(dir.join("junk.wasm"), b"(component broken").unwrap();
    let config = dir.join("catshost.toml");
    let tenant = |name: &str| {
        format!(
            "[[tenant]]\nname = \"{name}\"\ncomponent = \"{name}.wasm\"\nroutes = [\"{name}.test\"]\n"
        )
    };
    std::fs::write(
        &config,
        format!(
            "[server]\naddr = \"127.0.0.1:0\"\n\n{}{}",
            tenant("good"),
            tenant("junk")
        ),
    )
    .unwrap();

    let output = catshost()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("tenant 'good': ") && stdout.contains("good.wasm: can be served"),
        "{stdout}"
    );
    assert!(
        stdout.contains("tenant 'junk': ") && stdout.contains("junk.wasm: cannot be served"),
        "{stdout}"
    );
    assert!(stdout.contains("1 of 2 tenants can be served"), "{stdout}");

    // `serve` starts with the broken tenant (it fails its own requests).
    let cache = dir.join("cache");
    let mut server = Process::serve_with(
        &[
            "--config",
            config.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        false,
    );
    assert_eq!(cache_entries(&cache), 0, "nothing compiled at start");
    server.child.kill().unwrap();
    let _ = server.wait_exit(Duration::from_secs(10));

    // `compile --config` fills the same cache serve reads.
    let output = catshost()
        .args(["compile", "--config"])
        .arg(&config)
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1 of 2 components"), "{stderr}");
    assert!(stderr.contains("junk.wasm"), "{stderr}");
    assert_eq!(cache_entries(&cache), 1);

    // Its entry is the one serve looks up: the first request compiles
    // nothing.
    let server = Process::serve_with(
        &[
            "--config",
            config.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        false,
    );
    let answer = get_host(server.addr, Version::HTTP_11, "good.test", "/").await;
    assert_eq!(answer.body, "hello from good\n");
    let lines = server.stderr();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("component loaded from the compile cache")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("component compiled")),
        "{lines:?}"
    );
    assert_eq!(cache_entries(&cache), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_requires_a_websocket_handler_fails_to_load_a_component_without_one() {
    let dir = folder();
    std::fs::write(dir.join("aaaa.wasm"), hello("aaaa")).unwrap();
    let engine = Engine::new().unwrap();
    let mut tenants = tenants(&dir, &engine, &["aaaa"]);
    if let TenantComponent::OnDemand(file) = &mut tenants[0].component {
        // A config file's tenant with `websockets = true`.
        file.requires_websocket_handler = true;
    }
    let (server, metrics) = serve(tenants, LoadSettings::default()).await;
    assert_eq!(
        body_of(&server, "aaaa").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(sample(&metrics, FAILED), 1.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_tenant_series_tenants_are_counted_together_and_idle_ones_not_at_all() {
    let dir = folder();
    for name in ["aaaa", "bbbb", "cccc", "dddd"] {
        std::fs::write(dir.join(format!("{name}.wasm")), hello(name)).unwrap();
    }
    let engine = Engine::new().unwrap();
    let metrics = Arc::new(Metrics::new());
    let server = catshost::Server::builder()
        .settings(ServerSettings {
            max_tenant_series: 2,
            ..ServerSettings::default()
        })
        .metrics(metrics.clone())
        .build_tenants(tenants(&dir, &engine, &["aaaa", "bbbb", "cccc", "dddd"]))
        .unwrap();
    let server = TestServer::serve(server, None).await;
    for tenant in ["bbbb", "cccc", "aaaa", "bbbb"] {
        assert_eq!(body_of(&server, tenant).await.0, StatusCode::OK);
    }
    let requests = |tenant: &str| {
        sample(
            &metrics,
            &format!(
                "catshost_requests_total{{tenant=\"{tenant}\",status=\"200\",protocol=\"HTTP/1.1\"}}"
            ),
        )
    };
    // The first two with traffic keep their label; the third is one of
    // the others; the one without traffic has no series at all.
    assert_eq!(requests("bbbb"), 2.0);
    assert_eq!(requests("cccc"), 1.0);
    assert_eq!(requests("_other"), 1.0);
    let text = metrics.encode();
    assert!(!text.contains("tenant=\"aaaa\""), "{text}");
    assert!(!text.contains("tenant=\"dddd\""), "{text}");
    server.stop().await;
}
