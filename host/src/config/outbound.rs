//! Outgoing HTTP (`wasi:http/outgoing-handler`): the allow-list of origins a
//! tenant's guests may call, checked for every request, and the addresses
//! those names may resolve to. The policy only decides, as a pure function
//! of the list and a resolver it is given: resolving names and sending
//! requests is `net::Client`'s, and the sandbox (`wasm::guest::outbound`)
//! joins the two.
//!
//! A request is sent only when a rule matches its scheme, host and port.
//! Its host is then resolved, and a private, loopback or otherwise
//! non-public address is refused unless the rule names that very address
//! (`http://127.0.0.1:9000`): a name cannot lead a guest into the host's
//! network. The connection goes to the addresses that were checked, never
//! to a second DNS answer; HTTPS then verifies the name's certificate.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::uri::{Authority, Scheme};

use crate::routing::HostPattern;

/// The origins guests may send requests to. Empty (the default) denies
/// every request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outbound {
    rules: Vec<Origin>,
}

/// One allowed origin: `SCHEME://HOST[:PORT]`, where `HOST` may be
/// `*.DOMAIN` for every name below `DOMAIN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    https: bool,
    host: OriginHost,
    port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum OriginHost {
    Name(HostPattern),
    Ip(IpAddr),
}

/// Why a rule's text is not an origin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not an origin like https://api.example.com or http://127.0.0.1:9000: {why}")]
pub struct BadOrigin {
    text: String,
    why: &'static str,
}

impl Origin {
    /// Parses `http://HOST[:PORT]` or `https://HOST[:PORT]`; the port
    /// defaults to the scheme's (80, 443).
    pub fn parse(text: &str) -> Result<Self, BadOrigin> {
        let bad = |why| BadOrigin {
            text: text.into(),
            why,
        };
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("the scheme must be http:// or https://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("an origin has no path, query or user"));
        }
        let (host, port) = split_port(rest).ok_or_else(|| bad("the port is not a number"))?;
        let port = port.unwrap_or(if https { 443 } else { 80 });
        let host = match parse_ip(host) {
            Some(ip) => OriginHost::Ip(ip),
            None => match crate::routing::Route::parse(host) {
                Ok(route) if route.host != HostPattern::Any => OriginHost::Name(route.host),
                _ => return Err(bad("the host is not a DNS name, *.DOMAIN or an IP address")),
            },
        };
        Ok(Self { https, host, port })
    }

    fn matches(&self, https: bool, host: &Host, port: u16) -> bool {
        self.https == https
            && self.port == port
            && match (&self.host, host) {
                (OriginHost::Ip(allowed), Host::Ip(ip)) => allowed == ip,
                (OriginHost::Name(pattern), Host::Name(name)) => pattern.matches(name),
                _ => false,
            }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        match &self.host {
            OriginHost::Name(name) => write!(f, "{scheme}://{name}:{}", self.port),
            OriginHost::Ip(IpAddr::V6(ip)) => write!(f, "{scheme}://[{ip}]:{}", self.port),
            OriginHost::Ip(ip) => write!(f, "{scheme}://{ip}:{}", self.port),
        }
    }
}

/// The host of an outgoing request.
#[derive(Debug, PartialEq, Eq)]
enum Host {
    Name(String),
    Ip(IpAddr),
}

/// What to do with an outgoing request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send it to one of these addresses (the ones that were checked).
    Send(Vec<SocketAddr>),
    /// Serve it with this tenant of the same server, in process: its
    /// host is the tenant's internal name, `NAME.tenant.internal`.
    Internal(String),
    /// Refuse it with this error (its `wasi:http` error code).
    Deny(Denied),
}

/// Why an outgoing request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No rule allows the origin (`HTTP-request-denied`).
    NotAllowed,
    /// The name resolves to a non-public address
    /// (`destination-IP-prohibited`).
    Prohibited(IpAddr),
    /// The name does not resolve (`destination-not-found`).
    NotFound,
    /// The URI has no usable host (`HTTP-request-URI-invalid`).
    BadUri,
}

impl Denied {
    /// What a log line says of the refusal.
    pub(crate) fn reason(&self) -> String {
        match self {
            Denied::NotAllowed => "no outbound rule of the tenant allows this origin".into(),
            Denied::Prohibited(ip) => format!(
                "it resolves to {ip}, a private or loopback address: allow it by listing the \
                 address itself"
            ),
            Denied::NotFound => "the host name does not resolve".into(),
            Denied::BadUri => "the URI has no host".into(),
        }
    }
}

impl Outbound {
    /// An allow-list of `origins`.
    pub fn new(origins: Vec<Origin>) -> Self {
        Self { rules: origins }
    }

