//! Open connections per client, capped, so that one client cannot take
//! every connection the server allows. A client is its IPv4 address, or
//! the /64 network of its IPv6 address (what one host or site is given):
//! the connection's peer, or the client a trusted proxy's PROXY header
//! names.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The open connections of each client.
#[derive(Debug)]
pub(crate) struct PerClient {
    max: usize,
    open: Mutex<HashMap<ClientKey, usize>>,
}

/// Who a connection is from, as far as the cap goes.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum ClientKey {
    V4([u8; 4]),
    /// The first 64 bits.
    V6([u8; 8]),
}

impl ClientKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(ip) => ClientKey::V4(ip.octets()),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(ip) => ClientKey::V4(ip.octets()),
                None => {
                    let octets = ip.octets();
                    let mut net = [0; 8];
                    net.copy_from_slice(&octets[..8]);
                    ClientKey::V6(net)
                }
            },
        }
    }
}

impl PerClient {
    /// At most `max` connections per client.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The cap.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more connection from `ip`, held until it is dropped;
    /// `None` when the client has its `max` open.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let client = ClientKey::of(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: self.clone(),
            client,
        })
    }
}

/// One open connection of a client.
#[derive(Debug)]
pub(crate) struct ClientSlot {
    clients: Arc<PerClient>,
    client: ClientKey,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_cap_and_its_slots_back() {
        let clients = PerClient::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = clients.admit(a).unwrap();
        let _second = clients.admit(a).unwrap();
        assert!(clients.admit(a).is_none());
        // As an IPv4-mapped IPv6 address it is the same client.
        assert!(clients.admit("::ffff:192.0.2.1".parse().unwrap()).is_none());
        assert!(clients.admit(b).is_some());
        drop(first);
        assert!(clients.admit(a).is_some());
    }

    #[test]
    fn an_ipv6_client_is_its_64_bit_network() {
        let clients = PerClient::new(1);
        let _one = clients.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(
            clients
                .admit("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_none()
        );
        assert!(clients.admit("2001:db8:1:3::1".parse().unwrap()).is_some());
    }

    #[test]
    fn no_client_is_kept_once_its_connections_close() {
        let clients = PerClient::new(4);
        for i in 0..100u8 {
            drop(clients.admit(IpAddr::from([10, 0, 0, i])).unwrap());
        }
        assert!(clients.open.lock().unwrap().is_empty());
    }
}
