//! Routing: which tenant serves a request, from its host and path. Pure: no
//! I/O, no clocks; the table is checked once when it is built.
//!
//! A route is `HOST`, `HOST/PREFIX` or `/PREFIX` (any host). `HOST` is a
//! name (`shop.example.com`) or a wildcard (`*.example.com`: every name
//! below `example.com`, at any depth, but not `example.com` itself). A
//! prefix matches whole path segments: `/shop` matches `/shop`, `/shop/`
//! and `/shop/cart`, not `/shopping`.
//!
//! The most specific matching route wins: a named host over a wildcard, a
//! longer wildcard over a shorter one, any host last; then the longer
//! prefix. Two routes that are equally specific and can match the same
//! request are the same route, and a table with it twice is refused.

use std::fmt;

/// The host part of a route.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Every host.
    Any,
    /// One name, lower case, without a trailing dot.
    Exact(String),
    /// Every name that ends with `.SUFFIX` (the `SUFFIX` is kept without
    /// the dot).
    Wildcard(String),
}

impl HostPattern {
    /// Whether `host` (lower case, no port, no trailing dot) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(name) => host == name,
            HostPattern::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|label| label.len() > 1 && label.ends_with('.')),
        }
    }

    /// Orders patterns by how specific they are: any < wildcards (longer
    /// suffix first) < a name.
    fn rank(&self) -> (u8, usize) {
        match self {
            HostPattern::Any => (0, 0),
            HostPattern::Wildcard(suffix) => (1, suffix.len()),
            HostPattern::Exact(_) => (2, 0),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Any => Ok(()),
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// One route: a host pattern and a path prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// The hosts it serves.
    pub host: HostPattern,
    /// The path prefix, `/` for every path; never ends with `/` otherwise.
    pub prefix: String,
}

/// Why a route's text is not a route.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a route: {why}")]
pub struct BadRoute {
    text: String,
    why: &'static str,
}

impl Route {
    /// Parses `HOST`, `HOST/PREFIX`, `*.DOMAIN[/PREFIX]` or `/PREFIX`.
    pub fn parse(text: &str) -> Result<Self, BadRoute> {
        let bad = |why| BadRoute {
            text: text.into(),
            why,
        };
        let (host, path) = match text.find('/') {
            Some(slash) => text.split_at(slash),
            None => (text, "/"),
        };
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        let host = if host.is_empty() {
            HostPattern::Any
        } else {
            let lower = host.to_ascii_lowercase();
            let lower = lower.strip_suffix('.').unwrap_or(&lower);
            if let Some(suffix) = lower.strip_prefix("*.") {
                check_name(suffix).map_err(bad)?;
                HostPattern::Wildcard(suffix.into())
            } else {
                if lower.contains('*') {
                    return Err(bad(
                        "a wildcard must be the first label, as in *.example.com",
                    ));
                }
                if lower.starts_with('[') {
                    return Err(bad(
                        "routes match host names and IPv4 addresses, not IPv6 ones",
                    ));
                }
                if lower.contains(':') {
                    return Err(bad("routes match host names, without a port"));
                }
                check_name(lower).map_err(bad)?;
                HostPattern::Exact(lower.into())
            }
        };
        if path.contains(['?', '#', '*']) || path.contains("//") {
            return Err(bad("a path prefix is a plain path, like /shop"));
        }
        let prefix = match path.trim_end_matches('/') {
            "" => "/".to_string(),
            trimmed => trimmed.to_string(),
        };
        Ok(Route { host, prefix })
    }

    /// The route of every host and path (`/`).
    pub fn everything() -> Self {
        Route {
            host: HostPattern::Any,
            prefix: "/".into(),
        }
    }

    /// Whether this route serves `host` and `path`.
    pub fn matches(&self, host: Option<&str>, path: &str) -> bool {
        let host_matches = match (&self.host, host) {
            (HostPattern::Any, _) => true,
            (pattern, Some(host)) => pattern.matches(host),
            (_, None) => false,
        };
        host_matches && prefix_matches(&self.prefix, path)
    }

    fn rank(&self) -> ((u8, usize), usize) {
        (self.host.rank(), self.prefix.len())
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.prefix.as_str()) {
            (HostPattern::Any, prefix) => f.write_str(prefix),
            (host, "/") => write!(f, "{host}"),
            (host, prefix) => write!(f, "{host}{prefix}"),
        }
    }
}

