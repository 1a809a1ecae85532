//! One connection, in its own task: the TLS handshake under its timeout (or,
//! in cleartext, the first byte under the header read timeout), then hyper.

use hyper_util::server::graceful::Watcher;
use tokio_rustls::TlsAcceptor;

use super::Inner;
use crate::http::{ConnInfo, Protocol};
use crate::net::Accepted;

impl Inner {
    /// Serves one accepted connection until it ends.
    pub(super) async fn connection(
        &self,
        accepted: Accepted,
        acceptor: Option<TlsAcceptor>,
        watcher: Watcher,
    ) {
        let metrics = &self.builder.metrics;
        let _open = metrics.connection_opened();
        let settings = &self.builder.settings;
        let (stream, peer) = (accepted.stream, accepted.peer);
        let versions = settings.http.versions;
        let Some(acceptor) = acceptor else {
            // A client must start talking within the header read timeout:
            // before hyper has chosen HTTP/1 or HTTP/2 no timer of its own
            // runs.
            let mut first = [0; 1];
            let timeout = settings.http.header_read_timeout;
            match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return,
                Err(_) => {
                    tracing::debug!(%peer, "connection closed: nothing received within the header read timeout");
                    return;
                }
            }
            let conn = ConnInfo { peer, tls: false };
            let protocol = Protocol::cleartext(versions);
            return self
                .conn
                .serve(stream, protocol, self.dispatch.clone(), conn, watcher)
                .await;
        };
        // In the connection's task, under a timeout: a client that never
        // finishes its handshake holds nothing but its own task.
        let timeout = settings.tls_handshake_timeout;
        let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
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
        let conn = ConnInfo { peer, tls: true };
        self.conn
            .serve(stream, protocol, self.dispatch.clone(), conn, watcher)
            .await;
    }
}
