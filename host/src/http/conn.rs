//! Serving one connection with hyper: HTTP/1.1, HTTP/2, or both on one port
//! (by prior knowledge in cleartext, chosen by ALPN over TLS), with the
//! server's HTTP settings.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Dispatch;

/// hyper's smallest allowed read buffer.
const MIN_BUF_SIZE: usize = 8192;

/// How long a client may take to send a request head by default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head by default: 64 KiB.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 << 10;

/// The HTTP versions a server speaks (Httpcats' `Both | HTTP_1_1 | H2`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpVersions {
    /// HTTP/1.1 and HTTP/2: by ALPN over TLS (HTTP/1.1 when the client
    /// offers none), by prior knowledge in cleartext.
    #[default]
    Both,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only.
    H2,
}

impl HttpVersions {
    /// The ALPN protocol IDs to offer over TLS, preferred first.
    pub fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            HttpVersions::Both => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            HttpVersions::Http1 => vec![b"http/1.1".to_vec()],
            HttpVersions::H2 => vec![b"h2".to_vec()],
        }
    }
}

impl FromStr for HttpVersions {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "both" => Ok(HttpVersions::Both),
            "http1" => Ok(HttpVersions::Http1),
            "h2" => Ok(HttpVersions::H2),
            _ => Err(format!(
                "unknown HTTP version '{text}': expected both, http1 or h2"
            )),
        }
    }
}

/// The protocol of one connection, once known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Cleartext with both versions: hyper reads the preface to choose.
    Detect,
    Http1,
    Http2,
}

impl Protocol {
    /// The protocol of a TLS connection from its negotiated ALPN.
    pub(crate) fn from_alpn(alpn: Option<&[u8]>, versions: HttpVersions) -> Self {
        match (alpn, versions) {
            (Some(b"h2"), _) | (None, HttpVersions::H2) => Protocol::Http2,
            _ => Protocol::Http1,
        }
    }

    /// The protocol of a cleartext connection.
    pub(crate) fn cleartext(versions: HttpVersions) -> Self {
        match versions {
            HttpVersions::Both => Protocol::Detect,
            HttpVersions::Http1 => Protocol::Http1,
            HttpVersions::H2 => Protocol::Http2,
        }
    }
}

/// The HTTP settings a server applies to every connection. `None` means
/// hyper's default, given in each field's documentation.
#[derive(Clone, Copy, Debug)]
pub struct HttpSettings {
    /// The versions served. Default is both.
    pub versions: HttpVersions,
    /// How long a client may take to send a request head (and how long an
    /// idle keep-alive connection stays open). Default is 30 seconds.
    pub header_read_timeout: Duration,
    /// The largest request head (HTTP/1, also hyper's read buffer) or header
    /// list (HTTP/2), in bytes; past it the request gets 431. Default is 64 KiB.
    pub max_header_size: usize,
    /// HTTP/1 keep-alive. Default is on.
    pub http1_keep_alive: bool,
    /// The most headers of an HTTP/1 request. Default (hyper's) is 100.
    pub http1_max_headers: Option<usize>,
    /// The most concurrent streams of an HTTP/2 connection. Default (hyper's)
    /// is 200.
    pub http2_max_concurrent_streams: Option<u32>,
    /// HTTP/2 initial stream window, in bytes. Default (hyper's) is 1 MiB.
    pub http2_initial_stream_window: Option<u32>,
    /// HTTP/2 initial connection window, in bytes. Default (hyper's) is 1 MiB.
    pub http2_initial_connection_window: Option<u32>,
    /// HTTP/2 largest frame, in bytes. Default (hyper's) is 16 KiB.
    pub http2_max_frame_size: Option<u32>,
    /// Interval of HTTP/2 keep-alive pings. Default is none (no pings).
    pub http2_keep_alive_interval: Option<Duration>,
    /// How long to wait for a keep-alive ping's answer before closing.
    /// Default (hyper's) is 20 seconds.
    pub http2_keep_alive_timeout: Option<Duration>,
    /// The most streams reset by the client before the server accepted them
    /// (rapid reset); past it, GOAWAY. Default (hyper's) is 20.
    pub http2_max_pending_accept_reset_streams: Option<usize>,
    /// The most streams the server resets for protocol errors of the client
    /// before it closes the connection. Default (hyper's) is 1024.
    pub http2_max_local_error_reset_streams: Option<usize>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            versions: HttpVersions::Both,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            http1_keep_alive: true,
            http1_max_headers: None,
            http2_max_concurrent_streams: None,
            http2_initial_stream_window: None,
            http2_initial_connection_window: None,
            http2_max_frame_size: None,
            http2_keep_alive_interval: None,
            http2_keep_alive_timeout: None,
            http2_max_pending_accept_reset_streams: None,
            http2_max_local_error_reset_streams: None,
        }
    }
}

