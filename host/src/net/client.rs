//! The HTTP client guests' outgoing requests go through, once the tenant's
//! allow-list (`config::Outbound`) has let them: DNS, the connection (to the
//! addresses that were checked, never to a second answer), HTTP/1.1 and
//! TLS with the Mozilla roots. It knows nothing of guests: the sandbox
//! (`wasm::guest::outbound`) makes it their `Upstream`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// What the connection to an upstream returns besides the response: it
/// runs the connection, and wasi-http spawns it.
pub type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

/// catshost's outgoing HTTP client: the system resolver, and a new
/// connection per request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Client;

impl Client {
    /// The addresses of `name`, from the system resolver.
    pub async fn resolve(name: String, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        // getaddrinfo runs on tokio's blocking pool and cannot be
        // cancelled: at most MAX_LOOKUPS at once, so guests cannot take
        // the pool, and each waited for at most LOOKUP_TIMEOUT.
        let lookups = LOOKUPS.get_or_init(|| tokio::sync::Semaphore::new(MAX_LOOKUPS));
        let lookup = async {
            let _permit = lookups.acquire().await.map_err(std::io::Error::other)?;
            tokio::net::lookup_host((name.as_str(), port)).await
        };
        match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(addrs) => Ok(addrs?.collect()),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("looking up '{name}' took more than {LOOKUP_TIMEOUT:?}"),
            )),
        }
    }

    /// Sends `request` over HTTP/1.1 to the first of `addrs` (the checked
    /// addresses of its host) that accepts a connection; over TLS when its
    /// scheme is `https`, verifying the certificate for its host name. The
    /// connection's task keeps `permit` (what counts the connection) until
    /// the connection is closed.
    pub async fn send(
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        addrs: Vec<SocketAddr>,
        permit: impl Send + 'static,
    ) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
        send(request, options, addrs, permit).await
    }
}

/// The most DNS lookups of all guests at once.
const MAX_LOOKUPS: usize = 32;
static LOOKUPS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
/// How long a DNS lookup may take, waiting for its turn included.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a guest's outgoing request waits for its connection (TLS
/// included), and the default; wasmtime's default is 600 s. A guest's
/// request options may ask for less, never more.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The same for the first response byte and for each next body frame.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

/// [`Client::send`].
async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    addrs: Vec<SocketAddr>,
    permit: impl Send + 'static,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let timeout = |pick: fn(&RequestOptions) -> Option<Duration>, max: Duration| {
        options
            .as_ref()
            .and_then(pick)
            .map_or(max, |asked| asked.min(max))
    };
    let connect_timeout = timeout(|o| o.connect_timeout, CONNECT_TIMEOUT);
    let first_byte_timeout = timeout(|o| o.first_byte_timeout, FIRST_BYTE_TIMEOUT);
    let between_bytes_timeout = timeout(|o| o.between_bytes_timeout, BETWEEN_BYTES_TIMEOUT);

    let uri = request.uri();
    let https = uri.scheme() == Some(&Scheme::HTTPS);
    let host = uri
        .host()
        .ok_or(HttpError::HttpRequestUriInvalid)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(&addrs[..])).await {
        Ok(tcp) => tcp.map_err(HttpError::Connect)?,
        Err(_) => return Err(HttpError::ConnectionTimeout),
    };
    // The request goes out in origin form: the path and query only.
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(uri_path(request.uri()))
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let handshake = async {
        if https {
            let name = rustls::pki_types::ServerName::try_from(host)
                .map_err(|_| HttpError::HttpRequestUriInvalid)?;
            let tls = tokio_rustls::TlsConnector::from(client_tls())
                .connect(name, tcp)
                .await
                .map_err(HttpError::Tls)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake::<_, WasiBody>(TokioIo::new(tls)).await?;
            Ok::<_, HttpError>((sender, Box::new(async move { Ok(conn.await?) }) as IoFuture))
        } else {
            let (sender, conn) =
                hyper::client::conn::http1::handshake::<_, WasiBody>(TokioIo::new(tcp)).await?;
            Ok((sender, Box::new(async move { Ok(conn.await?) }) as IoFuture))
        }
    };
    let (mut sender, conn) = tokio::time::timeout(connect_timeout, handshake)
        .await
        .map_err(|_| HttpError::ConnectionTimeout)??;
    // The connection must run for the request to be sent.
    let conn = tokio::spawn(async move {
        let _permit = permit;
        Pin::from(conn).await
    });
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| HttpError::HttpResponseTimeout)??;
    let response = response.map(|body| {
        TimedBody {
            body,
            timeout: between_bytes_timeout,
            sleep: Box::pin(tokio::time::sleep(between_bytes_timeout)),
        }
        .boxed_unsync()
    });
    let io: IoFuture = Box::new(async move {
        match conn.await {
            Ok(result) => result,
            Err(_) => Err(HttpError::ConnectionTerminated),
        }
    });
    Ok((response, io))
}

fn uri_path(uri: &http::Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// The TLS client configuration for outgoing HTTPS: the Mozilla roots
/// (webpki-roots), as wasmtime's own client uses.
fn client_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// An upstream response body that fails when no frame comes for `timeout`.
struct TimedBody {
    body: hyper::body::Incoming,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + self.timeout;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::HttpResponseTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
