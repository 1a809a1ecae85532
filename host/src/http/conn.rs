//! Serving one connection with hyper: HTTP/1.1, HTTP/2, or both on one port
//! (by prior knowledge in cleartext, chosen by ALPN over TLS), with the
//! server's HTTP settings.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::UnboundedSender;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio_util::task::TaskTracker;

use super::body::IncomingBody;
use super::upgrade::{Dispatched, UpgradeRun};
use super::watchdog::{ActiveRequest, Activity, Cut, Timeouts, Tracked, Watched};
use super::{Dispatch, ResponseBody};
use crate::config::{HttpSettings, HttpVersions};

/// hyper's smallest allowed read buffer.
const MIN_BUF_SIZE: usize = 8192;

/// What a request's connection is: put once into every request's
/// extensions, where the rest of the HTTP side reads it (axum's
/// `ConnectInfo`).
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// Whether the connection is TLS.
    pub(crate) tls: bool,
    /// Over TLS with certificates chosen by SNI: what the client asked for,
    /// and the certificates, so that a request for a host of another
    /// certificate gets 421.
    pub(crate) sni: Option<Arc<SniName>>,
}

/// The name a TLS client asked for (SNI), and the certificates it was
/// chosen from.
#[derive(Debug)]
pub(crate) struct SniName {
    pub(crate) name: Option<Box<str>>,
    pub(crate) certs: crate::net::SniCerts,
}

impl ConnInfo {
    /// Whether a request for `host` came on a connection made for a host of
    /// another certificate.
    pub(crate) fn misdirected(&self, host: &str) -> bool {
        self.sni
            .as_ref()
            .is_some_and(|sni| !sni.certs.same_certificate(sni.name.as_deref(), host))
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

/// The HTTP settings of a server, ready to serve connections: one hyper
/// builder for each protocol a connection can have.
#[derive(Clone, Debug)]
pub(crate) struct ConnBuilder {
    detect: auto::Builder<TokioExecutor>,
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
    timeouts: Timeouts,
    /// HTTP/3's settings, for the QUIC side's connections.
    h3: super::h3::H3Builder,
    /// The runs of every upgraded connection (hooks', WebSockets'): a stop
    /// waits for them.
    upgraded: TaskTracker,
}

impl ConnBuilder {
    /// With `upgrades`, HTTP/2 connections offer extended CONNECT
    /// (SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 8441).
    pub(crate) fn new(settings: &HttpSettings, upgrades: bool) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let mut http1 = builder.http1();
        http1
            // The timer makes the header read timeout work. hyper starts it
            // whenever it waits for a request head, so it also closes idle
            // keep-alive connections.
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .keep_alive(settings.http1_keep_alive)
            // One buffer per write (hyper copies the body's chunks into
            // it) rather than `writev` of the head and each chunk: a small
            // response is one `sendto` as wasmtime serve's is, which served
            // ~10% more reused C hello requests a second (bench/anchor.sh);
            // a large body costs one more copy in memory.
            .writev(false)
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
        if upgrades {
            http2.enable_connect_protocol();
        }
        let timeouts = Timeouts {
            first_request: settings.header_read_timeout,
            idle: settings.idle_timeout,
            write: settings.write_timeout,
        };
        Self {
            timeouts,
            h3: super::h3::H3Builder::new(settings),
            upgraded: TaskTracker::new(),
            http1: builder.clone().http1_only(),
            http2: builder.clone().http2_only(),
            detect: builder,
        }
    }

    /// How HTTP/3 connections are served.
    pub(crate) fn h3(&self) -> &super::h3::H3Builder {
        &self.h3
    }

    /// The runs of upgraded connections, for a stop to wait on.
    pub(crate) fn upgraded(&self) -> &TaskTracker {
        &self.upgraded
    }

    /// Serves `io` (a TCP socket, or TLS over one) until the client closes
    /// it, the connection fails, a graceful stop (through `watcher`) lets it
    /// finish, or its [watchdog](super::watchdog) closes it (the reason is
    /// returned); then until the runs of the upgrades it accepted (a
    /// hook's, a WebSocket's) are done with it. An upgrade counts as a
    /// request in flight while its run runs; once HTTP/1 hands its
    /// connection over, the watchdog is done and the run owns the
    /// connection's timeouts. Every response carries `alt_svc` as its
    /// `Alt-Svc` header, when given (HTTP/3 served beside).
    pub(crate) async fn serve<I>(
        &self,
        io: I,
        protocol: Protocol,
        dispatch: Arc<Dispatch>,
        conn: ConnInfo,
        alt_svc: Option<HeaderValue>,
        watcher: Watcher,
    ) -> Option<Cut>
    where
        I: AsyncRead + AsyncWrite + std::os::fd::AsRawFd + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        let io = Tracked::new(io, activity.clone());
        let peer = conn.peer;
        let (upgrades, mut accepted) = tokio::sync::mpsc::unbounded_channel();
        let service = service(dispatch, conn, alt_svc, activity.clone(), upgrades);
        let builder = match protocol {
            Protocol::Detect => &self.detect,
            Protocol::Http1 => &self.http1,
            Protocol::Http2 => &self.http2,
        };
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        let mut conn = Box::pin(watcher.watch(conn));
        let watchdog = activity.watch(self.timeouts);
        tokio::pin!(watchdog);
        let mut running = FuturesUnordered::new();
        let closed = loop {
            tokio::select! {
                result = &mut conn => {
                    if let Err(error) = result {
                        // Resets, bad requests, timeouts: the client's business.
                        tracing::debug!(error = %crate::log::chain(&*error), "connection ended with an error");
                    }
                    break None;
                }
                // Dropping the connection closes it; its guests are stopped
                // as when a client goes away.
                closed = &mut watchdog => {
                    tracing::debug!(%peer, reason = closed.as_str(), "connection closed by its watchdog");
                    break Some(closed);
                }
                Some((run, in_flight)) = accepted.recv() => {
                    running.push(self.upgraded.track_future(counted(run, in_flight)));
                }
                Some(()) = running.next(), if !running.is_empty() => {}
            }
        };
        // An HTTP/1 connection ends when it is handed over; its hook runs
        // on here, holding the connection's permit. Closed by the
        // watchdog, an HTTP/2 connection takes its upgraded streams along.
        drop(conn);
        accepted.close();
        while let Some((run, in_flight)) = accepted.recv().await {
            running.push(self.upgraded.track_future(counted(run, in_flight)));
        }
        while running.next().await.is_some() {}
        closed
    }

