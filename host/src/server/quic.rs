//! HTTP/3's side of the server: a QUIC endpoint on the TCP listener's port
//! number (UDP), admitting connections as the TCP listener does (a
//! connection permit, the client's slot, the host-memory guard) and
//! validating addresses (Retry) when handshakes pile up; each connection in
//! its own task: the handshake under its timeout, then HTTP/3 (http/h3.rs).
//! A stop sends GOAWAY on every connection, lets their requests finish
//! within the shutdown timeout, then closes the endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use quinn::{IdleTimeout, VarInt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::Inner;
use crate::error::Error;
use crate::http::{ConnInfo, H3_NO_ERROR, SniName};
use crate::net::{ClientSlot, SniCerts, Tls};

/// Bytes a client may send on one request stream ahead of the guest
/// reading them (HTTP/2's default stream window, hyper's).
const STREAM_WINDOW: u32 = 1 << 20;
/// Bytes a client may send on all streams of a connection ahead of the
/// guests reading them (quinn's default is unbounded).
const CONNECTION_WINDOW: u32 = 4 << 20;
/// Bytes of responses a connection buffers for a client not yet taking
/// them (quinn's default is 10 MB).
const SEND_WINDOW: u64 = 4 << 20;
/// Unidirectional streams a client may open: HTTP/3's control stream and
/// QPACK's two, and room for what a client adds (grease).
const UNI_STREAMS: u32 = 8;
/// Connection attempts quinn holds before the accept loop takes them;
/// past it new ones are refused at once.
const MAX_INCOMING: usize = 1024;
/// Bytes quinn buffers for one connection attempt not yet taken, and for
/// all of them.
const INCOMING_BUFFER: u64 = 64 << 10;
const INCOMING_BUFFER_TOTAL: u64 = 8 << 20;
/// The UDP socket's buffers, each way: what a few streams send in a burst.
const UDP_BUFFER: usize = 4 << 20;
/// Handshakes in progress past which a client whose address is not yet
/// validated is sent a Retry first (a spoofed source never answers it, so
/// it makes the server hold nothing).
pub(crate) const RETRY_PAST_HANDSHAKES: usize = 16;