    /// Whether any origin is allowed.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule that allows `scheme://authority`, if any, with the request's
    /// host and port.
    fn rule(&self, scheme: Option<&Scheme>, authority: &Authority) -> Option<(&Origin, Host, u16)> {
        let https = match scheme.map(Scheme::as_str) {
            Some("https") => true,
            Some("http") => false,
            _ => return None,
        };
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = match parse_ip(authority.host()) {
            Some(ip) => Host::Ip(ip),
            None => Host::Name(crate::routing::normalize_host(authority.host()).into_owned()),
        };
        let rule = self.rules.iter().find(|r| r.matches(https, &host, port))?;
        Some((rule, host, port))
    }

    /// Decides about a request to another tenant (a host below
    /// [`INTERNAL_DOMAIN`]), never resolved: `None` for any other host.
    pub(crate) fn internal(&self, uri: &http::Uri) -> Option<Verdict> {
        let authority = uri.authority()?;
        let host = crate::routing::normalize_host(authority.host());
        host.strip_suffix(INTERNAL_DOMAIN)?.strip_suffix('.')?;
        let Some(tenant) = internal_tenant(&host) else {
            return Some(Verdict::Deny(Denied::NotFound));
        };
        Some(match self.rule(uri.scheme(), authority) {
            Some(_) => Verdict::Internal(tenant.to_string()),
            None => Verdict::Deny(Denied::NotAllowed),
        })
    }

    /// Decides about a request to `uri`, resolving its host with `resolve`.
    pub(crate) async fn check<R, F>(&self, uri: &http::Uri, resolve: R) -> Verdict
    where
        R: FnOnce(String, u16) -> F,
        F: Future<Output = std::io::Result<Vec<SocketAddr>>>,
    {
        if let Some(verdict) = self.internal(uri) {
            return verdict;
        }
        let Some(authority) = uri.authority() else {
            return Verdict::Deny(Denied::BadUri);
        };
        let Some((_rule, host, port)) = self.rule(uri.scheme(), authority) else {
            return Verdict::Deny(Denied::NotAllowed);
        };
        match host {
            // Only a rule naming this very address matches an address.
            Host::Ip(ip) => Verdict::Send(vec![SocketAddr::new(ip, port)]),
            Host::Name(name) => {
                let addrs = match resolve(name, port).await {
                    Ok(addrs) if !addrs.is_empty() => addrs,
                    _ => return Verdict::Deny(Denied::NotFound),
                };
                match addrs.iter().find(|a| !is_public(a.ip())) {
                    Some(private) => Verdict::Deny(Denied::Prohibited(private.ip())),
                    None => Verdict::Send(addrs),
                }
            }
        }
    }
}

/// The domain of tenants' internal names: a guest's request to
/// `http://NAME.tenant.internal/...` is served by the tenant `NAME` of the
/// same server, in process, when its tenant's outbound list allows that
/// origin (docs/middleware.md).
pub const INTERNAL_DOMAIN: &str = "tenant.internal";

/// The tenant an internal name (`NAME.tenant.internal`, lower case) names.
pub fn internal_tenant(host: &str) -> Option<&str> {
    let name = host.strip_suffix(INTERNAL_DOMAIN)?.strip_suffix('.')?;
    (!name.is_empty() && !name.contains('.')).then_some(name)
}

