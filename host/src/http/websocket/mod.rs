//! WebSockets served by a tenant's WebSocket handler (a component that
//! exports `catshost:websocket/handler`): the host does RFC 6455 here (the
//! handshake, then tungstenite's framing, masks, ping/pong, fragmentation,
//! UTF-8 checks and close codes) and hands whole messages to the WebAssembly
//! side ([`crate::wasm::Sockets`]).
//!
//! An open socket holds its connection (HTTP/2: its stream), one of its
//! tenant's `max_websockets` permits and of its client's
//! `max_websockets_per_client`, a share of an instance, and a charge on
//! its tenant's account for its buffers and the messages on their way; its
//! request permit only while the guest's `open` runs (all of them until
//! the `open` ends, even when the client is gone). It is closed by the host
//! with 1001 when idle past the tenant's `websocket_idle_timeout` (a
//! message either way is activity; pings and pongs are not) or when the
//! server stops, 1009 past `max_websocket_message`, 1002 or 1007 for a
//! protocol error, 1008 when its tenant's account is full, and 1011 when
//! its instance fails; it is cut when its client takes none of what the
//! host writes (messages, pongs, close frames) for the write timeout.

mod frames;
mod io;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use self::frames::{SocketClose, close, codec, from_client, socket_charge, to_frame};
use self::io::{DrainClock, Drained, Stalled};
use super::admission::Permits;
use super::body::IncomingBody;
use super::upgrade::{Asked, Dispatched, UpgradeRun};
use super::{HostError, ResponseBody};
use crate::account::{Account, Charge};
use crate::bucket::TokenBucket;
use crate::config::units::deadline_after;
use crate::lifecycle::Stop;
use crate::metrics::Metrics;
use crate::net::{ClientSlot, PerClient};
use crate::wasm::{InstanceGone, OpenError, OpenRequest, Opened, Outgoing, Sockets};

/// The pings and pongs a client may send a second (browsers send none; a
/// client library's keep-alive, one every few seconds): past it, its
/// socket is closed with 1008.
const MAX_PINGS_PER_SECOND: u32 = 16;

/// What a message on its way to a guest costs besides its bytes.
const MESSAGE_OVERHEAD: usize = 64;

/// A tenant's WebSocket handler as the HTTP side serves it.
#[derive(Clone)]
pub(crate) struct WebSockets {
    pub(crate) sockets: Sockets,
    pub(crate) stop: Stop,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) access_log: bool,
    /// One permit per socket the tenant may have open.
    pub(crate) open: Permits,
    /// The sockets of each client, capped.
    pub(crate) clients: Arc<PerClient>,
    /// Bumped to close every open socket of the tenant with 1013: the
    /// host's overload guard sheds the tenant holding the most memory.
    pub(crate) shed: Arc<tokio::sync::watch::Sender<u64>>,
    /// How long a socket may go without a frame from its client.
    pub(crate) idle_timeout: Duration,
    /// How long a message may wait for a client that does not take it
    /// (the server's `write_timeout`): past it the connection is cut.
    pub(crate) write_timeout: Duration,
}

/// What a socket holds from before its guest's `open` runs: held until
/// the `open` ends whatever its client does, then (the request's permit
/// aside) while the socket is open.
struct Held {
    socket: OwnedSemaphorePermit,
    client: ClientSlot,
    charge: Charge,
    request: Box<dyn Send>,
}

