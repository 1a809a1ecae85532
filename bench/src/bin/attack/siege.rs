//! What every attack shares (a tally of what it did and what the server did
//! to it, a connection from an address of its own), and the HTTP attacks of
//! issue 26, each a loop that goes on until its future is dropped: a guest
//! keeping bodies, the admin listener flooded. The WebSocket ones are in
//! sockets.rs.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::server::EVIL_HOST;

/// What one attack did and what the server did to it, counted by event,
/// with how long its connections lasted until the server cut them.
#[derive(Default)]
pub struct Tally {
    counts: Mutex<BTreeMap<String, u64>>,
    cut_after: Mutex<Vec<Duration>>,
}

impl Tally {
    pub fn add(&self, event: impl Into<String>, n: u64) {
        *self
            .counts
            .lock()
            .expect("not poisoned")
            .entry(event.into())
            .or_default() += n;
    }

    /// A connection of this attack was cut by the server `after` it opened.
    pub fn cut(&self, after: Duration) {
        self.add("cut by the server", 1);
        self.cut_after.lock().expect("not poisoned").push(after);
    }

    /// The counts, and the connections' lifetimes when some were cut.
    pub fn summary(&self) -> String {
        let counts = self.counts.lock().expect("not poisoned");
        let mut parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let mut after = self.cut_after.lock().expect("not poisoned").clone();
        if !after.is_empty() {
            let max = after.iter().max().copied().unwrap_or_default();
            let p50 = catshost_bench::percentile(&mut after, 50.0);
            parts.push(format!(
                "cut after p50 {:.1} s / max {:.1} s",
                p50.as_secs_f64(),
                max.as_secs_f64()
            ));
        }
        parts.join(", ")
    }
}

/// Waits before an attacker connects again: not at all, unless its last
/// connection was cut within a second of opening (closed at accept, say),
/// then 100 ms, so that an attack that holds connections does not turn
/// into a connect flood.
pub async fn pause_after(lived: Duration) {
    if lived < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A connection to `addr` from the loopback address `from` (so that each
/// attack is a client of its own), with a receive buffer of `rcvbuf` bytes
/// when given (a small one stalls the server's writes sooner).
pub async fn connect_from(
    from: IpAddr,
    addr: SocketAddr,
    rcvbuf: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(SocketAddr::new(from, 0))?;
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Runs `one` `n` times at once, each with its index, until dropped.
pub async fn each<F, Fut>(n: usize, one: F)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut set = JoinSet::new();
    for i in 0..n {
        set.spawn(one(i));
    }
    while set.join_next().await.is_some() {}
}

/// GETs `path` with `host` on an HTTP/1.1 connection and reads the body.
pub async fn get(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
) -> anyhow::Result<StatusCode> {
    send.ready().await?;
    let request = Request::get(path)
        .header(http::header::HOST, host)
        .body(Empty::new())?;
    let response = send.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

/// An HTTP/1.1 client connection from `from`.
pub async fn http1(
    addr: SocketAddr,
    from: IpAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let tcp = connect_from(from, addr, None).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(send)
}

/// Attack 2, bodies: `connections` keep-alive connections that ask the
/// faults tenant (instances reused) for `/keep` as fast as it answers: each
/// request fills two response bodies it never sends and keeps them.
pub async fn keep_bodies(addr: SocketAddr, from: IpAddr, connections: usize, tally: Arc<Tally>) {
    each(connections, |_| {
        let tally = tally.clone();
        async move {
            loop {
                let Ok(mut send) = http1(addr, from).await else {
                    tally.add("connect failed", 1);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                loop {
                    match get(&mut send, EVIL_HOST, "/keep").await {
                        Ok(status) => tally.add(format!("status {}", status.as_u16()), 1),
                        Err(_) => {
                            tally.add("cut", 1);
                            break;
                        }
                    }
                }
            }
        }
    })
    .await
}

/// Attack 4: `connections` connections to the admin listener that pipeline
/// `GET /metrics` and never read; each reconnects if it is closed.
pub async fn admin_flood(admin: SocketAddr, from: IpAddr, connections: usize, tally: Arc<Tally>) {
    let requests = Arc::new(b"GET /metrics HTTP/1.1\r\nhost: admin\r\n\r\n".repeat(64));
    each(connections, |_| {
        let (tally, requests) = (tally.clone(), requests.clone());
        async move {
            loop {
                let Ok(mut tcp) = connect_from(from, admin, Some(4096)).await else {
                    tally.add("connect failed", 1);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                tally.add("opened", 1);
                let opened = Instant::now();
                while tcp.write_all(&requests).await.is_ok() {}
                tally.cut(opened.elapsed());
                pause_after(opened.elapsed()).await;
            }
        }
    })
    .await
}