    /// Serves `io` over HTTP/1.1 with the responses `respond` makes (the
    /// admin endpoints: no guest, no upgrade, no HTTP/2), with the hyper
    /// settings and the watchdog of a guest's connection: the first request
    /// within the header read timeout, the idle and write timeouts. Returns
    /// why the watchdog closed it, if it did.
    pub(crate) async fn serve_host<I, B, F>(&self, io: I, respond: F) -> Option<Cut>
    where
        I: AsyncRead + AsyncWrite + std::os::fd::AsRawFd + Unpin + Send + 'static,
        F: Fn(&http::Request<Incoming>) -> http::Response<B> + Send + Sync + 'static,
        B: hyper::body::Body + Unpin + Send + 'static,
        B::Data: bytes::Buf + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let activity = Activity::new();
        let io = Tracked::new(io, activity.clone());
        let service = {
            let activity = activity.clone();
            hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let in_flight = activity.request_started();
                let response = respond(&req).map(|body| Watched::new(body, in_flight, true));
                std::future::ready(Ok::<_, Infallible>(response))
            })
        };
        let conn = self.http1.serve_connection(TokioIo::new(io), service);
        tokio::select! {
            result = conn => {
                if let Err(error) = result {
                    tracing::debug!(error = %crate::log::chain(&*error), "connection ended with an error");
                }
                None
            }
            // Dropping the connection closes it (resets it, when its client
            // does not read).
            closed = activity.watch(self.timeouts) => Some(closed),
        }
    }
}

/// A response as hyper sends it: watched while its body is out.
type WatchedResponse = http::Response<Watched<ResponseBody>>;

/// hyper's service for one connection: puts `conn` into every request, has
/// `dispatch` serve it, adds `alt_svc` to the response, and sends the run
/// of an upgrade the response accepts down `upgrades`.
///
/// The dispatch returns the response and, apart from it, the upgrade's run
/// ([`Dispatched`]). A hyper service can return the response only, so the
/// run goes, with the request in flight it counts as, down `upgrades` to
/// the connection's own task ([`ConnBuilder::serve`]), which polls it
/// (tracked, so a stop waits for it) and stays until it ends. The run waits
/// for hyper's upgrade, which comes once the response is out.
fn service(
    dispatch: Arc<Dispatch>,
    conn: ConnInfo,
    alt_svc: Option<HeaderValue>,
    activity: Arc<Activity>,
    upgrades: UnboundedSender<(UpgradeRun, ActiveRequest)>,
) -> impl Service<
    http::Request<Incoming>,
    Response = WatchedResponse,
    Error = Infallible,
    Future = impl Future<Output = Result<WatchedResponse, Infallible>> + Send + 'static,
> + Send
+ 'static {
    hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(conn.clone());
        let dispatch = dispatch.clone();
        let in_flight = activity.request_started();
        let http1 = req.version() < http::Version::HTTP_2;
        let (activity, upgrades) = (activity.clone(), upgrades.clone());
        let alt_svc = alt_svc.clone();
        async move {
            let Dispatched {
                mut response,
                upgrade,
            } = dispatch.serve(req.map(IncomingBody::from)).await;
            if let Some(alt_svc) = alt_svc {
                response
                    .headers_mut()
                    .insert(http::header::ALT_SVC, alt_svc);
            }
            if let Some(run) = upgrade {
                // The connection's task is there for as long as its
                // service is.
                let _ = upgrades.send((run, activity.request_started()));
            }
            Ok(response.map(|body| Watched::new(body, in_flight, http1)))
        }
    })
}

/// An upgrade's run, counted as a request in flight of its connection (for
/// the watchdog) until it ends.
async fn counted(run: UpgradeRun, in_flight: ActiveRequest) {
    run.await;
    drop(in_flight);
}
