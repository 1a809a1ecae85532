//! One connection, in its own task: the TLS handshake under its timeout,
//! then hyper (with its watchdog: the first request within the header read
//! timeout, the idle and write timeouts).

use super::{Inner, TlsSide};
use crate::http::{ConnInfo, Protocol, SniName};
use crate::net::Accepted;
use crate::net::ClientSlot;
use hyper_util::server::graceful::Watcher;

impl Inner {
    /// Serves one accepted connection until it ends.
    pub(super) async fn connection(
        &self,
        accepted: Accepted,
        tls: Option<TlsSide>,
        watcher: Watcher,
        slot: ClientSlot,
    ) {
        let metrics = &self.builder.metrics;
        let _open = metrics.connection_opened();
        // Given back before the connection stops counting as open, so that
        // a client seeing one fewer open may open one more.
        let _slot = slot;
        let settings = &self.builder.settings;
        let (stream, peer) = (accepted.stream, accepted.peer);
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
        let closed = self.conn.serve(io, protocol, dispatch, conn, watcher).await;
        if let Some(closed) = closed {
            self.builder.metrics.connection_closed(closed.as_str());
        }
    }
}
