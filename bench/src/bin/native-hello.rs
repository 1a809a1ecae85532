//! The limit catshost is measured against: a native hyper server answering
//! "hello from native" (and echoing POST bodies) with the same socket, tokio
//! and hyper settings as catshost, and no WebAssembly.
//!
//!     native-hello --addr 127.0.0.1:8081 [--tls]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use clap::Parser;
use http::{Response, header};
use http_body_util::{Either, Full};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8081")]
    addr: SocketAddr,
    /// HTTPS with a self-signed certificate, ALPN h2 and http/1.1.
    #[arg(long)]
    tls: bool,
    /// Worker threads [default: the number of cores].
    #[arg(long)]
    workers: Option<usize>,
}

/// The allocator catshost's binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = args.workers {
        runtime.worker_threads(workers);
    }
    runtime.enable_all().build()?.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = catshost::net::bind(args.addr, 1024, false)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let tls = if args.tls {
        let (tls, _, _) = catshost::Tls::self_signed(catshost::config::HttpVersions::Both)?;
        Some(tokio_rustls::TlsAcceptor::from(tls.server_config()))
    } else {
        None
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    eprintln!(
        "native-hello: serving {}://{}",
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (builder, tls) = (builder.clone(), tls.clone());
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async {
                    let body = if req.method() == http::Method::POST {
                        Either::Right(req.into_body())
                    } else {
                        Either::Left(Full::new(Bytes::from_static(b"hello from native\n")))
                    };
                    let mut response = Response::new(body);
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                    Ok::<_, Infallible>(response)
                });
            match tls {
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
                Some(acceptor) => {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let builder = if h2 {
                        builder.http2_only()
                    } else {
                        builder.http1_only()
                    };
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}
