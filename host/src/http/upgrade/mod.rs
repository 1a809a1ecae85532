//! Upgrades: what a request asks for (HTTP/1.1 `Upgrade`, or HTTP/2
//! extended CONNECT, RFC 8441: [`Asked`]), who serves it
//! ([`upgrade_goes_to`]: the tenant's WebSocket handler in
//! `http/websocket.rs`, or the library user's [`hook`]), and what runs on
//! the connection once it is handed over ([`UpgradeRun`], returned beside
//! the response in a [`Dispatched`]). For a WebSocket over HTTP/1.1 the
//! host checks the key and version and answers `Sec-WebSocket-Accept` (a
//! guest needs no SHA-1).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::header::{CONNECTION, HeaderValue, UPGRADE};
use hyper::upgrade::OnUpgrade;

use super::ResponseBody;
use crate::head::clone_head;

pub(super) mod hook;

/// What the dispatch of one request gives its connection: the response,
/// and apart from it, what runs on the connection once that response has
/// accepted an upgrade.
pub(crate) struct Dispatched {
    /// The response hyper sends.
    pub(crate) response: http::Response<ResponseBody>,
    /// When the response accepts an upgrade: what the connection (HTTP/2:
    /// the stream) is handed to once the response is out.
    pub(crate) upgrade: Option<UpgradeRun>,
}

impl Dispatched {
    /// A response that accepts no upgrade.
    pub(crate) fn response(response: http::Response<ResponseBody>) -> Self {
        Self {
            response,
            upgrade: None,
        }
    }

    /// A response that accepts an upgrade, and what then runs on its
    /// connection.
    pub(crate) fn upgraded(response: http::Response<ResponseBody>, run: UpgradeRun) -> Self {
        Self {
            response,
            upgrade: Some(run),
        }
    }
}

