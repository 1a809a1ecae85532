//! WebSocket echoes, measured: a catshost server in a child process, and
//! this program's sockets against it. The echo is either the library's
//! upgrade hook (tests/fixtures/ws-page.wat accepts the upgrade at /ws, a
//! tokio-tungstenite echo is the hook), or a WebSocket handler component
//! (`--component`: the Rust chat's `/echo`, the Python echo). Prints, for
//! cleartext and TLS: the server's resident memory per idle socket, then
//! messages/s and round-trip p50/p99 with every socket sending a message
//! and waiting for its echo.
//!
//!     cargo build --release -p catshost-bench
//!     target/release/ws-echo --sockets 1000 --seconds 10
//!     target/release/ws-echo --component target/guest-examples/rust-chat.wasm
//!     target/release/ws-echo --component target/guest-examples/rust-chat.wasm --per-instance 1
//!     target/release/ws-echo --component target/guest-examples/rust-chat.wasm --attack
//!
//! `--attack` sends the sockets through hostile clients instead, all at
//! once: messages past the limit (1009), text that is not UTF-8 (1007), and
//! clients that send and never read (cut at the server's write timeout,
//! 2 s here), with the server's RSS before, at the peak and after.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use catshost::Upgraded;
use catshost::config::HttpVersions;
use catshost_bench::percentile;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// The hook's read buffer per socket.
const READ_BUFFER: usize = 4096;

#[derive(Parser)]
struct Args {
    /// Serve (the child this program starts), instead of measuring.
    #[arg(long)]
    serve: bool,
    /// With --serve: over TLS, the certificate's PEM written to this file.
    #[arg(long)]
    tls_cert: Option<std::path::PathBuf>,
    /// Sockets open at once.
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// Seconds of echo load per run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bytes per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// A WebSocket handler component to echo with (at `/echo`), instead
    /// of the upgrade hook.
    #[arg(long)]
    component: Option<std::path::PathBuf>,
    /// With --component: sockets per instance of it.
    #[arg(long, default_value_t = catshost::config::DEFAULT_WEBSOCKET_SOCKETS_PER_INSTANCE)]
    per_instance: usize,
    /// Only cleartext (ws://), not TLS too.
    #[arg(long)]
    clear_only: bool,
    /// Hostile clients instead of the echo load (with --component).
    #[arg(long)]
    attack: bool,
}

/// The server's write timeout in --attack runs.
const ATTACK_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// The allocator catshost's binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.serve {
        return serve(&args).await;
    }
    if args.attack {
        return attack(&args).await;
    }
    match &args.component {
        Some(component) => println!(
            "# WebSocket echo by {} ({} sockets per instance)\n",
            component.display(),
            args.per_instance
        ),
        None => println!("# WebSocket echo through the upgrade hook\n"),
    }
    println!(
        "{} sockets, {}-byte text messages, {} s per run; server and client share the machine.\n",
        args.sockets, args.size, args.seconds
    );
    println!(
        "| transport | server RSS with 1 socket MiB | with all idle MiB | per idle socket KiB | messages/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|"
    );
    for tls in [false, true] {
        if !(tls && args.clear_only) {
            run(&args, tls).await?;
        }
    }
    Ok(())
}

/// The server: the component with its WebSocket handler, or ws-page.wat
/// with the echo hook.
async fn serve(args: &Args) -> anyhow::Result<()> {
    let mut builder = catshost::Server::builder();
    builder.access_log(false);
    let server = match &args.component {
        Some(path) => {
            let cache = std::env::temp_dir().join("catshost-ws-echo-cache");
            let component = catshost::Engine::new()?
                .with_compile_cache(cache)
                .load_file(path)?;
            if args.attack {
                builder.write_timeout(ATTACK_WRITE_TIMEOUT);
            }
            builder.limits(catshost::config::TenantLimits {
                websocket_sockets_per_instance: args.per_instance,
                max_websockets: args.sockets + 1,
                ..Default::default()
            });
            builder.build(component)
        }
        None => {
            let wit = catshost_wat::Wit::workspace()?;
            let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/ws-page.wat");
            let component = catshost::Engine::new()?
                .load_bytes("ws-page", &wit.component_from_wat_file(&fixture)?)?;
            builder.upgrade(echo);
            builder.build(component)
        }
    };
    let tls_cert = args.tls_cert.clone();
    let ready = server.ready();
    let addr: SocketAddr = "127.0.0.1:0".parse()?;
    let serving = tokio::spawn(async move {
        match tls_cert {
            Some(path) => {
                let (tls, _, pem) = catshost::Tls::self_signed(HttpVersions::Both)?;
                std::fs::write(path, pem)?;
                server.serve_tls(addr, tls).await?;
            }
            None => server.serve_clear(addr).await?,
        }
        anyhow::Ok(())
    });
    let addr = ready.await.context("the server did not start")?;
    println!("ready {addr}");
    serving.await??;
    Ok(())
}

