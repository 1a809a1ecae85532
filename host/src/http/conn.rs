//! Serving one connection: hyper-util's auto builder speaks HTTP/1.1 and
//! HTTP/2 (by prior knowledge, or chosen by ALPN over TLS) on the same port.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Service;

/// The HTTP settings of a server, applied to every connection it accepts.
#[derive(Clone, Debug)]
pub(crate) struct ConnBuilder {
    inner: auto::Builder<TokioExecutor>,
}

impl ConnBuilder {
    pub(crate) fn new() -> Self {
        let mut inner = auto::Builder::new(TokioExecutor::new());
        inner
            .http1()
            // A timer makes hyper's header read timeout (30 s) work: a client
            // that dribbles its headers is cut off (slowloris).
            .timer(TokioTimer::new());
        // Not `pipeline_flush(true)`: with it, hyper 1.x stops flushing while
        // request bytes keep arriving, so a client that uploads while it
        // downloads (an echo) made the server buffer the whole response
        // (measured: +97 MiB peak memory for a 100 MiB echo, +2 MiB without).
        // Pipelined requests are answered in order either way.
        inner.http2().timer(TokioTimer::new());
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