/// Opens a socket for `req` (a WebSocket, as
/// [`upgrade_goes_to`](super::upgrade::upgrade_goes_to) decided) with the
/// tenant's handler: the response that completes the handshake and,
/// beside it, the socket's run on the connection; or the guest's refusal.
/// Past the tenant's `max_websockets`: [`HostError::TooManyWebSockets`];
/// past the client's: [`HostError::TooManyClientWebSockets`]; past its
/// account: [`HostError::HostMemory`]. `request` (the request's permit) is
/// held until the guest's `open` ends.
pub(crate) async fn open(
    ws: &WebSockets,
    mut req: Request<IncomingBody>,
    tenant: Arc<str>,
    peer: SocketAddr,
    request: impl Send + 'static,
) -> Result<Dispatched, HostError> {
    // RFC 6455, section 4.2.1: a GET over HTTP/1.1 (RFC 8441: a CONNECT
    // over HTTP/2) with version 13 and, over HTTP/1.1, a key.
    let version_13 = req
        .headers()
        .get("sec-websocket-version")
        .is_some_and(|v| v == "13");
    if !version_13 || (req.version() == Version::HTTP_11 && req.method() != http::Method::GET) {
        return Err(HostError::BadRequest(
            "a WebSocket handshake is a GET (HTTP/2: a CONNECT) with Sec-WebSocket-Version 13",
        ));
    }
    let asked = Asked::take(&mut req).ok_or(HostError::BadRequest(
        "a WebSocket handshake needs Sec-WebSocket-Version 13 and a Sec-WebSocket-Key",
    ))?;
    let socket = ws.open.try_take().ok_or(HostError::TooManyWebSockets)?;
    let client = ws
        .clients
        .admit(peer.ip())
        .ok_or(HostError::TooManyClientWebSockets)?;
    let max_message = ws.sockets.limits().max_message;
    let charge = ws
        .account()
        .charge(socket_charge(max_message))
        .map_err(HostError::HostMemory)?;
    let held = Held {
        socket,
        client,
        charge,
        request: Box::new(request),
    };
    // Held by the `open` until it ends, even if this future is dropped.
    let (opened, held) = ws.sockets.open(open_request(asked.head()), held).await;
    let opened = match opened {
        Ok(opened) => opened,
        Err(OpenError::Refused(status)) => {
            return Ok(Dispatched::response(status_only(status)));
        }
        Err(OpenError::BadProtocol(_)) => {
            return Err(HostError::BadResponse(
                "the guest chose a subprotocol the client did not offer",
            ));
        }
        Err(OpenError::Guest(error)) => return Err(HostError::Guest(error)),
    };
    let Some(Held {
        socket: permit,
        client,
        charge,
        request,
    }) = held
    else {
        unreachable!("an open that succeeded gives back what it held")
    };
    drop(request);
    let response = handshake(&asked, opened.protocol.as_deref());
    let socket = Socket {
        ws: ws.clone(),
        tenant,
        peer,
        version: asked.version(),
        permit,
        _client: client,
        _charge: charge,
    };
    let on = asked.into_on_upgrade();
    let run = async move {
        match on.await {
            Ok(io) => socket.serve(TokioIo::new(io), opened).await,
            // The client went away before the answer reached it.
            Err(error) => {
                tracing::debug!(peer = %socket.peer, %error, "the WebSocket did not open");
                opened.events.closed(1006, String::new()).await;
            }
        }
    };
    Ok(Dispatched::upgraded(response, UpgradeRun::new(run)))
}

/// What the handler's `open` is told of the handshake `head`.
fn open_request(head: &http::request::Parts) -> OpenRequest {
    OpenRequest {
        path_with_query: head
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        headers: head
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
            .collect(),
        protocols: head
            .headers
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
    }
}

/// The response that completes the handshake `asked` for: 101 over
/// HTTP/1.1, 200 over HTTP/2, with the subprotocol the handler chose.
fn handshake(asked: &Asked, protocol: Option<&str>) -> Response<ResponseBody> {
    let status = match asked.version() {
        Version::HTTP_2 => StatusCode::OK,
        _ => StatusCode::SWITCHING_PROTOCOLS,
    };
    let mut response = status_only(status);
    asked.complete(response.headers_mut());
    if let Some(protocol) = protocol
        && let Ok(value) = HeaderValue::from_str(protocol)
    {
        response
            .headers_mut()
            .insert("sec-websocket-protocol", value);
    }
    response
}

/// A response of `status` and no body.
fn status_only(status: StatusCode) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::host(Default::default()));
    *response.status_mut() = status;
    response
}

/// An open socket's side of the host.
struct Socket {
    ws: WebSockets,
    tenant: Arc<str>,
    peer: SocketAddr,
    version: Version,
    permit: OwnedSemaphorePermit,
    _client: ClientSlot,
    _charge: Charge,
}

impl WebSockets {
    /// The tenant's account of host memory.
    fn account(&self) -> &Arc<Account> {
        self.sockets.account()
    }
}

