//! The peers trusted to say which client a connection carries: load
//! balancers in front of catshost that open each connection with a PROXY
//! protocol header. The list only decides whom to trust; reading the header
//! is `net::proxy`'s.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// The networks of the trusted proxies. Empty (the default) trusts no peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

/// Why a text is not a network of trusted proxies.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a network like 10.0.0.0/8 or 2001:db8::/32, nor an IP address")]
pub struct BadNetwork {
    text: String,
}

impl TrustedProxies {
    /// The networks of `texts`, each read as by [`TrustedProxies::add`].
    pub fn parse<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Self, BadNetwork> {
        let mut proxies = Self::default();
        for text in texts {
            proxies.add(text)?;
        }
        Ok(proxies)
    }

    /// Trusts the network `text`: `ADDRESS/PREFIX` (`10.0.0.0/8`,
    /// `2001:db8::/32`) or one address (`192.0.2.7`). Bits of the address
    /// past the prefix are ignored (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn add(&mut self, text: &str) -> Result<(), BadNetwork> {
        let text = text.trim();
        let net = match text.parse::<IpNet>() {
            Ok(net) => net.trunc(),
            Err(_) => text
                .parse::<IpAddr>()
                .map(IpNet::from)
                .map_err(|_| BadNetwork { text: text.into() })?,
        };
        if !self.nets.contains(&net) {
            self.nets.push(net);
        }
        Ok(())
    }

    /// Whether no peer is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether a connection from `peer` comes from a trusted proxy. An IPv4
    /// address mapped into IPv6 (as a dual-stack socket reports it) is
    /// matched as the IPv4 address it is.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.nets.iter().any(|net| net.contains(&peer))
    }
}

impl fmt::Display for TrustedProxies {
    /// The networks, separated by `, ` (`none` when there are none).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nets.is_empty() {
            return f.write_str("none");
        }
        for (i, net) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_peer_is_trusted_when_a_listed_network_holds_it() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]).unwrap();
        assert!(proxies.trusts(ip("10.200.3.4")));
        assert!(proxies.trusts(ip("192.0.2.7")));
        assert!(!proxies.trusts(ip("192.0.2.8")));
        assert!(!proxies.trusts(ip("11.0.0.1")));
        assert!(proxies.trusts(ip("2001:db8:ffff::1")));
        assert!(!proxies.trusts(ip("2001:db9::1")));
        // As a dual-stack socket reports an IPv4 peer.
        assert!(proxies.trusts(ip("::ffff:10.0.0.1")));
        assert!(!proxies.trusts(ip("::ffff:11.0.0.1")));
        assert!(!TrustedProxies::default().trusts(ip("127.0.0.1")));
    }

    #[test]
    fn networks_are_read_with_their_prefix_or_as_one_address() {
        let proxies = TrustedProxies::parse(["10.1.2.3/8", " ::1 ", "10.0.0.0/8"]).unwrap();
        assert_eq!(proxies.to_string(), "10.0.0.0/8, ::1/128");
        assert_eq!(TrustedProxies::default().to_string(), "none");
        for bad in ["", "10.0.0.0/33", "10.0.0/8", "localhost", "10.0.0.0/"] {
            let error = TrustedProxies::parse([bad]).unwrap_err();
            assert!(error.to_string().contains("is not a network"), "{bad}");
        }
    }
}
