//! The per-request cost of the WebAssembly side alone: a new store and
//! instance of the hello component, its `handle` call, its response body
//! read, and the instance dropped. No sockets. With and without the pool.
//!
//!     target/release/instance-cost [--requests 20000] [--component PATH]

use std::time::{Duration, Instant};

use bytes::Bytes;
use catshost::http::RequestId;
use catshost::wasm::{GuestTasks, InstanceLimits, RequestInfo};
use catshost::{Handler, Pool, Runtime};
use clap::Parser;
use http_body_util::{BodyExt, Empty};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20_000)]
    requests: u32,
    /// Another component than the hello fixture (a guest example, say).
    #[arg(long)]
    component: Option<std::path::PathBuf>,
    /// Measure only the pooled allocator (for a profiler).
    #[arg(long)]
    pooled_only: bool,
}

async fn per_request(handler: &Handler, requests: u32) -> anyhow::Result<Duration> {
    let tasks = GuestTasks::default();
    // As the server does: instance creation time is counted per tenant.
    let tenant: std::sync::Arc<str> = "bench".into();
    let metrics = std::sync::Arc::new(catshost::metrics::Metrics::new());
    let access = std::sync::Arc::new(catshost::wasm::WasiAccess::default());
    let run = async |n: u32| -> anyhow::Result<Duration> {
        let start = Instant::now();
        for _ in 0..n {
            let request = http::Request::get("http://bench/").body(Empty::<Bytes>::new())?;
            let info = RequestInfo {
                id: RequestId::next(),
                tls: false,
                limits: InstanceLimits::default(),
                body_limit: None,
                permit: None,
                cpu: None,
                tenant: tenant.clone(),
                metrics: Some(metrics.clone()),
                access: access.clone(),
            };
            let response = handler.handle(request, info, &tasks).await?;
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
        }
        Ok(start.elapsed() / n)
    };
    run(requests / 10).await?; // warm-up
    run(requests).await
}

/// The allocator catshost's binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wit = catshost_wat::Wit::workspace()?;
    let hello = match &args.component {
        Some(path) => std::fs::read(path)?,
        None => wit.component_from_wat_file(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hello.wat"),
        )?,
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!("| allocation | per request (instantiate + handle + body + drop) |\n|---|---|");
    let modes: &[bool] = if args.pooled_only {
        &[true]
    } else {
        &[false, true]
    };
    for &pooled in modes {
        let runtime = if pooled {
            Runtime::with_pool(Pool {
                instances: 1024,
                max_memory: 128 << 20,
            })?
        } else {
            Runtime::new()?
        };
        let handler = runtime.load_bytes("hello", &hello)?;
        let cost = tokio.block_on(per_request(&handler, args.requests))?;
        let label = if runtime.is_pooled() {
            "pooling (1 MiB kept resident)"
        } else {
            "on demand"
        };
        println!("| {label} | {:.1} us |", cost.as_secs_f64() * 1e6);
    }
    Ok(())
}
