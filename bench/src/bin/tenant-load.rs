//! The isolation benchmark's load: a quiet tenant's latency, measured at a
//! steady rate, while (optionally) a noisy tenant's clients keep every one of
//! its permits busy with guests that compute forever.
//!
//!   tenant-load --addr 127.0.0.1:8080 --quiet-host quiet.test \
//!       [--noisy-host noisy.test --noisy-clients 16] --rate 200 --seconds 10
//!
//! Prints one line: `p50_ms p99_ms max_ms ok failed noisy_503 noisy_other`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    addr: SocketAddr,
    /// Host header of the quiet tenant.
    #[arg(long)]
    quiet_host: String,
    /// Host header of the noisy tenant; none: measure the quiet one alone.
    #[arg(long)]
    noisy_host: Option<String>,
    /// Paths the noisy clients ask for, comma-separated (by default a
    /// guest that never ends); each client goes through them in turn.
    #[arg(long, default_value = "/loop", value_delimiter = ',')]
    noisy_path: Vec<String>,
    /// Noisy clients, each with its own connection: more than the noisy
    /// tenant's permits, so some always wait.
    #[arg(long, default_value = "16")]
    noisy_clients: usize,
    /// Quiet requests per second (one connection, one request at a time).
    #[arg(long, default_value = "200")]
    rate: u32,
    #[arg(long, default_value = "10")]
    seconds: u64,
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(send)
}

async fn get(send: &mut Sender, host: &str, path: &str) -> anyhow::Result<StatusCode> {
    send.ready().await?;
    let request = Request::get(path)
        .header(http::header::HOST, host)
        .body(Empty::new())?;
    let response = send.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));

    let mut noisy = Vec::new();
    if let Some(host) = &args.noisy_host {
        for client in 0..args.noisy_clients {
            let (stop, refused, other) = (stop.clone(), refused.clone(), other.clone());
            let (host, paths, addr) = (host.clone(), args.noisy_path.clone(), args.addr);
            noisy.push(tokio::spawn(async move {
                let mut connection = None;
                let mut paths = paths.iter().cycle().skip(client);
                while !stop.load(Ordering::Relaxed) {
                    let path = paths.next().expect("at least one path");
                    // Keep-alive, and a new connection after a failure.
                    let send = match &mut connection {
                        Some(send) => send,
                        None => match connect(addr).await {
                            Ok(send) => connection.insert(send),
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        },
                    };
                    match get(send, &host, path).await {
                        Ok(StatusCode::SERVICE_UNAVAILABLE) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            // Like a client that honours Retry-After, but
                            // far sooner: keep the tenant saturated.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Ok(_) => {
                            other.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            other.fetch_add(1, Ordering::Relaxed);
                            connection = None;
                        }
                    }
                }
            }));
        }
        // Let the noisy tenant fill up before measuring.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let mut send = connect(args.addr).await.context("connecting")?;
    let mut latencies = Vec::new();
    let mut failed = 0u64;
    let interval = Duration::from_secs(1) / args.rate;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = Instant::now() + Duration::from_secs(args.seconds);
    while Instant::now() < end {
        tick.tick().await;
        let started = Instant::now();
        match get(&mut send, &args.quiet_host, "/").await {
            Ok(StatusCode::OK) => latencies.push(started.elapsed()),
            _ => {
                failed += 1;
                send = connect(args.addr).await?;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in noisy {
        task.abort();
    }

    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{:.3} {:.3} {:.3} {} {} {} {}",
        at(0.50),
        at(0.99),
        latencies.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        latencies.len(),
        failed,
        refused.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    );
    Ok(())
}