fn check_name(name: &str) -> Result<(), &'static str> {
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err("a host is a DNS name (letters, digits, '-', dots), like shop.example.com");
    }
    Ok(())
}

/// Whether `prefix` covers `path` on a segment boundary.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Two routes in one table that are the same route.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the route '{route}' is given twice (to '{first}' and to '{second}'): a request cannot choose"
)]
pub struct DuplicateRoute {
    /// The route.
    pub route: Route,
    /// Whose it was first (a tenant's name).
    pub first: String,
    /// Whose it is again.
    pub second: String,
}

/// A routing table: routes to targets (indices into the caller's tenants),
/// most specific first.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    /// Sorted by rank, highest first: the first match is the most specific.
    routes: Vec<(Route, usize)>,
}

impl Routes {
    /// A table of `(route, target)`; `names` names each target in errors.
    pub fn new(
        routes: impl IntoIterator<Item = (Route, usize)>,
        names: impl Fn(usize) -> String,
    ) -> Result<Self, DuplicateRoute> {
        let mut routes: Vec<(Route, usize)> = routes.into_iter().collect();
        // Stable: among equal routes the first given comes first.
        routes.sort_by_key(|(route, _)| std::cmp::Reverse(route.rank()));
        let mut seen = std::collections::HashMap::new();
        for (route, target) in &routes {
            if let Some(first) = seen.insert(route, *target) {
                return Err(DuplicateRoute {
                    route: route.clone(),
                    first: names(first),
                    second: names(*target),
                });
            }
        }
        Ok(Self { routes })
    }

    /// The target for a request to `host` (as in the `Host` header or the
    /// URI's authority: any case, with or without a port) and `path`.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let host = host.map(normalize_host);
        let host = host.as_deref();
        self.routes
            .iter()
            .find(|(route, _)| route.matches(host, path))
            .map(|(_, target)| *target)
    }
}

