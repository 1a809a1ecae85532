//! Serving one connection: hyper-util's auto builder speaks HTTP/1.1 and
//! HTTP/2 (by prior knowledge, or chosen by ALPN over TLS) on the same port.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Service;

/// hyper's smallest allowed read buffer.
const MIN_BUF_SIZE: usize = 8192;

/// How long a client may take to send a request head by default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head by default: 64 KiB.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 << 10;

/// The HTTP settings a server applies to every connection.
#[derive(Clone, Copy, Debug)]
pub struct HttpSettings {
    /// How long a client may take to send a request head (and how long an
    /// idle keep-alive connection stays open). Default is 30 seconds.
    pub header_read_timeout: Duration,
    /// The largest request head (HTTP/1) or header list (HTTP/2), in bytes;
    /// past it the request gets 431. Default is 64 KiB.
    pub max_header_size: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
        }
    }
}

/// The HTTP settings of a server, ready to serve connections.
#[derive(Clone, Debug)]
pub(crate) struct ConnBuilder {
    inner: auto::Builder<TokioExecutor>,
}

impl ConnBuilder {
    pub(crate) fn new(settings: &HttpSettings) -> Self {
        let mut inner = auto::Builder::new(TokioExecutor::new());
        inner
            .http1()
            // The timer makes the header read timeout work. hyper starts it
            // whenever it waits for a request head, so it also closes idle
            // keep-alive connections.
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            // Past it: 431.
            .max_buf_size(settings.max_header_size.max(MIN_BUF_SIZE));
        // Not `pipeline_flush(true)`: with it, hyper 1.x stops flushing while
        // request bytes keep arriving, so a client that uploads while it
        // downloads (an echo) made the server buffer the whole response
        // (measured: +97 MiB peak memory for a 100 MiB echo, +2 MiB without).
        // Pipelined requests are answered in order either way.
        inner
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(settings.max_header_size).unwrap_or(u32::MAX));
        Self { inner }
    }

    /// Serves `io` until the client closes it, the connection fails, or a
    /// graceful stop (through `watcher`) lets it finish.
    pub(crate) async fn serve<I>(&self, io: I, service: Arc<Service>, tls: bool, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = hyper::service::service_fn(move |req| {
            let service = service.clone();
            async move { service.serve(req, tls).await }
        });
        let conn = self.inner.serve_connection(TokioIo::new(io), service);
        if let Err(error) = watcher.watch(conn).await {
            // Resets, bad requests, timeouts: the client's business.
            tracing::debug!(error = %crate::error::chain(&*error), "connection ended with an error");
        }
    }
}