/// Splits `HOST[:PORT]` (`[V6]:PORT` too); `None` when the port is bad or
/// something follows a `[V6]` literal but a port.
fn split_port(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        (&text[..v6.len() + 2], after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    match port {
        None => Some((host, None)),
        Some(port) => port
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .map(|p| (host, Some(p))),
    }
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// Whether `ip` is a public unicast address: not loopback, private, shared,
/// link-local, unspecified, documentation, benchmarking, reserved or
/// multicast (IPv4 inside IPv6 is judged as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            // 6to4 (2002::/16) carries one too.
            if s[0] == 0x2002 {
                let [a, b] = s[1].to_be_bytes();
                let [c, d] = s[2].to_be_bytes();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            // Only global unicast (2000::/3), less its special ranges:
            // Teredo and benchmarking (2001::/23 holds both; IANA's special
            // block) and documentation (2001:db8::/32).
            (s[0] & 0xe000) == 0x2000
                && !(s[0] == 0x2001 && s[1] < 0x0200)
                && !(s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound(rules: &[&str]) -> Outbound {
        Outbound::new(rules.iter().map(|r| Origin::parse(r).unwrap()).collect())
    }

    /// A resolver that answers from a table, so the tests need no DNS.
    fn resolve(name: String, port: u16) -> std::future::Ready<std::io::Result<Vec<SocketAddr>>> {
        let ip = match name.as_str() {
            "api.example.net" | "eu.cdn.example.org" | "xtenant.internal" => "93.184.215.14",
            "internal.example.net" => "10.1.2.3",
            "rebind.example.org" => "127.0.0.1",
            _ => return std::future::ready(Ok(vec![])),
        };
        std::future::ready(Ok(vec![SocketAddr::new(ip.parse().unwrap(), port)]))
    }

    fn verdict(outbound: &Outbound, uri: &str) -> Verdict {
        let uri: http::Uri = uri.parse().unwrap();
        futures_util::FutureExt::now_or_never(outbound.check(&uri, resolve)).unwrap()
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let rules = outbound(&[
            "https://api.example.net",
            "http://127.0.0.1:9000",
            "https://*.example.org",
            "http://internal.example.net:8080",
        ]);
        let send = |ip: &str, port| Verdict::Send(vec![SocketAddr::new(ip.parse().unwrap(), port)]);
        let cases = [
            ("https://api.example.net/v1?x=1", send("93.184.215.14", 443)),
            ("https://API.example.net:443/", send("93.184.215.14", 443)),
            ("http://api.example.net/", Verdict::Deny(Denied::NotAllowed)),
            (
                "https://api.example.net:8443/",
                Verdict::Deny(Denied::NotAllowed),
            ),
            ("https://example.net/", Verdict::Deny(Denied::NotAllowed)),
            ("http://127.0.0.1:9000/", send("127.0.0.1", 9000)),
            ("http://127.0.0.1:9001/", Verdict::Deny(Denied::NotAllowed)),
            ("http://localhost:9000/", Verdict::Deny(Denied::NotAllowed)),
            ("https://eu.cdn.example.org/", send("93.184.215.14", 443)),
            ("https://example.org/", Verdict::Deny(Denied::NotAllowed)),
            // Listed by name, but resolving into the host's network.
            (
                "http://internal.example.net:8080/",
                Verdict::Deny(Denied::Prohibited("10.1.2.3".parse().unwrap())),
            ),
            (
                "https://rebind.example.org/",
                Verdict::Deny(Denied::Prohibited("127.0.0.1".parse().unwrap())),
            ),
            ("https://gone.example.org/", Verdict::Deny(Denied::NotFound)),
            ("ftp://api.example.net/", Verdict::Deny(Denied::NotAllowed)),
        ];
        for (uri, want) in cases {
            assert_eq!(verdict(&rules, uri), want, "{uri}");
        }
        assert_eq!(
            verdict(&Outbound::default(), "https://api.example.net/"),
            Verdict::Deny(Denied::NotAllowed)
        );
    }

    #[test]
    fn internal_names_are_other_tenants_never_resolved_and_only_when_listed() {
        let rules = outbound(&["http://sum.tenant.internal", "http://*.apps.example.net"]);
        let internal = |name: &str| Verdict::Internal(name.into());
        let cases = [
            ("http://sum.tenant.internal/sum", internal("sum")),
            // Names are matched without regard to case, as hosts are.
            ("http://SUM.Tenant.Internal/", internal("sum")),
            // Listed by origin: another port, scheme or tenant is not.
            (
                "http://sum.tenant.internal:8080/",
                Verdict::Deny(Denied::NotAllowed),
            ),
            (
                "https://sum.tenant.internal/",
                Verdict::Deny(Denied::NotAllowed),
            ),
            (
                "http://shop.tenant.internal/",
                Verdict::Deny(Denied::NotAllowed),
            ),
        ];
        for (uri, want) in cases {
            assert_eq!(verdict(&rules, uri), want, "{uri}");
        }
        // A wildcard names every tenant; never a name below a tenant's.
        let every = outbound(&["http://*.tenant.internal"]);
        assert_eq!(
            verdict(&every, "http://shop.tenant.internal/"),
            internal("shop")
        );
        assert_eq!(
            verdict(&every, "http://a.shop.tenant.internal/"),
            Verdict::Deny(Denied::NotFound),
            "no tenant has a dotted name"
        );
        // Another domain that ends the same is any name: resolved.
        assert_eq!(
            verdict(
                &outbound(&["http://xtenant.internal"]),
                "http://xtenant.internal/"
            ),
            Verdict::Send(vec!["93.184.215.14:80".parse().unwrap()])
        );
        assert_eq!(internal_tenant("tenant.internal"), None);
        assert_eq!(internal_tenant(".tenant.internal"), None);
        assert_eq!(internal_tenant("xtenant.internal"), None);
        assert_eq!(internal_tenant("shop.tenant.internal"), Some("shop"));
    }

    #[test]
    fn origins_parse_with_default_ports() {
        let cases = [
            ("https://api.example.net", "https://api.example.net:443"),
            ("http://api.example.net/", "http://api.example.net:80"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("http://[::1]:9000", "http://[::1]:9000"),
            ("https://*.Example.org", "https://*.example.org:443"),
        ];
        for (text, printed) in cases {
            assert_eq!(Origin::parse(text).unwrap().to_string(), printed, "{text}");
        }
        for bad in [
            "api.example.net",
            "ftp://x.org",
            "https://x.org/path",
            "https://x.org:0",
            "https://x.org:99999",
            "https://u@x.org",
            "https://",
            "https://a b",
            "https://[::1]junk",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn non_public_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.215.14",
            "8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
