//! Serving one HTTP/3 connection with h3 over quinn: each request stream
//! becomes the request every other version makes (`Request<IncomingBody>`,
//! with its [`ConnInfo`]), goes through the same dispatch, and its response
//! body is written back as it comes. QUIC's own timers replace the TCP
//! watchdog: quinn's idle timeout, and here the first request's, the idle
//! connection's and each stream's write deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::task::JoinSet;

use super::body::IncomingBody;
use super::conn::ConnInfo;
use super::upgrade::Dispatched;
use super::{Dispatch, ResponseBody};
use crate::config::HttpSettings;
use crate::error::BoxError;
use crate::lifecycle::Stop;

type H3Conn = h3::server::Connection<h3_quinn::Connection, Bytes>;
/// How long a stopping connection whose requests are served waits, at
/// least, for its client to take the last responses and close.
const LINGER: Duration = Duration::from_secs(1);
/// The QUIC code of a close without error.
pub(crate) const H3_NO_ERROR: quinn::VarInt = quinn::VarInt::from_u32(0x100);
type SendSide = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type RecvSide = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// Why an HTTP/3 connection was closed by the host rather than its client,
/// as `catshost_connections_closed_total` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum H3Cut {
    /// No request within the header read timeout of the handshake.
    FirstRequest,
    /// No request in flight for the idle timeout.
    Idle,
}

impl H3Cut {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            // As the TCP watchdog counts them.
            H3Cut::FirstRequest => "no_request",
            H3Cut::Idle => "idle",
        }
    }
}

/// The HTTP/3 settings of a server: what h3 and each stream are held to.
#[derive(Clone, Debug)]
pub(crate) struct H3Builder {
    max_field_section_size: u64,
    first_request: Duration,
    idle: Duration,
    write: Duration,
}

impl H3Builder {
    pub(crate) fn new(settings: &HttpSettings) -> Self {
        Self {
            max_field_section_size: settings.max_header_size as u64,
            first_request: settings.header_read_timeout,
            idle: settings.idle_timeout,
            write: settings.write_timeout,
        }
    }

    /// Serves `conn`, a QUIC connection whose handshake chose `h3`, until
    /// its client closes it, it fails, it stays without a request past its
    /// timeouts (the reason is returned), or `stop` switches: then GOAWAY,
    /// and the requests already taken finish (the server's drain bounds
    /// how long).
    pub(crate) async fn serve(
        &self,
        conn: quinn::Connection,
        dispatch: Arc<Dispatch>,
        info: ConnInfo,
        stop: Stop,
    ) -> Option<H3Cut> {
        let quic = conn.clone();
        let mut builder = h3::server::builder();
        builder.max_field_section_size(self.max_field_section_size);
        let built = builder.build(h3_quinn::Connection::new(conn));
        let mut h3: H3Conn = match tokio::time::timeout(self.first_request, built).await {
            Ok(Ok(h3)) => h3,
            Ok(Err(error)) => {
                tracing::debug!(peer = %info.peer, %error, "HTTP/3 connection failed to start");
                return None;
            }
            Err(_) => return Some(self.cut(&quic, H3Cut::FirstRequest)),
        };
        let mut streams = JoinSet::new();
        let mut served_any = false;
        let mut stopping = false;
        loop {
            if stopping && streams.is_empty() {
                // GOAWAY sent and every request taken served. A close
                // now would drop response data not yet acknowledged, and
                // quinn cannot say when it is: the client gets a few
                // round trips (a second at least) to take it and close;
                // one that keeps its connection open is not waited for
                // longer.
                let linger = (quic.rtt() * 10).max(LINGER);
                let _ = tokio::time::timeout(linger, quic.closed()).await;
                quic.close(H3_NO_ERROR, b"");
                break;
            }
            // Without a request in flight the connection has a deadline:
            // its first request's, then the idle timeout.
            let deadline = match (streams.is_empty(), served_any) {
                (false, _) => None,
                (true, false) => Some((self.first_request, H3Cut::FirstRequest)),
                (true, true) => Some((self.idle, H3Cut::Idle)),
            };
            let idle = async {
                match deadline {
                    Some((after, cut)) => {
                        tokio::time::sleep(after).await;
                        cut
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                accepted = h3.accept() => match accepted {
                    Ok(Some(resolver)) => {
                        served_any = true;
                        let (dispatch, info, write) = (dispatch.clone(), info.clone(), self.write);
                        let first_request = self.first_request;
                        streams.spawn(async move {
                            // A stream that never sends its head holds its
                            // slot until the header read timeout.
                            match tokio::time::timeout(first_request, resolver.resolve_request()).await {
                                Ok(Ok((head, stream))) => {
                                    serve_stream(head, stream, &dispatch, info, write).await;
                                }
                                Ok(Err(error)) => {
                                    tracing::debug!(peer = %info.peer, %error, "HTTP/3 request refused");
                                }
                                Err(_) => {
                                    tracing::debug!(peer = %info.peer, "HTTP/3 request head timed out");
                                }
                            }
                        });
                    }
                    // GOAWAY both ways, every request taken is done.
                    Ok(None) => break,
                    Err(error) => {
                        if !error.is_h3_no_error() {
                            tracing::debug!(peer = %info.peer, %error, "HTTP/3 connection ended with an error");
                        }
                        break;
                    }
                },
                Some(_) = streams.join_next(), if !streams.is_empty() => {}
                () = stop.switched(), if !stopping => {
                    stopping = true;
                    // GOAWAY: the requests taken are served, no new one.
                    if let Err(error) = h3.shutdown(1).await {
                        tracing::debug!(peer = %info.peer, %error, "HTTP/3 GOAWAY failed");
                        break;
                    }
                }
                cut = idle => return Some(self.cut(&quic, cut)),
            }
        }
        while streams.join_next().await.is_some() {}
        None
    }

    fn cut(&self, quic: &quinn::Connection, cut: H3Cut) -> H3Cut {
        // A client retries on a new connection.
        quic.close(H3_NO_ERROR, b"");
        cut
    }
}

/// Serves one request stream: the request through the dispatch, the
/// response back, its data waiting at most `write` each time the client
/// grants no credit (then the stream is reset).
async fn serve_stream(
    head: Request<()>,
    stream: h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    dispatch: &Dispatch,
    info: ConnInfo,
    write: Duration,
) {
    let (mut send, recv) = stream.split();
    let declared = content_length(head.headers().get(http::header::CONTENT_LENGTH));
    let mut request = head.map(|()| IncomingBody::new(H3Body::new(recv, declared)));
    let peer = info.peer;
    request.extensions_mut().insert(info);
    // No upgrade over HTTP/3: extended CONNECT is not offered.
    let Dispatched { response, .. } = dispatch.serve(request).await;
    if let Err(error) = respond(&mut send, response, write).await {
        tracing::debug!(%peer, error = %crate::log::chain(&*error), "HTTP/3 response not sent whole");
        send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
    }
}

/// Writes `response` to `send`, each write within `write`.
async fn respond(
    send: &mut SendSide,
    response: Response<ResponseBody>,
    write: Duration,
) -> Result<(), BoxError> {
    let (parts, mut body) = response.into_parts();
    within(write, send.send_response(Response::from_parts(parts, ()))).await?;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) => within(write, send.send_data(data)).await?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    return within(write, send.send_trailers(trailers)).await;
                }
            }
        }
    }
    within(write, send.finish()).await
}

