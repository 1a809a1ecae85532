//! The earlier fault suite (bench/src/bin/fault-suite.rs), each of its
//! attacks in a loop of its own until dropped: the fault mix, slowloris,
//! connections that never send a request, clients that do not read, and
//! hand-written HTTP/2 abuse. They reuse the library's clients, which
//! connect from 127.0.0.1: the suite is one client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use catshost_bench::{abuse, faults};

use crate::siege::Tally;

/// How big each round of the suite's attacks is.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Clients of the fault mix, each sending one request after another.
    pub mix_clients: usize,
    pub slowloris: usize,
    /// Connections of each silent kind in a round.
    pub silent: usize,
    /// HTTP/2 zero-window connections (20 streams each) and HTTP/1
    /// connections that read nothing, each.
    pub not_reading: usize,
    /// Rapid reset: HEADERS + RST_STREAM pairs on one connection.
    pub rapid_reset: u32,
}

/// Counts, for a round of connections the server should close, how many it
/// did and how long each took.
fn count_closed(tally: &Tally, closed: anyhow::Result<Vec<Option<Duration>>>) {
    match closed {
        Ok(closed) => {
            for c in closed {
                match c {
                    Some(after) => tally.cut(after),
                    None => tally.add("not closed in time", 1),
                }
            }
        }
        Err(_) => tally.add("round failed", 1),
    }
}

/// The fault mix: rounds of 1,000 requests, one in five to a faulty path
/// (loop, memory bomb, trap, ...), from `clients` clients, half HTTP/1.1,
/// half h2c. Counts the outcomes the suite expects and those it does not.
pub async fn mix(addr: SocketAddr, clients: usize, tally: Arc<Tally>) {
    loop {
        let suite = faults::Suite {
            requests: 1000,
            clients,
            fault_every: 5,
        };
        match faults::run(addr, suite).await {
            Ok(report) => {
                let requests: usize = report
                    .rows
                    .values()
                    .map(|r| r.outcomes.values().sum::<usize>())
                    .sum();
                tally.add("requests", requests as u64);
                for (path, got, n) in report.unexpected() {
                    tally.add(format!("unexpected {got} ({path})"), n as u64);
                }
            }
            Err(_) => {
                tally.add("round failed", 1);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Slowloris: rounds of `connections` that send a header line every 500 ms.
pub async fn slowloris(addr: SocketAddr, connections: usize, timeout: Duration, tally: Arc<Tally>) {
    loop {
        let closed = abuse::slowloris(
            addr,
            connections,
            Duration::from_millis(500),
            timeout * 3 + Duration::from_secs(2),
        )
        .await;
        count_closed(&tally, closed);
    }
}

/// Connections that never send a request, each silent kind in turn.
pub async fn silent(addr: SocketAddr, connections: usize, timeout: Duration, tally: Arc<Tally>) {
    for how in abuse::Silent::ALL.iter().cycle() {
        let closed = abuse::silent(addr, *how, connections, timeout * 3).await;
        count_closed(&tally, closed);
    }
}

/// Clients that do not read `/flood` (a guest writing forever): HTTP/2
/// connections with a window of 0 and HTTP/1 connections, at once.
pub async fn not_reading(
    addr: SocketAddr,
    connections: usize,
    timeout: Duration,
    tally: Arc<Tally>,
) {
    let give_up = timeout * 3 + Duration::from_secs(2);
    loop {
        let h2 = (0..connections).map(|_| abuse::zero_window(addr, 20, "/flood", give_up));
        let (h2, h1) = tokio::join!(
            futures_util::future::try_join_all(h2),
            abuse::not_reading(addr, connections, "/flood", give_up),
        );
        count_closed(&tally, h2);
        count_closed(&tally, h1);
    }
}

/// Hand-written HTTP/2 abuse in turn: rapid reset, 1,000 streams at once
/// (past the 200 allowed), 50 requests with a 100 KiB header.
pub async fn h2_abuse(addr: SocketAddr, rapid_reset: u32, tally: Arc<Tally>) {
    let listen = Duration::from_secs(3);
    loop {
        let rounds = [
            (
                "rapid reset",
                abuse::rapid_reset(addr, rapid_reset, "/ok", listen).await,
            ),
            (
                "too many streams",
                abuse::too_many_streams(addr, 1000, "/slow-body", listen).await,
            ),
            (
                "huge headers",
                abuse::huge_headers(addr, 50, 100 << 10, listen).await,
            ),
        ];
        for (name, result) in rounds {
            match result {
                Ok(r) => {
                    tally.add(format!("{name}: rounds"), 1);
                    tally.add(format!("{name}: GOAWAY"), u64::from(r.goaway));
                    tally.add(format!("{name}: RST_STREAM"), r.resets as u64);
                }
                Err(_) => tally.add(format!("{name}: failed"), 1),
            }
        }
    }
}