/// A host as routes see it: lower case, without a port or a trailing dot.
pub fn normalize_host(authority: &str) -> std::borrow::Cow<'_, str> {
    let host = if authority.starts_with('[') {
        // An IPv6 literal: keep the brackets, drop the port.
        authority
            .find(']')
            .map_or(authority, |end| &authority[..=end])
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// The tenant name requests that match no route are logged and counted
/// under.
pub const UNROUTED: &str = "-";

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, usize)]) -> Routes {
        Routes::new(
            routes.iter().map(|(r, t)| (Route::parse(r).unwrap(), *t)),
            |t| format!("t{t}"),
        )
        .unwrap()
    }

    #[test]
    fn the_most_specific_route_wins() {
        // The example of docs/config.md.
        let routes = table(&[
            ("shop.example.com", 0),
            ("*.shop.example.com", 0),
            ("example.com/shop", 0),
            ("blog.example.com", 1),
            ("/blog", 1),
            ("*.example.com", 2),
            ("example.com", 3),
            ("example.com/shop/admin", 4),
            ("/", 5),
        ]);
        let cases = [
            (Some("shop.example.com"), "/", Some(0)),
            (Some("shop.example.com:8443"), "/cart", Some(0)),
            (Some("SHOP.Example.COM."), "/cart", Some(0)),
            (Some("eu.shop.example.com"), "/", Some(0)),
            (Some("a.b.shop.example.com"), "/", Some(0)),
            (Some("example.com"), "/shop", Some(0)),
            (Some("example.com"), "/shop/", Some(0)),
            (Some("example.com"), "/shop/cart", Some(0)),
            (Some("example.com"), "/shopping", Some(3)),
            (Some("example.com"), "/shop/admin/x", Some(4)),
            (Some("example.com"), "/shop/administrator", Some(0)),
            (Some("blog.example.com"), "/anything", Some(1)),
            // A named host beats a path prefix on any host.
            (Some("other.example.com"), "/blog", Some(2)),
            (Some("other.org"), "/blog/post", Some(1)),
            (Some("other.org"), "/blogs", Some(5)),
            (Some("x.example.com"), "/", Some(2)),
            (None, "/blog", Some(1)),
            (None, "/", Some(5)),
            (Some("[::1]:8080"), "/", Some(5)),
            (Some("127.0.0.1:8080"), "/blog", Some(1)),
        ];
        for (host, path, want) in cases {
            assert_eq!(routes.route(host, path), want, "{host:?} {path}");
        }
    }

    #[test]
    fn no_route_is_none() {
        let routes = table(&[("shop.example.com", 0), ("/blog", 1)]);
        let cases = [
            (Some("example.com"), "/"),
            (Some("shop.example.com.evil.org"), "/"),
            (Some("evilshop.example.com"), "/"),
            (Some("other.org"), "/blo"),
            (None, "/"),
        ];
        for (host, path) in cases {
            assert_eq!(routes.route(host, path), None, "{host:?} {path}");
        }
        assert_eq!(Routes::default().route(Some("a"), "/"), None);
    }

    #[test]
    fn a_wildcard_needs_a_label_before_its_suffix() {
        let wildcard = Route::parse("*.example.com").unwrap().host;
        assert!(wildcard.matches("a.example.com"));
        assert!(wildcard.matches("a.b.example.com"));
        assert!(!wildcard.matches("example.com"));
        assert!(!wildcard.matches(".example.com"));
        assert!(!wildcard.matches("aexample.com"));
    }

    #[test]
    fn routes_parse_and_print_back() {
        let cases = [
            ("shop.example.com", "shop.example.com"),
            ("Shop.Example.com.", "shop.example.com"),
            ("*.example.com", "*.example.com"),
            ("example.com/shop/", "example.com/shop"),
            ("/blog", "/blog"),
            ("/", "/"),
            ("localhost", "localhost"),
            ("127.0.0.1/api", "127.0.0.1/api"),
        ];
        for (text, printed) in cases {
            assert_eq!(Route::parse(text).unwrap().to_string(), printed, "{text}");
        }
    }

    #[test]
    fn bad_routes_are_refused_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("shop.*.com", "wildcard"),
            ("*", "wildcard"),
            ("*.", "wildcard"),
            ("example.com:8080", "port"),
            ("exa mple.com", "DNS name"),
            ("a..b", "DNS name"),
            ("/shop?x=1", "plain path"),
            ("/shop//x", "plain path"),
            ("/shop/*", "plain path"),
        ];
        for (text, why) in cases {
            let error = Route::parse(text).unwrap_err().to_string();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn the_same_route_twice_is_refused() {
        let same = [
            ("example.com/shop", "Example.com/shop/"),
            ("/a", "/a/"),
            ("*.x.org", "*.X.org"),
        ];
        for (a, b) in same {
            let error = Routes::new(
                [(Route::parse(a).unwrap(), 0), (Route::parse(b).unwrap(), 1)],
                |t| ["shop", "blog"][t].to_string(),
            )
            .unwrap_err();
            assert_eq!(error.first, "shop", "{a} {b}");
            assert_eq!(error.second, "blog");
        }
        // Different routes that overlap are fine: one is more specific.
        Routes::new(
            [
                (Route::parse("example.com").unwrap(), 0),
                (Route::parse("/shop").unwrap(), 1),
                (Route::parse("*.example.com").unwrap(), 2),
                (Route::parse("*.com").unwrap(), 3),
            ],
            |t| t.to_string(),
        )
        .unwrap();
    }
}
