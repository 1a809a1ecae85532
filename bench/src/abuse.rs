//! Clients that abuse the server: slowloris connections that dribble their
//! headers, connections that never finish their preface, clients that never
//! read, and raw HTTP/2 frames that break the rules (rapid reset, more
//! streams than allowed, huge header lists, a zero window).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

pub mod h2_raw;

/// Opens `connections` connections that send a request head one header
/// every `interval` and never finish it. Returns, for each, how long the
/// server took to close it (`None`: still open after `give_up`).
pub async fn slowloris(
    addr: SocketAddr,
    connections: usize,
    interval: Duration,
    give_up: Duration,
) -> anyhow::Result<Vec<Option<Duration>>> {
    let mut set = JoinSet::new();
    for _ in 0..connections {
        let mut tcp = TcpStream::connect(addr).await?;
        set.spawn(async move {
            let start = Instant::now();
            if tcp
                .write_all(b"GET / HTTP/1.1\r\nhost: slow\r\n")
                .await
                .is_err()
            {
                return Some(start.elapsed());
            }
            let mut buf = [0; 256];
            while start.elapsed() < give_up {
                tokio::select! {
                    read = tcp.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return Some(start.elapsed()),
                        Ok(_) => {}
                    },
                    () = tokio::time::sleep(interval) => {
                        if tcp.write_all(b"x-slow: 1\r\n").await.is_err() {
                            return Some(start.elapsed());
                        }
                    }
                }
            }
            None
        });
    }
    joined(set).await
}

/// What each task of `set` returned, once all have ended.
async fn joined(mut set: JoinSet<Option<Duration>>) -> anyhow::Result<Vec<Option<Duration>>> {
    let mut closed = Vec::new();
    while let Some(result) = set.join_next().await {
        closed.push(result?);
    }
    Ok(closed)
}

/// How a connection that never sends a request starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silent {
    /// Nothing at all.
    Nothing,
    /// `P`, the first byte of the HTTP/2 preface (or of an HTTP/1 `PUT`).
    OneByte,
    /// The whole HTTP/2 preface.
    Preface,
    /// The preface and an empty SETTINGS frame.
    PrefaceAndSettings,
}

impl Silent {
    pub const ALL: [Silent; 4] = [
        Silent::Nothing,
        Silent::OneByte,
        Silent::Preface,
        Silent::PrefaceAndSettings,
    ];

    fn bytes(self) -> Vec<u8> {
        match self {
            Silent::Nothing => Vec::new(),
            Silent::OneByte => b"P".to_vec(),
            Silent::Preface => h2_raw::PREFACE.to_vec(),
            Silent::PrefaceAndSettings => h2_raw::start(),
        }
    }
}

/// Opens `connections` connections that send `how` and then stay silent,
/// reading what the server sends. Returns, for each, how long the server
/// took to close it (`None`: still open after `give_up`).
pub async fn silent(
    addr: SocketAddr,
    how: Silent,
    connections: usize,
    give_up: Duration,
) -> anyhow::Result<Vec<Option<Duration>>> {
    let mut set = JoinSet::new();
    for _ in 0..connections {
        let mut tcp = TcpStream::connect(addr).await?;
        let start = Instant::now();
        tcp.write_all(&how.bytes()).await?;
        set.spawn(async move { closed_within(&mut tcp, start, give_up).await });
    }
    joined(set).await
}

/// Reads (and drops) what the server sends until it closes `tcp`: how long
/// after `start` that was, `None` if not before `give_up`.
async fn closed_within(tcp: &mut TcpStream, start: Instant, give_up: Duration) -> Option<Duration> {
    let mut buf = vec![0; 16 << 10];
    let reading = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(give_up.saturating_sub(start.elapsed()), reading)
        .await
        .ok()
}

/// `connections` HTTP/1.1 clients that each send `GET path` and read
/// nothing: the socket buffers fill and the server's writes stall. Returns
/// how long the server took to close each (`None`: open after `give_up`).
pub async fn not_reading(
    addr: SocketAddr,
    connections: usize,
    path: &str,
    give_up: Duration,
) -> anyhow::Result<Vec<Option<Duration>>> {
    let mut set = JoinSet::new();
    for _ in 0..connections {
        let tcp = TcpStream::connect(addr).await?;
        // A small receive buffer, so the server's writes stall sooner.
        let tcp = {
            let socket = socket2::SockRef::from(&tcp);
            socket.set_recv_buffer_size(4096)?;
            tcp
        };
        let mut tcp = tcp;
        let start = Instant::now();
        tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n").as_bytes())
            .await?;
        set.spawn(async move {
            // Wait for the close without reading: a peek sees EOF or an
            // error only once everything sent before it was read, so poll
            // the socket's state instead.
            while start.elapsed() < give_up {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if is_closed_by_peer(&tcp) {
                    return Some(start.elapsed());
                }
            }
            None
        });
    }
    joined(set).await
}

