//! The HTTP settings of a server: the versions it speaks (and so the ALPN
//! list it offers over TLS; HTTP/3 beside them), its timeouts and the
//! HTTP/1, HTTP/2 and HTTP/3 tunables. Plain data: the HTTP side turns them into hyper's connection
//! builders.

use std::str::FromStr;
use std::time::Duration;

/// [`HttpSettings::header_read_timeout`] by default: 30 seconds.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// [`HttpSettings::idle_timeout`] by default: 60 seconds.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// [`HttpSettings::write_timeout`] by default: 30 seconds.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// [`HttpSettings::max_header_size`] by default: 64 KiB.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 << 10;
/// [`HttpSettings::http3_max_concurrent_streams`] by default: 100 (quinn's,
/// and what RFC 9114 asks a server to allow at least).
pub const DEFAULT_HTTP3_MAX_CONCURRENT_STREAMS: u32 = 100;

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

impl HttpVersions {
    /// As it is written: `both`, `http1` or `h2`.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersions::Both => "both",
            HttpVersions::Http1 => "http1",
            HttpVersions::H2 => "h2",
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

/// The HTTP settings a server applies to every connection. `None` means
/// hyper's default, given in each field's documentation. Each field's doc
/// is the setting's definition (see `config/settings.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    /// The versions served; over TLS they are the ALPN list offered (with
    /// both, a client that offers none gets HTTP/1.1), in cleartext HTTP/2
    /// is h2c by prior knowledge. Default is [`HttpVersions::Both`].
    pub versions: HttpVersions,
    /// How long a client may take to send a request head, and a new
    /// connection its first request (after its TLS handshake); hyper runs
    /// it whenever it waits for an HTTP/1 head, so it also closes idle
    /// HTTP/1 keep-alive connections. Default is
    /// [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// How long a connection with no request in flight stays open, over
    /// HTTP/1 and HTTP/2 (an HTTP/1 connection waiting for its next head is
    /// also cut at the header read timeout). Default is
    /// [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// How long a response's data, or the socket's, may wait for a client
    /// that does not take it (a closed HTTP/2 window or TCP window); past
    /// it the connection is reset (RST: a FIN would wait behind the data the
    /// client does not take). Default is [`DEFAULT_WRITE_TIMEOUT`].
    pub write_timeout: Duration,
    /// The largest request head (HTTP/1, also hyper's read buffer, which is
    /// at least 8 KiB) or header list (HTTP/2), in bytes; past it the
    /// request gets 431. Default is [`DEFAULT_MAX_HEADER_SIZE`].
    pub max_header_size: usize,
    /// HTTP/1 keep-alive. Default is on.
    pub http1_keep_alive: bool,
    /// The most headers of an HTTP/1 request. Default is hyper's, 100.
    pub http1_max_headers: Option<usize>,
    /// The most concurrent streams of an HTTP/2 connection; more are
    /// refused with RST_STREAM. Default is hyper's, 200.
    pub http2_max_concurrent_streams: Option<u32>,
    /// HTTP/2 initial stream window, in bytes. Default is hyper's, 1 MiB.
    pub http2_initial_stream_window: Option<u32>,
    /// HTTP/2 initial connection window, in bytes. Default is hyper's, 1 MiB.
    pub http2_initial_connection_window: Option<u32>,
    /// HTTP/2 largest frame, in bytes: 16 KiB to 16 MiB - 1, as HTTP/2
    /// allows. Default is hyper's, 16 KiB.
    pub http2_max_frame_size: Option<u32>,
    /// Interval of HTTP/2 keep-alive pings. Default is hyper's, none (no
    /// pings).
    pub http2_keep_alive_interval: Option<Duration>,
    /// How long to wait for a keep-alive ping's answer before closing (with
    /// pings only). Default is hyper's, 20 seconds.
    pub http2_keep_alive_timeout: Option<Duration>,
    /// The most streams reset by the client before the server accepted them
    /// (rapid reset); past it, GOAWAY. Default is hyper's (h2's), 20.
    pub http2_max_pending_accept_reset_streams: Option<usize>,
    /// The most streams the server resets for protocol errors of the client
    /// before it closes the connection. Default is hyper's, 1024.
    pub http2_max_local_error_reset_streams: Option<usize>,
    /// HTTP/3 over QUIC beside the TCP listener, with TLS only: a UDP
    /// socket on the same port, ALPN `h3`, the same certificates; TCP
    /// responses then carry `Alt-Svc: h3=":PORT"`. Not one of
    /// [`HttpSettings::versions`]: it runs alongside whichever those are.
    /// Default is off.
    pub http3: bool,
    /// The most request streams (bidirectional) a client may have open on
    /// one HTTP/3 connection at once; QUIC's flow control holds the rest
    /// back (it never grants more). Default is
    /// [`DEFAULT_HTTP3_MAX_CONCURRENT_STREAMS`].
    pub http3_max_concurrent_streams: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            versions: HttpVersions::Both,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
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
            http3: false,
            http3_max_concurrent_streams: DEFAULT_HTTP3_MAX_CONCURRENT_STREAMS,
        }
    }
}
