//! A request's head, cloned: what the WebSocket and upgrade paths keep of
//! a request once hyper has its body, and what a reused instance hands a
//! retried request.

use http::request::Parts;
use http::{HeaderMap, Method, Uri, Version};

/// A request head of `method`, `uri`, `version` and `headers`, without
/// extensions (they are not `Clone`, and nothing downstream reads them).
pub(crate) fn clone_head(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
) -> Parts {
    let mut head = http::Request::new(());
    *head.method_mut() = method.clone();
    *head.uri_mut() = uri.clone();
    *head.version_mut() = version;
    *head.headers_mut() = headers.clone();
    head.into_parts().0
}
