//! One connection, in its own task: whose it is (the peer, or the client a
//! trusted proxy's PROXY header names) and that client's slot, the TLS
//! handshake under its timeout, then hyper (with its watchdog: the first
//! request within the header read timeout, the idle and write timeouts).

use std::net::SocketAddr;

use hyper_util::server::graceful::Watcher;
use tokio::net::TcpStream;

use super::{Inner, TlsSide};
use crate::http::{ConnInfo, Protocol, SniName};
use crate::net::{self, Accepted, ClientSlot, Rewind};

impl Inner {
    /// Serves one accepted connection until it ends. `slot` is its client's
    /// when the accept loop took it; without one, the connection is a
    /// trusted proxy's, whose PROXY header says whose slot to take.
    pub(super) async fn connection(
        &self,
        accepted: Accepted,
        slot: Option<ClientSlot>,
        tls: Option<TlsSide>,
        watcher: Watcher,
    ) {
        let (stream, peer, slot) = match slot {
            Some(slot) => (Rewind::unread(accepted.stream), accepted.peer, slot),
            None => match self.proxied(accepted).await {
                Some(proxied) => proxied,
                None => return,
            },
        };
        let metrics = &self.builder.metrics;
        let _open = metrics.connection_opened();
        // Given back before the connection stops counting as open, so that
        // a client seeing one fewer open may open one more.
        let _slot = slot;
        let settings = &self.builder.settings;
        let versions = settings.http.versions;
        let Some(tls) = tls else {
            // The watchdog closes it if no request comes within the header
            // read timeout.
            let conn = ConnInfo {
                peer,
                tls: false,
                sni: None,
            };
            let protocol = Protocol::cleartext(versions);
            return self.http(stream, protocol, conn, watcher).await;
        };
        // In the connection's task, under a timeout: a client that never
        // finishes its handshake holds nothing but its own task.
        let timeout = settings.tls_handshake_timeout;
        let stream = match tokio::time::timeout(timeout, tls.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake failed");
                metrics.tls_handshake_failed("error");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                metrics.tls_handshake_failed("timeout");
                return;
            }
        };
        let protocol = Protocol::from_alpn(stream.get_ref().1.alpn_protocol(), versions);
        let sni = tls.sni.map(|certs| {
            let name = stream.get_ref().1.server_name().map(Into::into);
            std::sync::Arc::new(SniName { name, certs })
        });
        let conn = ConnInfo {
            peer,
            tls: true,
            sni,
        };
        self.http(stream, protocol, conn, watcher).await;
    }

    /// A slot of `client`'s, or `None` (logged, counted) when it has the
    /// most connections it may open: its connection is then closed at once,
    /// so that one client cannot hold every connection the server allows.
    pub(super) fn admit(&self, client: SocketAddr) -> Option<ClientSlot> {
        let slot = self.clients.admit(client.ip());
        if slot.is_none() {
            tracing::debug!(peer = %client, "connection refused: the client has the most connections it may open");
            self.builder.metrics.connection_closed("per_client_limit");
        }
        slot
    }

    /// A trusted proxy's connection: the PROXY header it opens with, read
    /// within the header read timeout (before the TLS handshake, which
    /// comes after it), and a slot of the client it names (the proxy's own
    /// when it names none, as in a health check); `None` when the
    /// connection is closed instead, for want of a valid header or a slot.
    async fn proxied(
        &self,
        accepted: Accepted,
    ) -> Option<(Rewind<TcpStream>, SocketAddr, ClientSlot)> {
        let Accepted { stream, peer } = accepted;
        let timeout = self.builder.settings.http.header_read_timeout;
        let proxied = match net::read_header(stream, timeout).await {
            Ok(proxied) => proxied,
            Err(error) => {
                let error = crate::log::chain(&error);
                tracing::debug!(%peer, error, "connection from a trusted proxy closed");
                self.builder.metrics.connection_closed("proxy_header");
                return None;
            }
        };
        let client = proxied.client.unwrap_or(peer);
        Some((proxied.stream, client, self.admit(client)?))
    }

    /// HTTP over `io` (a TCP socket, or TLS over one), counting a close by
    /// its watchdog.
    async fn http<I>(&self, io: I, protocol: Protocol, conn: ConnInfo, watcher: Watcher)
    where
        I: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + std::os::fd::AsRawFd
            + Unpin
            + Send
            + 'static,
    {
        let dispatch = self.dispatch.clone();
        // Over TLS, with HTTP/3 beside: its port.
        let alt_svc = conn.tls.then(|| self.alt_svc.get().cloned()).flatten();
        let closed = self
            .conn
            .serve(io, protocol, dispatch, conn, alt_svc, watcher)
            .await;
        if let Some(closed) = closed {
            self.builder.metrics.connection_closed(closed.as_str());
        }
    }
}