/// `write`, failed when it takes longer than `timeout` (the client grants
/// no flow-control credit).
async fn within<E: Into<BoxError>>(
    timeout: Duration,
    write: impl Future<Output = Result<(), E>>,
) -> Result<(), BoxError> {
    tokio::time::timeout(timeout, write)
        .await
        .map_err(|_| BoxError::from("the client took no data within the write timeout"))?
        .map_err(Into::into)
}

fn content_length(value: Option<&HeaderValue>) -> Option<u64> {
    value?.to_str().ok()?.parse().ok()
}

/// A request body as an HTTP/3 stream brings it, held to its declared
/// length (as hyper holds HTTP/1 and HTTP/2 bodies): more or fewer bytes
/// than `content-length` says end it in an error. quinn gives a stream's
/// data a packet at a time (~1.2 KB); what has arrived is handed on in
/// frames of up to [`COALESCE`] bytes, so the guest's side (a wake-up, a
/// stream write) runs once per frame rather than once per packet.
struct H3Body {
    stream: RecvSide,
    declared: Option<u64>,
    seen: u64,
    data_done: bool,
    /// An error that came while a frame was being gathered: the next
    /// frame.
    failed: Option<BoxError>,
    done: bool,
}

/// The most bytes of a stream gathered into one frame.
const COALESCE: usize = 64 << 10;

impl H3Body {
    fn new(stream: RecvSide, declared: Option<u64>) -> Self {
        Self {
            stream,
            declared,
            seen: 0,
            data_done: false,
            failed: None,
            done: declared == Some(0),
        }
    }

    /// The next data, with whatever else has arrived up to [`COALESCE`];
    /// `None` at the end of the data.
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        let mut first = match ready!(self.stream.poll_recv_data(cx)) {
            Ok(Some(mut data)) => data.copy_to_bytes(data.remaining()),
            Ok(None) => return Poll::Ready(None),
            Err(error) => return Poll::Ready(Some(Err(error.into()))),
        };
        let mut gathered: Option<BytesMut> = None;
        while gathered.as_ref().map_or(first.len(), BytesMut::len) < COALESCE {
            match self.stream.poll_recv_data(cx) {
                Poll::Ready(Ok(Some(more))) => gathered
                    .get_or_insert_with(|| {
                        let mut buf = BytesMut::with_capacity(COALESCE);
                        buf.extend_from_slice(&first);
                        buf
                    })
                    .put(more),
                Poll::Ready(Ok(None)) => {
                    self.data_done = true;
                    break;
                }
                Poll::Ready(Err(error)) => {
                    self.failed = Some(error.into());
                    break;
                }
                Poll::Pending => break,
            }
        }
        if let Some(gathered) = gathered {
            first = gathered.freeze();
        }
        Poll::Ready(Some(Ok(first)))
    }
}

/// The body's bytes did not match its `content-length`.
#[derive(Debug, thiserror::Error)]
#[error("the HTTP/3 request body's length is not its content-length ({declared})")]
struct LengthMismatch {
    declared: u64,
}

impl Body for H3Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(error) = this.failed.take() {
            this.done = true;
            return Poll::Ready(Some(Err(error)));
        }
        if !this.data_done {
            match ready!(this.poll_data(cx)) {
                Some(Ok(data)) => {
                    this.seen += data.len() as u64;
                    if let Some(declared) = this.declared
                        && this.seen > declared
                    {
                        this.done = true;
                        return Poll::Ready(Some(Err(LengthMismatch { declared }.into())));
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                None => this.data_done = true,
                Some(Err(error)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
        if let Some(declared) = this.declared
            && this.seen != declared
        {
            this.done = true;
            return Poll::Ready(Some(Err(LengthMismatch { declared }.into())));
        }
        let trailers = ready!(this.stream.poll_recv_trailers(cx));
        this.done = true;
        match trailers {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(error.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.declared {
            Some(declared) => SizeHint::with_exact(declared),
            None => SizeHint::default(),
        }
    }
}
