//! Clients that abuse the server: slowloris connections that dribble their
//! headers, and raw HTTP/2 frames that break the rules (rapid reset, more
//! streams than allowed, huge header lists).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

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
    let mut closed = Vec::new();
    while let Some(result) = set.join_next().await {
        closed.push(result?);
    }
    Ok(closed)
}

/// HTTP/2 frames written by hand, so a client can break rules a real client
/// library enforces.
pub mod h2_raw {
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const HEADERS: u8 = 0x1;
    const RST_STREAM: u8 = 0x3;
    const SETTINGS: u8 = 0x4;
    const CONTINUATION: u8 = 0x9;
    const END_STREAM: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;

    fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len() as u32;
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
    }

    /// The preface and an empty SETTINGS frame.
    pub fn start() -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        frame(&mut out, SETTINGS, 0, 0, &[]);
        out
    }

    /// A header block for `GET path` on authority `a` (HPACK, no Huffman).
    fn get_block(path: &str, extra: Option<(&str, usize)>) -> Vec<u8> {
        // :method GET (2), :scheme http (6), then literal :path and :authority.
        let mut block = vec![0x82, 0x86];
        literal(&mut block, 4, path.as_bytes());
        literal(&mut block, 1, b"a");
        if let Some((name, size)) = extra {
            // Literal name, literal value, not indexed.
            block.push(0x00);
            string(&mut block, name.as_bytes());
            string(&mut block, &vec![b'v'; size]);
        }
        block
    }

    fn literal(block: &mut Vec<u8>, index: u8, value: &[u8]) {
        // Literal header field without indexing, indexed name (4-bit prefix).
        block.push(index);
        string(block, value);
    }

    fn string(block: &mut Vec<u8>, value: &[u8]) {
        // A 7-bit prefixed length, no Huffman.
        let mut len = value.len();
        if len < 127 {
            block.push(len as u8);
        } else {
            block.push(127);
            len -= 127;
            while len >= 128 {
                block.push((len % 128) as u8 | 0x80);
                len /= 128;
            }
            block.push(len as u8);
        }
        block.extend_from_slice(value);
    }

    /// A complete GET on `stream`.
    pub fn get(out: &mut Vec<u8>, stream: u32, path: &str) {
        frame(
            out,
            HEADERS,
            END_STREAM | END_HEADERS,
            stream,
            &get_block(path, None),
        );
    }

    /// A GET on `stream` with one header of `size` bytes, split into
    /// CONTINUATION frames of 16 KiB.
    pub fn get_with_huge_header(out: &mut Vec<u8>, stream: u32, path: &str, size: usize) {
        let block = get_block(path, Some(("x-huge", size)));
        let mut chunks = block.chunks(16 << 10).peekable();
        let first = chunks.next().unwrap_or_default();
        let only = chunks.peek().is_none();
        frame(
            out,
            HEADERS,
            END_STREAM | if only { END_HEADERS } else { 0 },
            stream,
            first,
        );
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            frame(
                out,
                CONTINUATION,
                if last { END_HEADERS } else { 0 },
                stream,
                chunk,
            );
        }
    }

    /// RST_STREAM(CANCEL) on `stream`.
    pub fn reset(out: &mut Vec<u8>, stream: u32) {
        frame(out, RST_STREAM, 0, stream, &0x8u32.to_be_bytes());
    }
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