/// The HTTP settings of a server, ready to serve connections: one hyper
/// builder for each protocol a connection can have.
#[derive(Clone, Debug)]
pub(crate) struct ConnBuilder {
    detect: auto::Builder<TokioExecutor>,
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

impl ConnBuilder {
    pub(crate) fn new(settings: &HttpSettings) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let mut http1 = builder.http1();
        http1
            // The timer makes the header read timeout work. hyper starts it
            // whenever it waits for a request head, so it also closes idle
            // keep-alive connections.
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .keep_alive(settings.http1_keep_alive)
            // Past it: 431.
            .max_buf_size(settings.max_header_size.max(MIN_BUF_SIZE));
        if let Some(max) = settings.http1_max_headers {
            http1.max_headers(max);
        }
        // Not `pipeline_flush(true)`: with it, hyper 1.x stops flushing while
        // request bytes keep arriving, so a client that uploads while it
        // downloads (an echo) made the server buffer the whole response
        // (measured: +97 MiB peak memory for a 100 MiB echo, +2 MiB without).
        // Pipelined requests are answered in order either way.
        let mut http2 = builder.http2();
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(settings.max_header_size).unwrap_or(u32::MAX))
            // `None` keeps hyper's defaults in these.
            .initial_stream_window_size(settings.http2_initial_stream_window)
            .initial_connection_window_size(settings.http2_initial_connection_window)
            .max_frame_size(settings.http2_max_frame_size)
            .keep_alive_interval(settings.http2_keep_alive_interval);
        if let Some(timeout) = settings.http2_keep_alive_timeout {
            http2.keep_alive_timeout(timeout);
        }
        if let Some(max) = settings.http2_max_pending_accept_reset_streams {
            http2.max_pending_accept_reset_streams(max);
        }
        if let Some(max) = settings.http2_max_local_error_reset_streams {
            http2.max_local_error_reset_streams(max);
        }
        // Not `max_concurrent_streams(None)`: that would lift hyper's limit.
        if let Some(max) = settings.http2_max_concurrent_streams {
            http2.max_concurrent_streams(max);
        }
        Self {
            http1: builder.clone().http1_only(),
            http2: builder.clone().http2_only(),
            detect: builder,
        }
    }

    /// Serves `io` until the client closes it, the connection fails, or a
    /// graceful stop (through `watcher`) lets it finish.
    pub(crate) async fn serve<I>(
        &self,
        io: I,
        protocol: Protocol,
        service: Arc<Dispatch>,
        tls: bool,
        client: SocketAddr,
        watcher: Watcher,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = hyper::service::service_fn(move |req| {
            let service = service.clone();
            async move { service.serve(req, tls, client).await }
        });
        let builder = match protocol {
            Protocol::Detect => &self.detect,
            Protocol::Http1 => &self.http1,
            Protocol::Http2 => &self.http2,
        };
        let conn = builder.serve_connection(TokioIo::new(io), service);
        if let Err(error) = watcher.watch(conn).await {
            // Resets, bad requests, timeouts: the client's business.
            tracing::debug!(error = %crate::error::chain(&*error), "connection ended with an error");
        }
    }
}