impl Inner {
    /// The QUIC endpoint of HTTP/3, bound to UDP `addr` (the TCP
    /// listener's), with the certificates of `tls`; its `Alt-Svc` value is
    /// set for TCP responses.
    pub(super) fn bind_quic(&self, addr: SocketAddr, tls: &Tls) -> Result<quinn::Endpoint, Error> {
        let crypto = tls.quic().map_err(|e| Error::Http3Tls(e.into()))?;
        let http = &self.builder.settings.http;
        let mut transport = quinn::TransportConfig::default();
        // Past the idle timeout without a packet, the connection is gone;
        // keep-alives answer for a client waiting on a slow guest. No
        // request in flight for as long: http/h3.rs closes it.
        let idle = IdleTimeout::try_from(http.idle_timeout).unwrap_or(VarInt::MAX.into());
        transport
            .max_concurrent_bidi_streams(http.http3_max_concurrent_streams.into())
            .max_concurrent_uni_streams(UNI_STREAMS.into())
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(http.idle_timeout / 3).filter(|d| !d.is_zero()))
            .stream_receive_window(STREAM_WINDOW.into())
            .receive_window(CONNECTION_WINDOW.into())
            .send_window(SEND_WINDOW)
            .datagram_receive_buffer_size(None);
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config
            .transport_config(Arc::new(transport))
            .max_incoming(MAX_INCOMING)
            .incoming_buffer_size(INCOMING_BUFFER)
            .incoming_buffer_size_total(INCOMING_BUFFER_TOTAL);
        let socket = udp_socket(addr).map_err(|source| Error::BindUdp { addr, source })?;
        let runtime = Arc::new(quinn::TokioRuntime);
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(config),
            socket,
            runtime,
        )
        .map_err(|source| Error::BindUdp { addr, source })?;
        let alt_svc = format!("h3=\":{}\"; ma=86400", addr.port());
        let _ = self
            .alt_svc
            .set(http::HeaderValue::try_from(alt_svc).expect("a valid header value"));
        Ok(endpoint)
    }

    /// Accepts and serves HTTP/3 connections on `endpoint` until the stop
    /// switch, then drains them (GOAWAY, their requests within the
    /// shutdown timeout) and closes the endpoint.
    pub(super) async fn serve_quic(
        self: &Arc<Self>,
        endpoint: quinn::Endpoint,
        sni: Option<SniCerts>,
    ) {
        let handshakes = Arc::new(AtomicUsize::new(0));
        let mut connections = JoinSet::new();
        let stop = self.builder.stop.clone();
        loop {
            tokio::select! {
                biased;
                () = stop.switched() => break,
                incoming = endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    let Some((incoming, permit, slot)) = self.admit_quic(incoming, &handshakes) else {
                        continue;
                    };
                    let (server, sni) = (self.clone(), sni.clone());
                    let handshake = Handshake::start(&handshakes);
                    connections.spawn(async move {
                        server.quic_connection(incoming, handshake, slot, sni).await;
                        drop(permit);
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        // New connections are refused from here on; those open send
        // GOAWAY (each watches the stop switch).
        endpoint.set_server_config(None);
        let timeout = self.builder.settings.shutdown_timeout;
        let drained = tokio::time::timeout(timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
        endpoint.close(H3_NO_ERROR, b"");
        // The close frames go out; a client that takes none of them is not
        // waited for long.
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    }

    /// A connection attempt taken, with its permit and its client's slot;
    /// or `None` when it is refused (at the connection limit, the client's
    /// cap, the host-memory guard) or sent a Retry first.
    fn admit_quic(
        &self,
        incoming: quinn::Incoming,
        handshakes: &AtomicUsize,
    ) -> Option<(quinn::Incoming, OwnedSemaphorePermit, ClientSlot)> {
        let peer = incoming.remote_address();
        let metrics = &self.builder.metrics;
        if self.account.held() >= self.account.limit() {
            tracing::debug!(%peer, "HTTP/3 connection refused: the host holds its most memory (--max-host-memory)");
            metrics.connection_closed("host_memory");
            incoming.refuse();
            self.shed();
            return None;
        }
        if handshakes.load(Ordering::Relaxed) >= RETRY_PAST_HANDSHAKES
            && !incoming.remote_address_validated()
            && incoming.may_retry()
        {
            // The client comes back with a token, from the address it
            // claims, or never.
            metrics.connection_closed("quic_retry");
            let _ = incoming.retry();
            return None;
        }
        // A UDP client has no listen backlog to wait in: past the limit it
        // is refused, and falls back to TCP.
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "HTTP/3 connection refused: --max-connections are open");
            metrics.connection_closed("max_connections");
            incoming.refuse();
            return None;
        };
        let Some(slot) = self.admit(peer) else {
            incoming.refuse();
            return None;
        };
        Some((incoming, permit, slot))
    }

    /// Serves one QUIC connection until it ends: its handshake within the
    /// TLS handshake timeout, then HTTP/3.
    async fn quic_connection(
        &self,
        incoming: quinn::Incoming,
        handshake: Handshake,
        slot: ClientSlot,
        sni: Option<SniCerts>,
    ) {
        let metrics = &self.builder.metrics;
        let _open = metrics.connection_opened();
        let _slot = slot;
        let peer = incoming.remote_address();
        let timeout = self.builder.settings.tls_handshake_timeout;
        let connecting = async { incoming.accept()?.await };
        let conn = match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "QUIC handshake failed");
                metrics.tls_handshake_failed("error");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "QUIC handshake timed out");
                metrics.tls_handshake_failed("timeout");
                return;
            }
        };
        drop(handshake);
        let sni = sni.map(|certs| {
            let name = conn
                .handshake_data()
                .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|data| data.server_name.map(Into::into));
            Arc::new(SniName { name, certs })
        });
        let info = ConnInfo {
            peer,
            tls: true,
            sni,
        };
        let stop = self.builder.stop.clone();
        let dispatch = self.dispatch.clone();
        if let Some(cut) = self.conn.h3().serve(conn, dispatch, info, stop).await {
            tracing::debug!(%peer, reason = cut.as_str(), "HTTP/3 connection closed");
            metrics.connection_closed(cut.as_str());
        }
    }
}

/// A UDP socket bound to `addr` with buffers of [`UDP_BUFFER`] each way
/// (the kernel caps them at `net.core.rmem_max` and `wmem_max`; a warning
/// says when it did). With the default (208 KiB here), a burst of a few
/// streams' data overflows the receive buffer: the kernel drops datagrams,
/// and QUIC takes the loss for congestion.
fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // As the TCP listener: [::] takes IPv4 too where the system allows.
        let _ = socket.set_only_v6(false);
    }
    for (what, set, get) in [
        (
            "receive",
            Socket::set_recv_buffer_size as fn(&Socket, usize) -> std::io::Result<()>,
            Socket::recv_buffer_size as fn(&Socket) -> std::io::Result<usize>,
        ),
        (
            "send",
            Socket::set_send_buffer_size,
            Socket::send_buffer_size,
        ),
    ] {
        let _ = set(&socket, UDP_BUFFER);
        // Linux reports twice what was set (its bookkeeping).
        if let Ok(got) = get(&socket)
            && got < UDP_BUFFER
        {
            tracing::warn!(
                buffer = what,
                wanted = UDP_BUFFER,
                got,
                "HTTP/3's UDP socket buffer is smaller than it should be: raise \
                 net.core.rmem_max and net.core.wmem_max, or datagrams are dropped under load"
            );
        }
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// One handshake in progress, counted until it is dropped.
struct Handshake(Arc<AtomicUsize>);

impl Handshake {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
