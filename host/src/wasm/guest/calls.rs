//! What becomes of a guest's outgoing request besides a connection: a call
//! to another tenant of the server, served in process, and the log line of
//! a refusal.

use wasmtime_wasi_http::WasiBody;

use super::outbound::{InternalCall, MAX_CALL_DEPTH};
use super::sandbox::Sandbox;
use super::serving::Serving;
use crate::ids::RequestId;
use crate::net::IoFuture;

/// Serves a guest's request to the internal name of `tenant` (allowed by
/// its tenant's outbound list) with that tenant, in process: one call
/// deeper than the deepest request its instance serves, under the caller's
/// request id.
pub(crate) async fn call_tenant(
    serving: &Serving,
    sandbox: &Sandbox,
    tenant: &str,
    request: http::Request<WasiBody>,
) -> Result<(http::Response<WasiBody>, IoFuture), wasmtime_wasi_http::Error> {
    let depth = serving.depth().saturating_add(1);
    if depth > MAX_CALL_DEPTH {
        let reason = format!(
            "a chain of tenant-to-tenant calls would be {depth} deep, past the most \
             ({MAX_CALL_DEPTH}): a loop, most likely"
        );
        denied(serving, sandbox, request.uri(), &reason);
        return Err(wasmtime_wasi_http::Error::LoopDetected);
    }
    let Some(tenants) = &sandbox.tenants else {
        denied(
            serving,
            sandbox,
            request.uri(),
            "no tenants to call in this server",
        );
        return Err(wasmtime_wasi_http::Error::DestinationNotFound);
    };
    let call = InternalCall {
        // A WASI 0.3 instance serving several requests at once cannot
        // tell whose call this is: the callee's request gets an id of
        // its own then.
        request_id: serving
            .request()
            .map_or_else(RequestId::next, RequestId::from_raw),
        depth,
    };
    tracing::debug!(
        target: "catshost::outbound",
        request_id = %call.request_id,
        instance_id = %serving.instance,
        tenant = &*sandbox.tenant,
        callee = tenant,
        depth,
        "tenant-to-tenant call"
    );
    // The caller's own limit bounds the call, whatever the callee's.
    let called = tokio::time::timeout(
        sandbox.limits.request_timeout,
        tenants.call(tenant, request, call),
    );
    let response = match called.await {
        Ok(response) => response?,
        Err(_) => return Err(wasmtime_wasi_http::Error::ConnectionReadTimeout),
    };
    // No connection: nothing to wait for once the response is read.
    let done: IoFuture = Box::new(std::future::ready(Ok(())));
    Ok((response, done))
}

/// Logs an outgoing request to `uri` denied for `reason`, within the
/// tenant's log budget.
pub(crate) fn denied(serving: &Serving, sandbox: &Sandbox, uri: &http::Uri, reason: &str) {
    if sandbox.log_budget.take(&sandbox.tenant) {
        tracing::warn!(
            target: "catshost::outbound",
            request_id = serving.request().map(tracing::field::display),
            instance_id = %serving.instance,
            tenant = &*sandbox.tenant,
            origin = %origin(uri),
            reason,
            "outgoing HTTP request denied"
        );
    }
}

/// `scheme://authority` of `uri`: what a log line says of an outgoing
/// request (its path and query may carry secrets).
pub(crate) fn origin(uri: &http::Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map_or("?", |a| a.as_str())
    )
}
