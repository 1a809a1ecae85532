//! The admin endpoints, on a listener of their own (`--admin-addr`):
//! `/healthz` (the process answers), `/readyz` (the server accepts
//! requests) and `/metrics` (Prometheus text format).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::Server;

/// Serves the admin endpoints of `server` on `listener` (HTTP/1.1) until the
/// task is dropped. They keep answering while the server drains, so a
/// liveness probe does not kill a stopping process.
///
/// Bounded as the server's own listener is: at most `max_connections` open
/// at once (more are closed as they are accepted), each counted against the
/// server's per-client cap, each under the server's header read, idle and
/// write timeouts (a client that pipelines requests and reads nothing is
/// reset at the write timeout). So the admin port cannot hold more than
/// `max_connections` descriptors, whoever reaches it.
pub async fn serve(listener: tokio::net::TcpListener, server: Server, max_connections: usize) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let metrics = server.metrics().clone();
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, say: back off rather than spin.
                    tracing::warn!(%error, "admin listener failed to accept");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        // Closed at once, not left in the backlog: a probe past the cap
        // fails now rather than at its own timeout.
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "admin connection refused: the admin listener has its most connections open");
            metrics.connection_closed("admin_limit");
            continue;
        };
        let Some(slot) = server.admit_client(peer.ip()) else {
            tracing::debug!(%peer, "admin connection refused: the client has the most connections it may open");
            metrics.connection_closed("per_client_limit");
            continue;
        };
        let server = server.clone();
        connections.spawn(async move {
            let (_permit, _slot) = (permit, slot);
            let respond = {
                let server = server.clone();
                move |req: &Request<Incoming>| respond(&server, req)
            };
            if let Some(closed) = server.conn().serve_host(stream, respond).await {
                tracing::debug!(%peer, reason = closed.as_str(), "admin connection closed by its watchdog");
                server.metrics().connection_closed(closed.as_str());
            }
        });
    }
}

/// The admin response to `req`.
pub fn respond<B>(server: &Server, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if server.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" if server.stop().is_switched() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "stopping\n")
        }
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(server.metrics().encode())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz or /metrics\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