/// `connections` HTTP/1.1 clients that each pipeline `GET path` for as long
/// as the server takes requests, and read nothing: the server's writes
/// stall however small its responses are. Returns how long the server took
/// to close each (`None`: open after `give_up`).
pub async fn pipelining_not_reading(
    addr: SocketAddr,
    connections: usize,
    path: &str,
    give_up: Duration,
) -> anyhow::Result<Vec<Option<Duration>>> {
    let requests = format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n").repeat(64);
    let mut set = JoinSet::new();
    for _ in 0..connections {
        let mut tcp = TcpStream::connect(addr).await?;
        socket2::SockRef::from(&tcp).set_recv_buffer_size(4096)?;
        let (start, requests) = (Instant::now(), requests.clone().into_bytes());
        set.spawn(async move {
            // Where the next write starts in `requests` (repeated forever):
            // a write that does not go through writes nothing, so no
            // request is cut in two.
            let mut at = 0;
            while start.elapsed() < give_up {
                if is_closed_by_peer(&tcp) {
                    return Some(start.elapsed());
                }
                let write = tcp.write(&requests[at..]);
                match tokio::time::timeout(Duration::from_millis(50), write).await {
                    Ok(Ok(n)) => at = (at + n) % requests.len(),
                    Ok(Err(_)) => return Some(start.elapsed()),
                    // The server reads no more: wait for its close.
                    Err(_) => {}
                }
            }
            None
        });
    }
    joined(set).await
}

/// Whether the peer closed `tcp` (FIN or RST), without reading its data.
fn is_closed_by_peer(tcp: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    // TCP_INFO's state: anything but ESTABLISHED means the server closed.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for getsockopt to write.
    let rc = unsafe {
        libc::getsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    rc != 0 || info.tcpi_state != 1 // TCP_ESTABLISHED
}

/// HTTP/2 with a window of 0: `streams` GETs of `path` whose responses the
/// server can never send, on one connection. Returns how long the server
/// took to close it (`None`: open after `give_up`).
pub async fn zero_window(
    addr: SocketAddr,
    streams: u32,
    path: &str,
    give_up: Duration,
) -> anyhow::Result<Option<Duration>> {
    let mut frames = h2_raw::PREFACE.to_vec();
    h2_raw::settings_zero_window(&mut frames);
    for i in 0..streams {
        h2_raw::get(&mut frames, 2 * i + 1, path);
    }
    until_closed(addr, &frames, give_up).await
}

/// Writes `bytes` on a new connection, then reads what the server sends
/// until it closes the connection: how long that took (`None`: open after
/// `give_up`).
pub async fn until_closed(
    addr: SocketAddr,
    bytes: &[u8],
    give_up: Duration,
) -> anyhow::Result<Option<Duration>> {
    let mut tcp = TcpStream::connect(addr).await?;
    let start = Instant::now();
    tcp.write_all(bytes).await?;
    Ok(closed_within(&mut tcp, start, give_up).await)
}

/// What the server did with an abusive HTTP/2 connection.
#[derive(Debug)]
pub struct H2Abuse {
    /// Streams the client opened.
    pub streams: u32,
    /// Whether the server sent GOAWAY.
    pub goaway: bool,
    /// Whether the server closed the connection.
    pub closed: bool,
    /// RST_STREAM frames from the server (refused or reset streams).
    pub resets: usize,
    /// HEADERS frames from the server (responses).
    pub responses: usize,
}

/// Writes `frames` after the preface, then reads what the server sends for
/// up to `listen`, counting GOAWAY, RST_STREAM and HEADERS frames.
pub async fn h2_send(
    addr: SocketAddr,
    frames: &[u8],
    streams: u32,
    listen: Duration,
) -> anyhow::Result<H2Abuse> {
    let mut tcp = TcpStream::connect(addr).await?;
    let (mut read, mut write) = tcp.split();
    let mut start = h2_raw::start();
    start.extend_from_slice(frames);
    let mut result = H2Abuse {
        streams,
        goaway: false,
        closed: false,
        resets: 0,
        responses: 0,
    };
    let mut received = Vec::new();
    let reading = async {
        let mut buf = vec![0; 64 << 10];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    let writing = async {
        // The server may close before it has read everything: that is fine.
        let _ = write.write_all(&start).await;
        std::future::pending::<()>().await;
    };
    tokio::select! {
        closed = reading => result.closed = closed,
        () = writing => {}
        () = tokio::time::sleep(listen) => {}
    }
    let mut at = 0;
    while at + 9 <= received.len() {
        let len =
            u32::from_be_bytes([0, received[at], received[at + 1], received[at + 2]]) as usize;
        match received[at + 3] {
            0x1 => result.responses += 1,
            0x3 => result.resets += 1,
            0x7 => result.goaway = true,
            _ => {}
        }
        at += 9 + len;
    }
    Ok(result)
}

/// Rapid reset: `streams` requests for `path`, each cancelled right away.
pub async fn rapid_reset(
    addr: SocketAddr,
    streams: u32,
    path: &str,
    listen: Duration,
) -> anyhow::Result<H2Abuse> {
    let mut frames = Vec::new();
    for i in 0..streams {
        let id = 2 * i + 1;
        h2_raw::get(&mut frames, id, path);
        h2_raw::reset(&mut frames, id);
    }
    h2_send(addr, &frames, streams, listen).await
}

/// `streams` requests at once on one connection, ignoring the server's
/// limit on concurrent streams.
pub async fn too_many_streams(
    addr: SocketAddr,
    streams: u32,
    path: &str,
    listen: Duration,
) -> anyhow::Result<H2Abuse> {
    let mut frames = Vec::new();
    for i in 0..streams {
        h2_raw::get(&mut frames, 2 * i + 1, path);
    }
    h2_send(addr, &frames, streams, listen).await
}

/// `streams` requests each with one header of `size` bytes.
pub async fn huge_headers(
    addr: SocketAddr,
    streams: u32,
    size: usize,
    listen: Duration,
) -> anyhow::Result<H2Abuse> {
    let mut frames = Vec::new();
    for i in 0..streams {
        h2_raw::get_with_huge_header(&mut frames, 2 * i + 1, "/ok", size);
    }
    h2_send(addr, &frames, streams, listen).await
}