impl Socket {
    async fn serve<S>(self, io: S, opened: Opened)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        let Opened {
            socket: id,
            mut events,
            mut outbox,
            ..
        } = opened;
        // The tenant's permit for the socket goes once its instance has let
        // it go, not before.
        events.hold(self.permit);
        let config = codec(self.ws.sockets.limits().max_message);
        // Waited on for the whole loop, not made again each turn (each is
        // a registration with its channel).
        let mut stopping = std::pin::pin!(self.ws.stop.switched());
        let mut shed = self.ws.shed.subscribe();
        let mut shedding = std::pin::pin!(async move {
            if shed.changed().await.is_err() {
                // The tenant is gone without a successor: nothing sheds.
                std::future::pending::<()>().await;
            }
        });
        let drain = DrainClock::new();
        let mut stalled = std::pin::pin!(Stalled::new(drain.clone(), self.ws.write_timeout));
        let io = Drained::new(io, drain);
        let stream = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        let (mut sink, mut stream) = stream.split();
        let protocol = match self.version {
            Version::HTTP_2 => "HTTP/2",
            _ => "HTTP/1.1",
        };
        let _open = self.ws.metrics.websocket_opened(&self.tenant, protocol);
        let (counted_in, counted_out) = self.ws.metrics.websocket_messages(&self.tenant);
        let (mut messages_in, mut messages_out) = (0u64, 0u64);
        let started = Instant::now();
        let idle = self.ws.idle_timeout;
        // The last message either way: pings and pongs are not activity.
        let mut last_heard = tokio::time::Instant::now();
        // One timer for the socket's life, moved on only when it fires
        // early (a message came since it was set): not once per message.
        // Pings (and pongs) a client may send a second, in a burst of a
        // second's worth: each costs the host a pong to write.
        let mut control = TokenBucket::new(MAX_PINGS_PER_SECOND, tokio::time::Instant::now());
        let mut idle_timer =
            std::pin::pin!(tokio::time::sleep_until(deadline_after(last_heard, idle)));
        // A message on its way to the guest: no more is read meanwhile, but
        // the guest's messages, the stop and the idle timer still are.
        let mut handing: Option<
            futures_util::future::BoxFuture<'static, Result<(), InstanceGone>>,
        > = None;
        let closed = loop {
            tokio::select! {
                biased;
                () = &mut stopping => break SocketClose::host(1001, "server stopping"),
                () = &mut shedding => break SocketClose::host(1013, "host memory"),
                // The clocks before the client's frames: a client whose
                // frames are always ready (a ping flood) must not starve them.
                // The client took nothing the host wrote (pongs included)
                // for the write timeout: cut, no close frame can reach it.
                () = &mut stalled => break SocketClose::answered(1006, String::new()),
                () = &mut idle_timer => {
                    let until = deadline_after(last_heard, idle);
                    if until <= tokio::time::Instant::now() {
                        break SocketClose::host(1001, "idle");
                    }
                    idle_timer.as_mut().reset(until);
                }
                // What the guest sent goes first: a client that sends
                // faster than it reads is not read from meanwhile.
                next = outbox.next() => match next {
                    Some(Outgoing::Message(message)) => {
                        last_heard = tokio::time::Instant::now();
                        messages_out += 1;
                        counted_out.inc();
                        let sent = tokio::time::timeout(self.ws.write_timeout, sink.send(to_frame(message)));
                        if !matches!(sent.await, Ok(Ok(()))) {
                            break SocketClose::answered(1006, String::new());
                        }
                    }
                    Some(Outgoing::Close(code, reason)) => break SocketClose { code, reason, send: true },
                    None => break SocketClose::host(1011, "the guest failed"),
                },
                handed = async { handing.as_mut().expect("checked").await }, if handing.is_some() => {
                    handing = None;
                    if handed.is_err() {
                        break SocketClose::host(1011, "the guest failed");
                    }
                }
                frame = stream.next(), if handing.is_none() => {
                    let message = match from_client(frame) {
                        Ok(Some(message)) => message,
                        Ok(None) if control.take(tokio::time::Instant::now()) => continue,
                        Ok(None) => break SocketClose::host(1008, "too many pings"),
                        Err(closed) => break closed,
                    };
                    last_heard = tokio::time::Instant::now();
                    let Ok(charge) = self.ws.account().charge(message.len() + MESSAGE_OVERHEAD) else {
                        break SocketClose::host(1008, "host memory");
                    };
                    messages_in += 1;
                    counted_in.inc();
                    handing = Some(Box::pin(events.message(message, charge)));
                }
            }
        };
        drop(handing);
        if closed.code != 1006 {
            close(&closed, &mut sink, &mut stream, self.ws.write_timeout).await;
        }
        self.ws.metrics.websocket_closed(&self.tenant, closed.code);
        if self.ws.access_log {
            tracing::info!(
                target: "catshost::access",
                tenant = &*self.tenant,
                client = %self.peer,
                socket = id,
                protocol,
                duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                messages_in,
                messages_out,
                code = closed.code,
                "WebSocket closed"
            );
        }
        events.closed(closed.code, closed.reason).await;
    }
}