/// What runs on an upgraded connection: a hook's run, or a WebSocket's. It
/// waits for hyper to hand the connection over (once the response is out)
/// and serves it until it ends; the connection that polls it
/// ([`super::conn`]) stays open until then.
#[must_use = "an upgrade's run does nothing unless it is polled"]
pub(crate) struct UpgradeRun(BoxFuture<'static, ()>);

impl UpgradeRun {
    /// `run`, boxed: a hook's and a WebSocket's runs are of one type.
    pub(crate) fn new(run: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(Box::pin(run))
    }
}

impl Future for UpgradeRun {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

/// Who serves the upgrade a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpgradeTo<W, H> {
    /// The tenant's WebSocket handler (a component): the host opens the
    /// socket, and the handler's `open` answers the handshake.
    WebSocketHandler(W),
    /// The library's [`UpgradeHook`](hook::UpgradeHook), if the tenant's guest accepts the
    /// upgrade (101, or 2xx to the CONNECT).
    Hook(H),
}

/// Decides, once per request, who serves the upgrade `req` asks for: a
/// WebSocket goes to the tenant's WebSocket `handler` when it has one; any
/// other protocol, and a WebSocket when it has no handler, to the `hook`
/// when the tenant may upgrade. `None` when `req` asks for no upgrade or
/// for none the tenant serves: its guest's answer is an ordinary response
/// (and a 101 gets 500).
pub(crate) fn upgrade_goes_to<B, W, H>(
    req: &http::Request<B>,
    handler: Option<W>,
    hook: Option<H>,
) -> Option<UpgradeTo<W, H>> {
    // A tenant that serves no upgrade does not look at the headers.
    if handler.is_none() && hook.is_none() {
        return None;
    }
    let protocol = Asked::protocol_of(req)?;
    match handler {
        Some(handler) if protocol.eq_ignore_ascii_case("websocket") => {
            Some(UpgradeTo::WebSocketHandler(handler))
        }
        _ => hook.map(UpgradeTo::Hook),
    }
}

/// A request's upgrade, taken from it before its guest runs: what the
/// guest's acceptance turns into an [`Upgraded`](hook::Upgraded), or a
/// WebSocket handler's socket.
pub(crate) struct Asked {
    protocol: String,
    version: http::Version,
    head: http::request::Parts,
    on: OnUpgrade,
    /// A WebSocket's `Sec-WebSocket-Accept` (RFC 6455, section 4.2.2),
    /// which the host answers for the guest.
    accept: Option<HeaderValue>,
}

/// RFC 6455's GUID, hashed with a WebSocket's key.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + GUID)).
fn websocket_accept(key: &[u8]) -> HeaderValue {
    use base64::Engine as _;
    let mut sha1 = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    sha1.update(key);
    sha1.update(WEBSOCKET_GUID.as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(sha1.finish());
    HeaderValue::from_str(&accept).expect("base64 is a valid header value")
}

impl Asked {
    /// The upgrade `req` asks for, if any, taken out of it: `Connection:
    /// upgrade` with an `Upgrade` header over HTTP/1.1, or CONNECT with a
    /// `:protocol` over HTTP/2.
    pub(crate) fn take<B>(req: &mut http::Request<B>) -> Option<Self> {
        let protocol = Self::protocol_of(req)?.to_string();
        // A WebSocket over HTTP/1.1 needs its key (16 bytes, base64) and
        // version 13; without them it is no WebSocket upgrade.
        let accept = match req.version() {
            http::Version::HTTP_11 if protocol.eq_ignore_ascii_case("websocket") => {
                let headers = req.headers();
                let version = headers.get("sec-websocket-version")?;
                let key = headers.get("sec-websocket-key")?.as_bytes();
                if version != "13" || key.len() != 24 {
                    return None;
                }
                Some(websocket_accept(key))
            }
            _ => None,
        };
        let head = clone_head(req.method(), req.uri(), req.version(), req.headers());
        Some(Self {
            protocol,
            version: req.version(),
            head,
            on: hyper::upgrade::on(req),
            accept,
        })
    }

    /// The protocol `req` asks to upgrade to, if any, left in it.
    fn protocol_of<B>(req: &http::Request<B>) -> Option<&str> {
        Some(match req.version() {
            http::Version::HTTP_11 => {
                let asks = req
                    .headers()
                    .get_all(CONNECTION)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
                let first = req
                    .headers()
                    .get(UPGRADE)?
                    .to_str()
                    .ok()?
                    .split(',')
                    .next()?
                    .trim();
                if !asks || first.is_empty() {
                    return None;
                }
                first
            }
            http::Version::HTTP_2 if req.method() == http::Method::CONNECT => {
                req.extensions().get::<hyper::ext::Protocol>()?.as_str()
            }
            _ => return None,
        })
    }

    /// The request that asked.
    pub(crate) fn head(&self) -> &http::request::Parts {
        &self.head
    }

    /// The HTTP version it came by.
    pub(crate) fn version(&self) -> http::Version {
        self.version
    }

    /// The connection (HTTP/2: the stream), once the response is out.
    pub(crate) fn into_on_upgrade(self) -> OnUpgrade {
        self.on
    }

    /// Whether a guest's `status` accepts this upgrade: 101 over HTTP/1.1,
    /// 2xx over HTTP/2.
    pub(crate) fn accepted_by(&self, status: http::StatusCode) -> bool {
        match self.version {
            http::Version::HTTP_2 => status.is_success(),
            _ => status == http::StatusCode::SWITCHING_PROTOCOLS,
        }
    }

    /// The headers the response needs besides the guest's (which cannot
    /// set `Connection` or `Upgrade`).
    pub(crate) fn complete(&self, headers: &mut http::HeaderMap) {
        headers.remove(http::header::CONTENT_LENGTH);
        headers.remove(http::header::TRANSFER_ENCODING);
        if self.version == http::Version::HTTP_11 {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            if let Ok(protocol) = HeaderValue::from_str(&self.protocol) {
                headers.insert(UPGRADE, protocol);
            }
        }
        if let Some(accept) = &self.accept {
            headers.insert("sec-websocket-accept", accept.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        version: http::Version,
        method: &str,
        headers: &[(&str, &str)],
    ) -> http::Request<()> {
        let mut builder = http::Request::builder()
            .method(method)
            .uri("/chat")
            .version(version);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn an_upgrade_is_asked_by_connection_upgrade_or_extended_connect() {
        let http1 = http::Version::HTTP_11;
        let asks = |mut req: http::Request<()>| Asked::take(&mut req).map(|a| a.protocol);
        assert_eq!(
            asks(request(
                http1,
                "GET",
                &[
                    ("connection", "keep-alive, Upgrade"),
                    ("upgrade", "chat, h2c")
                ]
            )),
            Some("chat".into())
        );
        // An Upgrade header without `Connection: upgrade` is no request.
        assert_eq!(
            asks(request(http1, "GET", &[("upgrade", "websocket")])),
            None
        );
        assert_eq!(
            asks(request(http1, "GET", &[("connection", "upgrade")])),
            None
        );
        assert_eq!(
            asks(request(
                http::Version::HTTP_10,
                "GET",
                &[("connection", "upgrade"), ("upgrade", "x")]
            )),
            None
        );
        let mut connect = request(http::Version::HTTP_2, "CONNECT", &[]);
        assert_eq!(asks(connect.clone()), None, "CONNECT without :protocol");
        connect
            .extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        assert_eq!(asks(connect), Some("websocket".into()));
        // A protocol header over HTTP/2 asks for nothing.
        assert_eq!(
            asks(request(
                http::Version::HTTP_2,
                "GET",
                &[("connection", "upgrade"), ("upgrade", "x")]
            )),
            None
        );
    }

    #[test]
    fn a_websocket_goes_to_the_handler_and_any_other_upgrade_to_the_hook() {
        use UpgradeTo::{Hook, WebSocketHandler};
        let http1 = http::Version::HTTP_11;
        let upgrade = |protocol| {
            request(
                http1,
                "GET",
                &[("connection", "upgrade"), ("upgrade", protocol)],
            )
        };
        let mut h2_websocket = request(http::Version::HTTP_2, "CONNECT", &[]);
        h2_websocket
            .extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let websocket = upgrade("WebSocket");
        let chat = upgrade("chat");
        let plain = request(http1, "GET", &[]);
        // The request; whether the tenant has a WebSocket handler, and a
        // hook; who serves its upgrade.
        let table = [
            (&websocket, true, true, Some(WebSocketHandler("handler"))),
            (&websocket, true, false, Some(WebSocketHandler("handler"))),
            (&websocket, false, true, Some(Hook("hook"))),
            (&websocket, false, false, None),
            (&h2_websocket, true, true, Some(WebSocketHandler("handler"))),
            (&h2_websocket, false, true, Some(Hook("hook"))),
            (&chat, true, true, Some(Hook("hook"))),
            (&chat, true, false, None),
            (&chat, false, true, Some(Hook("hook"))),
            (&plain, true, true, None),
            (&plain, false, false, None),
        ];
        for (req, handler, hook, to) in table {
            let handler = handler.then_some("handler");
            let hook = hook.then_some("hook");
            assert_eq!(
                upgrade_goes_to(req, handler, hook),
                to,
                "{:?} {:?}, handler {handler:?}, hook {hook:?}",
                req.method(),
                req.headers().get("upgrade"),
            );
        }
    }

    #[test]
    fn a_websocket_upgrade_gets_its_accept_key_and_needs_its_key_and_version() {
        // RFC 6455, section 1.3's example.
        let ws = |headers: &[(&str, &str)]| {
            let mut all = vec![("connection", "Upgrade"), ("upgrade", "websocket")];
            all.extend_from_slice(headers);
            let mut req = request(http::Version::HTTP_11, "GET", &all);
            Asked::take(&mut req)
        };
        let asked = ws(&[
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ])
        .unwrap();
        let mut headers = http::HeaderMap::new();
        asked.complete(&mut headers);
        assert_eq!(
            headers["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(headers["upgrade"], "websocket");
        assert!(ws(&[("sec-websocket-version", "13")]).is_none(), "no key");
        assert!(
            ws(&[
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("sec-websocket-version", "8")
            ])
            .is_none(),
            "another version"
        );
    }

    #[test]
    fn only_101_accepts_over_http1_and_2xx_over_http2() {
        let mut req = request(
            http::Version::HTTP_11,
            "GET",
            &[("connection", "upgrade"), ("upgrade", "echo")],
        );
        let asked = Asked::take(&mut req).unwrap();
        assert!(asked.accepted_by(http::StatusCode::SWITCHING_PROTOCOLS));
        assert!(!asked.accepted_by(http::StatusCode::OK));
        let mut headers = http::HeaderMap::new();
        headers.insert("content-length", "5".parse().unwrap());
        asked.complete(&mut headers);
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["upgrade"], "echo");
        assert!(!headers.contains_key("content-length"));

        let mut req = request(http::Version::HTTP_2, "CONNECT", &[]);
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let asked = Asked::take(&mut req).unwrap();
        assert!(asked.accepted_by(http::StatusCode::OK));
        assert!(!asked.accepted_by(http::StatusCode::SWITCHING_PROTOCOLS));
    }
}