async fn echo(upgraded: Upgraded) {
    // tungstenite's default read buffer is 128 KiB a socket; messages
    // here are small.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        upgraded.io,
        Role::Server,
        Some(config),
    )
    .await;
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}

struct ServerChild {
    child: Child,
    addr: SocketAddr,
}

impl ServerChild {
    fn start(args: &Args, cert: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("--serve")
            .arg("--sockets")
            .arg(args.sockets.to_string())
            .arg("--per-instance")
            .arg(args.per_instance.to_string())
            .stdout(Stdio::piped());
        if let Some(component) = &args.component {
            command.arg("--component").arg(component);
        }
        if args.attack {
            command.arg("--attack");
        }
        if let Some(cert) = cert {
            command.arg("--tls-cert").arg(cert);
        }
        let mut child = command.spawn()?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let addr = loop {
            let line = lines
                .next()
                .context("the server exited before it was ready")??;
            if let Some(addr) = line.strip_prefix("ready ") {
                break addr.parse()?;
            }
        };
        Ok(Self { child, addr })
    }

    fn rss_mib(&self) -> f64 {
        rss_of(self.child.id())
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn connect(
    addr: SocketAddr,
    tls: Option<&tokio_rustls::TlsConnector>,
    path: &str,
) -> anyhow::Result<tokio_tungstenite::WebSocketStream<Box<dyn Io>>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (io, url): (Box<dyn Io>, String) = match tls {
        Some(connector) => {
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            let stream = connector.connect(name, tcp).await?;
            (
                Box::new(stream),
                format!("wss://localhost:{}{path}", addr.port()),
            )
        }
        None => (Box::new(tcp), format!("ws://{addr}{path}")),
    };
    let (ws, response) = tokio_tungstenite::client_async(url, io).await?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        bail!("the upgrade got {}", response.status());
    }
    Ok(ws)
}

