//! The host a request is for, checked: the guest must never see a request
//! without one, nor one a router would read differently.

use http::{Request, header};

use super::HostError;
use crate::routing::normalize_host;

/// The host a request is for: its URI's authority (HTTP/2, or an HTTP/1
/// request in absolute form), else its Host header, which must be one and
/// a valid host (RFC 9112, section 3.2). With both, they must name the same
/// host: the router reads one and the guest may read the other, so a
/// request for `b.test` with `Host: a.test` would reach tenant b looking
/// like a request for a. The guest never sees a request without a host.
pub(crate) fn request_host<B>(req: &Request<B>) -> Result<&str, HostError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::BadRequest("more than one Host header"));
    }
    let host = match host.map(|host| std::str::from_utf8(host.as_bytes())) {
        Some(Ok(host)) if is_host(host.as_bytes()) => Some(host),
        Some(_) => return Err(HostError::BadRequest("the Host header is not a host")),
        None => None,
    };
    match (req.uri().authority(), host) {
        (Some(authority), Some(host))
            if normalize_host(authority.as_str()) != normalize_host(host) =>
        {
            Err(HostError::BadRequest(
                "the Host header and the URI name different hosts",
            ))
        }
        (Some(authority), _) => Ok(authority.host()),
        (None, Some(host)) => Ok(host),
        (None, None) => Err(HostError::BadRequest("no Host header")),
    }
}

/// Whether `host` is `HOST[:PORT]` (RFC 9110, section 7.2): a name or IPv4
/// address (letters, digits, `-._~!$&'()*+;=` and %-escapes; no comma, no
/// `/`, no `@`) or a bracketed IPv6 address, then an optional port.
fn is_host(host: &[u8]) -> bool {
    let port = if host.first() == Some(&b'[') {
        let Some(end) = host.iter().position(|&b| b == b']') else {
            return false;
        };
        let inside = &host[1..end];
        if inside.is_empty()
            || !inside
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        &host[end + 1..]
    } else {
        let split = host.iter().position(|&b| b == b':').unwrap_or(host.len());
        let name = &host[..split];
        if name.is_empty()
            || !name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+;=%".contains(&b))
        {
            return false;
        }
        &host[split..]
    };
    match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_host;

    #[test]
    fn hosts_are_names_or_addresses_with_an_optional_port() {
        for good in [
            "a.example.com",
            "a.example.com:8080",
            "127.0.0.1",
            "[::1]:80",
            "[::1]",
            "x:",
        ] {
            assert!(is_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            ":80",
            "x, a.example.com",
            "evil/.example.com",
            "user@a.example.com",
            "a b",
            "[::1",
            "[zz]",
            "a:8o",
            "[::1]x",
            "a:80:80",
        ] {
            assert!(!is_host(bad.as_bytes()), "{bad}");
        }
    }
}
