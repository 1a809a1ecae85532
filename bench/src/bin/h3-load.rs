//! An HTTPS load client of HTTP/3 (quinn + h3, the stack catshost serves
//! it with) or of HTTP/2 over TLS (hyper + tokio-rustls), so that the two
//! are compared through the same client code: `--connections`
//! connections, each with `--streams` requests in flight, for `--seconds`;
//! a GET, or a POST of `--post` bytes read back whole (an echo). Prints
//! one line: protocol, requests/s, p50 and p99 latency, errors.
//!
//! `--idle N` instead opens N connections, sends one request on each,
//! prints `ready` and holds them open (idle) until stdin closes: the
//! server's memory per idle connection is measured meanwhile
//! (bench/h3.sh).
//!
//!     target/release/h3-load --proto h3 --url https://localhost:PORT/ --ca cert.pem

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, Bytes};
use catshost_bench::percentile;
use clap::Parser;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

#[derive(Parser)]
struct Args {
    /// `h3` or `h2` (over TLS).
    #[arg(long)]
    proto: String,
    /// `https://NAME:PORT/PATH`: NAME is the SNI and `:authority`; the
    /// connection goes to 127.0.0.1:PORT.
    #[arg(long)]
    url: Uri,
    /// The server's certificate (PEM), trusted as a root.
    #[arg(long)]
    ca: std::path::PathBuf,
    #[arg(long, default_value_t = 2)]
    connections: usize,
    #[arg(long, default_value_t = 16)]
    streams: usize,
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// POST this many bytes and read the whole response.
    #[arg(long)]
    post: Option<usize>,
    /// Hold this many idle connections instead (see above).
    #[arg(long)]
    idle: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = Target::new(&args)?;
    if let Some(n) = args.idle {
        return hold_idle(&target, &args.proto, n).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let conn = Conn::open(&target, &args.proto).await?;
        for _ in 0..args.streams {
            let (conn, target) = (conn.clone(), target.clone());
            let (stop, errors) = (stop.clone(), errors.clone());
            tasks.spawn(async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    match conn.request(&target).await {
                        Ok(()) => latencies.push(started.elapsed()),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
            });
        }
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rps = latencies.len() as f64 / elapsed;
    let p50 = percentile(&mut latencies, 50.0);
    let p99 = percentile(&mut latencies, 99.0);
    println!(
        "{} {:.0} req/s p50 {:.3} ms p99 {:.3} ms errors {}",
        args.proto,
        rps,
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Opens `n` connections, one request on each, then holds them until
/// stdin closes.
async fn hold_idle(target: &Target, proto: &str, n: usize) -> anyhow::Result<()> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let conn = Conn::open(target, proto).await?;
        conn.request(target).await?;
        conns.push(conn);
    }
    println!("ready");
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line)? > 0 {}
    drop(conns);
    Ok(())
}

/// Where the requests go, and what they are.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    name: String,
    uri: Uri,
    tls: Arc<rustls::ClientConfig>,
    body: Option<Bytes>,
}

impl Target {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let name = args.url.host().context("the URL has no host")?.to_string();
        let port = args.url.port_u16().context("the URL has no port")?;
        let pem = std::fs::read(&args.ca).context("reading --ca")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = match args.proto.as_str() {
            "h3" => vec![b"h3".to_vec()],
            "h2" => vec![b"h2".to_vec()],
            other => bail!("unknown --proto {other}: h3 or h2"),
        };
        Ok(Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            name,
            uri: args.url.clone(),
            tls: Arc::new(tls),
            body: args.post.map(|n| Bytes::from(vec![b'x'; n])),
        })
    }

    fn request(&self) -> Request<()> {
        let method = match self.body {
            Some(_) => Method::POST,
            None => Method::GET,
        };
        let mut request = Request::builder().method(method).uri(self.uri.clone());
        if let Some(body) = &self.body {
            request = request.header(http::header::CONTENT_LENGTH, body.len());
        }
        request.body(()).expect("a valid request")
    }
}

/// One connection, shared by its streams.
#[derive(Clone)]
enum Conn {
    H3 {
        send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
        /// Kept for as long as the connection is.
        _endpoint: quinn::Endpoint,
    },
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    async fn open(target: &Target, proto: &str) -> anyhow::Result<Self> {
        if proto == "h3" {
            // Buffers as the server's (server/quic.rs): with the default,
            // the kernel drops a burst's datagrams.
            let socket = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )?;
            socket.set_recv_buffer_size(4 << 20)?;
            socket.set_send_buffer_size(4 << 20)?;
            socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
            let mut endpoint = quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                None,
                socket.into(),
                Arc::new(quinn::TokioRuntime),
            )?;
            let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(target.tls.clone())?;
            endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
            let quic = endpoint.connect(target.addr, &target.name)?.await?;
            let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(quic)).await?;
            tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
            Ok(Conn::H3 {
                send,
                _endpoint: endpoint,
            })
        } else {
            let tcp = tokio::net::TcpStream::connect(target.addr).await?;
            tcp.set_nodelay(true)?;
            let connector = tokio_rustls::TlsConnector::from(target.tls.clone());
            let name = ServerName::try_from(target.name.clone())?;
            let tls = connector.connect(name, tcp).await?;
            let (send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await?;
            tokio::spawn(conn);
            Ok(Conn::H2(send))
        }
    }

    /// One request, its response read whole; an error for anything but 200.
    async fn request(&self, target: &Target) -> anyhow::Result<()> {
        match self {
            Conn::H3 { send, .. } => {
                let mut send = send.clone();
                let stream = send.send_request(target.request()).await?;
                let (mut tx, mut rx) = stream.split();
                let body = target.body.clone();
                let sending = async move {
                    if let Some(body) = body {
                        tx.send_data(body).await?;
                    }
                    tx.finish().await?;
                    anyhow::Ok(())
                };
                let receiving = async move {
                    let response = rx.recv_response().await?;
                    let mut n = 0;
                    while let Some(data) = rx.recv_data().await? {
                        n += data.remaining();
                    }
                    anyhow::Ok((response.status(), n))
                };
                let (sent, (status, _)) = tokio::try_join!(sending, receiving)?;
                let () = sent;
                anyhow::ensure!(status == 200, "status {status}");
            }
            Conn::H2(send) => {
                let mut send = send.clone();
                let (parts, ()) = target.request().into_parts();
                let body = Full::new(target.body.clone().unwrap_or_default());
                let response = send.send_request(Request::from_parts(parts, body)).await?;
                let status = response.status();
                response.into_body().collect().await?;
                anyhow::ensure!(status == 200, "status {status}");
            }
        }
        Ok(())
    }
}