async fn run(args: &Args, tls: bool) -> anyhow::Result<()> {
    let cert = std::env::temp_dir().join(format!("ws-echo-{}.pem", std::process::id()));
    let server = ServerChild::start(args, tls.then_some(cert.as_path()))?;
    let path = if args.component.is_some() {
        "/echo"
    } else {
        "/ws"
    };
    let connector = if tls {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&cert)?;
        for der in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            roots.add(der?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
    } else {
        None
    };
    // One socket first, kept open: the component is loaded and its first
    // instance made (what every socket shares), and what loading it freed
    // is given back before the baseline is read.
    let mut sockets = Vec::with_capacity(args.sockets);
    sockets.push(connect(server.addr, connector.as_ref(), path).await?);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = server.rss_mib();
    for _ in 1..args.sockets {
        sockets.push(connect(server.addr, connector.as_ref(), path).await?);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = server.rss_mib();

    let text = "x".repeat(args.size);
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            let text = text.clone();
            tokio::spawn(async move {
                let mut rtts = Vec::new();
                while Instant::now() < end {
                    let sent = Instant::now();
                    ws.send(Message::text(text.clone())).await?;
                    match ws.next().await {
                        Some(Ok(Message::Text(echo))) if echo.as_str() == text => {}
                        other => bail!("no echo: {other:?}"),
                    }
                    rtts.push(sent.elapsed());
                }
                let _ = ws.close(None).await;
                anyhow::Ok(rtts)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let rate = all.len() as f64 / elapsed.as_secs_f64();
    let p50 = percentile(&mut all, 50.0);
    let p99 = percentile(&mut all, 99.0);
    println!(
        "| {} | {before:.1} | {idle:.1} | {:.1} | {rate:.0} | {:.2} | {:.2} |",
        if tls { "wss (TLS)" } else { "ws" },
        (idle - before) * 1024.0 / (args.sockets - 1).max(1) as f64,
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
    );
    let _ = std::fs::remove_file(&cert);
    Ok(())
}

/// One hostile client per socket, all at once, for each attack in turn.
async fn attack(args: &Args) -> anyhow::Result<()> {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    if args.component.is_none() {
        bail!("--attack needs --component (a WebSocket handler with /echo)");
    }
    let server = ServerChild::start(args, None)?;
    println!("# WebSocket attacks, {} sockets at once\n", args.sockets);
    println!(
        "| attack | closed as expected | code | slowest ms | server RSS before MiB | peak MiB | after MiB |\n|---|---|---|---|---|---|---|"
    );
    let limit = catshost::config::DEFAULT_MAX_WEBSOCKET_MESSAGE;
    // The last twice: the second round shows what the first left held.
    for attack in [
        "message past the limit",
        "text that is not UTF-8",
        "send, never read",
        "send, never read (again)",
    ] {
        let before = server.rss_mib();
        let peak = Arc::new(std::sync::Mutex::new(before));
        let sampler = {
            let (peak, pid) = (peak.clone(), server.child.id());
            tokio::spawn(async move {
                loop {
                    let rss = rss_of(pid);
                    {
                        let mut peak = peak.lock().unwrap();
                        *peak = peak.max(rss);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let mut sockets = Vec::with_capacity(args.sockets);
        for _ in 0..args.sockets {
            sockets.push(connect(server.addr, None, "/echo").await?);
        }
        let started = Instant::now();
        let tasks: Vec<_> = sockets
            .into_iter()
            .map(|mut ws| {
                tokio::spawn(async move {
                    match attack {
                        "message past the limit" => {
                            ws.send(Message::binary(vec![0u8; limit + 1])).await?
                        }
                        "text that is not UTF-8" => {
                            let frame =
                                Frame::message(vec![0xffu8, 0xfe], OpCode::Data(Data::Text), true);
                            ws.send(Message::Frame(frame)).await?
                        }
                        _ => {
                            // Echoes pile up until the server waits on us;
                            // we go on sending (and never read) until it
                            // cuts the connection.
                            let chunk = Message::binary(vec![0u8; 60_000]);
                            let give_up = Instant::now() + Duration::from_secs(60);
                            while Instant::now() < give_up {
                                let sent = tokio::time::timeout(
                                    Duration::from_millis(500),
                                    ws.send(chunk.clone()),
                                );
                                if let Ok(Err(_)) = sent.await {
                                    return anyhow::Ok((None, started.elapsed()));
                                }
                            }
                            bail!("not cut within 60 s");
                        }
                    }
                    loop {
                        match ws.next().await {
                            Some(Ok(Message::Close(frame))) => {
                                return Ok((frame.map(|f| u16::from(f.code)), started.elapsed()));
                            }
                            Some(Ok(_)) => continue,
                            _ => return Ok((None, started.elapsed())),
                        }
                    }
                })
            })
            .collect();
        let mut codes = std::collections::BTreeMap::<Option<u16>, usize>::new();
        let mut slowest = Duration::ZERO;
        for task in tasks {
            let (code, took) = task.await??;
            *codes.entry(code).or_default() += 1;
            slowest = slowest.max(took);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        sampler.abort();
        let after = server.rss_mib();
        let peak = *peak.lock().unwrap();
        let (want, expected) = match attack {
            "message past the limit" => (Some(1009), "1009"),
            "text that is not UTF-8" => (Some(1007), "1007"),
            _ => (None, "cut (no frame)"),
        };
        let ok = codes.get(&want).copied().unwrap_or(0);
        println!(
            "| {attack} | {ok}/{} | {expected} (all: {codes:?}) | {:.0} | {before:.1} | {peak:.1} | {after:.1} |",
            args.sockets,
            slowest.as_secs_f64() * 1e3,
        );
    }
    Ok(())
}

fn rss_of(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}
