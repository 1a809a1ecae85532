//! What attacks the server, from where and how big: every attack of the
//! run, each with the address it connects from and its tally.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::siege::{self, Tally};
use crate::{sockets, suite};

/// How big each attack is.
pub struct Sizes {
    flood_h1: usize,
    flood_h2: (usize, usize),
    keep: usize,
    hoard_every: Duration,
    abandon: (usize, Duration),
    admin: usize,
    many: usize,
    suite: suite::Sizes,
}

impl Sizes {
    pub fn new(small: bool) -> Self {
        let pick = |full: usize, tenth: usize| if small { tenth } else { full };
        Sizes {
            flood_h1: pick(8, 2),
            flood_h2: (pick(4, 1), pick(4, 2)),
            keep: pick(4, 1),
            hoard_every: Duration::from_millis(200),
            abandon: (pick(2, 1), Duration::from_millis(pick(20, 50) as u64)),
            admin: pick(300, 20),
            many: pick(100, 70),
            suite: suite::Sizes {
                mix_clients: pick(64, 4),
                slowloris: pick(300, 20),
                silent: pick(100, 10),
                not_reading: pick(50, 5),
                rapid_reset: pick(20_000, 2_000) as u32,
            },
        }
    }
}

/// The source address of the good clients; each issue-26 attack takes one
/// of its own from 127.0.0.11 on, the fault suite 127.0.0.1.
pub const GOOD_FROM: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn attacker(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11 + i))
}

pub type Attack = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every attack, by name, with its source address, its tally and the loop
/// that runs it until dropped.
pub fn attacks(
    sizes: &Sizes,
    addr: SocketAddr,
    admin: SocketAddr,
    timeout: Duration,
) -> Vec<(String, IpAddr, Arc<Tally>, Attack)> {
    let mut all = Vec::new();
    let mut add = |name: String, from: IpAddr, attack: &dyn Fn(Arc<Tally>) -> Attack| {
        let tally = Arc::new(Tally::default());
        all.push((name, from, tally.clone(), attack(tally)));
    };
    let from = attacker(0);
    let n = sizes.flood_h1;
    add(
        format!("1a. WebSocket ping flood, HTTP/1.1: {n} sockets, never read"),
        from,
        &|t| Box::pin(sockets::ping_flood_h1(addr, from, n, t)),
    );
    let from = attacker(1);
    let (n, streams) = sizes.flood_h2;
    add(
        format!("1b. WebSocket ping flood, HTTP/2: {n} connections x {streams} streams, window 0"),
        from,
        &|t| Box::pin(sockets::ping_flood_h2(addr, from, n, streams, t)),
    );
    let from = attacker(2);
    let n = sizes.keep;
    add(
        format!("2a. /keep (2 bodies kept per request, reuse 100): {n} connections, back to back"),
        from,
        &|t| Box::pin(siege::keep_bodies(addr, from, n, t)),
    );
    let from = attacker(3);
    let every = sizes.hoard_every;
    add(
        format!(
            "2b. WebSocket \"hoard\" (8 MiB kept per message) every {} ms",
            every.as_millis()
        ),
        from,
        &|t| Box::pin(sockets::hoard(addr, from, every, t)),
    );
    let from = attacker(4);
    let (n, every) = sizes.abandon;
    add(
        format!(
            "3. abandoned opens: {n} HTTP/2 connections, a CONNECT to /slow every {} ms, reset 50 ms later",
            every.as_millis()
        ),
        from,
        &|t| Box::pin(sockets::abandoned_opens(addr, from, n, every, t)),
    );
    let from = attacker(5);
    let n = sizes.admin;
    add(
        format!("4. admin listener: {n} connections pipelining GET /metrics, never read"),
        from,
        &|t| Box::pin(siege::admin_flood(admin, from, n, t)),
    );
    let from = attacker(6);
    let n = sizes.many;
    add(
        format!("5. {n} WebSockets from one client, a ping a second"),
        from,
        &|t| Box::pin(sockets::many_sockets(addr, from, n, t)),
    );
    let from = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let s = sizes.suite;
    add(
        format!(
            "6a. fault mix: {} clients, one request in 5 faulty",
            s.mix_clients
        ),
        from,
        &|t| Box::pin(suite::mix(addr, s.mix_clients, t)),
    );
    add(
        format!("6b. slowloris: rounds of {}", s.slowloris),
        from,
        &|t| Box::pin(suite::slowloris(addr, s.slowloris, timeout, t)),
    );
    add(
        format!(
            "6c. silent connections: rounds of {} of each kind",
            s.silent
        ),
        from,
        &|t| Box::pin(suite::silent(addr, s.silent, timeout, t)),
    );
    add(
        format!(
            "6d. not reading /flood: rounds of {0} HTTP/2 (window 0, 20 streams) + {0} HTTP/1",
            s.not_reading
        ),
        from,
        &|t| Box::pin(suite::not_reading(addr, s.not_reading, timeout, t)),
    );
    add(
        format!(
            "6e. HTTP/2 abuse in turn: rapid reset ({}), 1,000 streams, 100 KiB headers",
            s.rapid_reset
        ),
        from,
        &|t| Box::pin(suite::h2_abuse(addr, s.rapid_reset, t)),
    );
    all
}
