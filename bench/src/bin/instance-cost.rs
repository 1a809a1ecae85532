//! The per-request cost of the WebAssembly side alone: a new store and
//! instance of the hello component, its `handle` call, its response body
//! read, and the instance dropped. No sockets. With and without the pool.
//!
//!     target/release/instance-cost [--requests 20000] [--component PATH]

use std::time::{Duration, Instant};

use bytes::Bytes;
use catshost::config::{InstanceLimits, WasiAccess};
use catshost::wasm::{Call, CallInfo, GuestPre, InstanceCap, Instances, Sandbox};
use catshost::{Engine, Pool, RequestId};
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

async fn per_request(component: &GuestPre, requests: u32) -> anyhow::Result<Duration> {
    // As the server does: one tenant's fresh instances.
    let instances = Instances::new(
        component,
        Sandbox {
            tenant: "bench".into(),
            limits: InstanceLimits::default(),
            access: WasiAccess::default(),
            opened: Sandbox::open_dirs(&WasiAccess::default()),
            log_budget: Default::default(),
            outbound_connections: Default::default(),
            cpu: None,
            upstream: std::sync::Arc::new(catshost::net::Client),
            tenants: None,
            max_instances: usize::MAX,
            instance_cap: InstanceCap::new(usize::MAX),
            account: catshost::account::Account::unlimited(),
            events: None,
        },
    );
    let run = async |n: u32| -> anyhow::Result<Duration> {
        let start = Instant::now();
        for _ in 0..n {
            let request = http::Request::get("http://bench/").body(
                Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )?;
            let info = CallInfo {
                id: RequestId::next(),
                https: false,
                depth: 0,
            };
            let Call {
                mut answer,
                mut run,
            } = instances.serve(request, info)?;
            // The guest runs while its answer is awaited, then while its
            // body is read, as in the server's request task.
            let response = std::future::poll_fn(|cx| {
                use std::future::Future;
                use std::pin::Pin;
                if !run.is_finished() {
                    let _ = Pin::new(&mut run).poll(cx);
                }
                Pin::new(&mut answer).poll(cx)
            })
            .await
            .ok_or_else(|| anyhow::anyhow!("the guest gave no response"))??;
            let body = response.into_body().collect();
            let body = if run.is_finished() {
                body.await
            } else {
                tokio::join!(body, run).0
            };
            body.map_err(|e| anyhow::anyhow!(e))?;
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
        let engine = if pooled {
            Engine::with_pool(Pool {
                instances: 1024,
                max_memory: 128 << 20,
            })?
        } else {
            Engine::new()?
        };
        let component = engine.load_bytes("hello", &hello)?;
        let cost = tokio.block_on(per_request(&component, args.requests))?;
        let label = if engine.is_pooled() {
            "pooling (1 MiB kept resident)"
        } else {
            "on demand"
        };
        println!("| {label} | {:.1} us |", cost.as_secs_f64() * 1e6);
    }
    Ok(())
}
