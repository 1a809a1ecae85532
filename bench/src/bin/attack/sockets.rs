//! The WebSocket attacks of issue 26, each a loop that goes on until its
//! future is dropped: ping floods that never read (HTTP/1.1, and HTTP/2 with
//! a window of 0), a hoarding guest, abandoned opens, and many sockets from
//! one client.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use catshost_bench::abuse::h2_raw;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode, Version};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::server::{OPEN_HOST, WS_HOST};
use crate::siege::{Tally, connect_from, each, pause_after};

/// Masked ping frames of 125 bytes, `count` of them back to back.
fn pings(count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * 131);
    for _ in 0..count {
        out.extend_from_slice(&[0x89, 0x80 | 125, 1, 2, 3, 4]);
        out.extend((0..125u8).map(|i| i ^ [1, 2, 3, 4][usize::from(i % 4)]));
    }
    out
}

/// Attack 1, HTTP/1.1: `sockets` WebSockets that send pings as fast as they
/// can and read nothing (the pongs pile up); each reconnects once cut.
pub async fn ping_flood_h1(addr: SocketAddr, from: IpAddr, sockets: usize, tally: Arc<Tally>) {
    let flood = Arc::new(pings(256));
    each(sockets, |_| {
        let (tally, flood) = (tally.clone(), flood.clone());
        async move {
            loop {
                let Some(mut tcp) = upgrade_h1(addr, from, "/flood", &tally).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let opened = Instant::now();
                while tcp.write_all(&flood).await.is_ok() {}
                tally.cut(opened.elapsed());
                pause_after(opened.elapsed()).await;
            }
        }
    })
    .await
}

/// An HTTP/1.1 WebSocket upgrade at `path` of the WebSocket tenant, by
/// hand: the connection after a 101, `None` (counted) otherwise.
async fn upgrade_h1(
    addr: SocketAddr,
    from: IpAddr,
    path: &str,
    tally: &Tally,
) -> Option<TcpStream> {
    let Ok(mut tcp) = connect_from(from, addr, Some(4096)).await else {
        tally.add("connect failed", 1);
        return None;
    };
    let head = format!(
        "GET {path} HTTP/1.1\r\nhost: {WS_HOST}\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    let mut got = Vec::new();
    let read = async {
        tcp.write_all(head.as_bytes()).await?;
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            got.extend_from_slice(&buf[..n]);
        }
        std::io::Result::Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(Ok(())) if got.starts_with(b"HTTP/1.1 101") => {
            tally.add("opened", 1);
            Some(tcp)
        }
        Ok(Ok(())) => {
            let status = String::from_utf8_lossy(&got[9..12.min(got.len())]).into_owned();
            tally.add(format!("refused {status}"), 1);
            None
        }
        _ => {
            tally.add("upgrade failed", 1);
            None
        }
    }
}

/// Attack 1, HTTP/2: `connections` connections with a stream window of 0
/// (the server can send nothing back), each with `streams` WebSockets
/// opened by extended CONNECT that send pings as fast as they can.
pub async fn ping_flood_h2(
    addr: SocketAddr,
    from: IpAddr,
    connections: usize,
    streams: usize,
    tally: Arc<Tally>,
) {
    let flood = Bytes::from(pings(256));
    each(connections, |_| {
        let (tally, flood) = (tally.clone(), flood.clone());
        async move {
            loop {
                let opened = Instant::now();
                if flood_h2_once(addr, from, streams, &tally, &flood)
                    .await
                    .is_err()
                {
                    tally.add("connection failed", 1);
                }
                pause_after(opened.elapsed()).await;
            }
        }
    })
    .await
}

/// One connection of [`ping_flood_h2`], until every stream of it is cut.
async fn flood_h2_once(
    addr: SocketAddr,
    from: IpAddr,
    streams: usize,
    tally: &Arc<Tally>,
    flood: &Bytes,
) -> anyhow::Result<()> {
    let tcp = connect_from(from, addr, Some(4096)).await?;
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    builder.initial_stream_window_size(0);
    let (send, conn) = builder.handshake(TokioIo::new(tcp)).await?;
    let driver = tokio::spawn(conn);
    let mut set = JoinSet::new();
    for _ in 0..streams {
        let (mut send, tally, flood) = (send.clone(), tally.clone(), flood.clone());
        set.spawn(async move {
            let mut request = Request::builder()
                .method(Method::CONNECT)
                .uri(format!("http://{WS_HOST}/flood"))
                .version(Version::HTTP_2)
                .header("sec-websocket-version", "13")
                .body(Empty::<Bytes>::new())
                .expect("a valid request");
            request
                .extensions_mut()
                .insert(hyper::ext::Protocol::from_static("websocket"));
            let response = match send.send_request(request).await {
                Ok(response) => response,
                Err(_) => return tally.add("CONNECT failed", 1),
            };
            if response.status() != StatusCode::OK {
                return tally.add(format!("refused {}", response.status().as_u16()), 1);
            }
            let Ok(stream) = hyper::upgrade::on(response).await else {
                return tally.add("CONNECT failed", 1);
            };
            tally.add("opened", 1);
            let opened = Instant::now();
            let mut stream = TokioIo::new(stream);
            while stream.write_all(&flood).await.is_ok() {}
            tally.cut(opened.elapsed());
        });
    }
    while set.join_next().await.is_some() {}
    driver.abort();
    Ok(())
}

/// A WebSocket (tungstenite) at `path` of the WebSocket tenant from `from`.
async fn websocket(
    addr: SocketAddr,
    from: IpAddr,
    path: &str,
    tally: &Tally,
) -> Option<tokio_tungstenite::WebSocketStream<TcpStream>> {
    let Ok(tcp) = connect_from(from, addr, None).await else {
        tally.add("connect failed", 1);
        return None;
    };
    let url = format!("ws://{WS_HOST}{path}");
    match tokio_tungstenite::client_async(url, tcp).await {
        Ok((ws, _)) => {
            tally.add("opened", 1);
            Some(ws)
        }
        Err(tungstenite::Error::Http(response)) => {
            tally.add(format!("refused {}", response.status().as_u16()), 1);
            None
        }
        Err(_) => {
            tally.add("upgrade failed", 1);
            None
        }
    }
}

/// How a WebSocket ended, as a tally event.
fn ended(frame: Option<tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(frame) => format!("closed {}", u16::from(frame.code)),
        None => "closed".into(),
    }
}

/// Attack 2, memory: a WebSocket that sends "hoard" every `every` (its
/// instance keeps 8 MiB more each time, until it passes its memory limit);
/// it reconnects when its socket is closed.
pub async fn hoard(addr: SocketAddr, from: IpAddr, every: Duration, tally: Arc<Tally>) {
    loop {
        let Some(mut ws) = websocket(addr, from, "/hoard", &tally).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        loop {
            if ws.send(Message::text("hoard")).await.is_err() {
                tally.add("cut", 1);
                break;
            }
            match ws.next().await {
                Some(Ok(Message::Text(text))) if text.starts_with("hoarded") => {
                    tally.add("hoarded 8 MiB", 1)
                }
                Some(Ok(Message::Close(frame))) => {
                    tally.add(ended(frame), 1);
                    break;
                }
                Some(Ok(_)) => tally.add("other message", 1),
                _ => {
                    tally.add("cut", 1);
                    break;
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// Attack 3: `connections` HTTP/2 connections that each open a WebSocket at
/// `/slow` (its open takes a second) every `every` and reset the stream
/// 50 ms later, with hand-written frames.
pub async fn abandoned_opens(
    addr: SocketAddr,
    from: IpAddr,
    connections: usize,
    every: Duration,
    tally: Arc<Tally>,
) {
    each(connections, |_| {
        let tally = tally.clone();
        async move {
            loop {
                if abandon_on_one(addr, from, every, &tally).await.is_err() {
                    tally.add("connect failed", 1);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .await
}

/// One connection of [`abandoned_opens`], until the server closes it.
async fn abandon_on_one(
    addr: SocketAddr,
    from: IpAddr,
    every: Duration,
    tally: &Tally,
) -> std::io::Result<()> {
    let tcp = connect_from(from, addr, None).await?;
    let (mut read, mut write) = tcp.into_split();
    write.write_all(&h2_raw::start()).await?;
    // What the server sends is read and dropped; its end ends the loop.
    let mut reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let mut tick = tokio::time::interval(every);
    let mut pending = std::collections::VecDeque::new();
    let mut next_id = 1u32;
    loop {
        tokio::select! {
            _ = &mut reader => {
                tally.add("connection closed by the server", 1);
                return Ok(());
            }
            now = tick.tick() => {
                let mut frames = Vec::new();
                while pending.front().is_some_and(|(at, _)| *at <= now) {
                    let (_, id) = pending.pop_front().expect("checked");
                    h2_raw::reset(&mut frames, id);
                    tally.add("reset", 1);
                }
                h2_raw::extended_connect(&mut frames, next_id, "/slow", OPEN_HOST);
                tally.add("CONNECT sent", 1);
                pending.push_back((now + Duration::from_millis(50), next_id));
                next_id += 2;
                if write.write_all(&frames).await.is_err() {
                    tally.add("connection closed by the server", 1);
                    reader.abort();
                    return Ok(());
                }
            }
        }
    }
}

/// Attack 5: `sockets` WebSockets from one client, past its cap, each held
/// open with a ping a second; one refused tries again a second later.
pub async fn many_sockets(addr: SocketAddr, from: IpAddr, sockets: usize, tally: Arc<Tally>) {
    each(sockets, |_| {
        let tally = tally.clone();
        async move {
            loop {
                let Some(mut ws) = websocket(addr, from, "/many", &tally).await else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                let opened = Instant::now();
                let why = loop {
                    if ws
                        .send(Message::Ping(Bytes::from_static(b"hi")))
                        .await
                        .is_err()
                    {
                        break "cut".to_string();
                    }
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                    let closed = loop {
                        match tokio::time::timeout_at(deadline, ws.next()).await {
                            Err(_) => break None,
                            Ok(Some(Ok(Message::Close(frame)))) => break Some(ended(frame)),
                            Ok(Some(Ok(_))) => continue,
                            Ok(_) => break Some("cut".to_string()),
                        }
                    };
                    if let Some(why) = closed {
                        break why;
                    }
                };
                let held = opened.elapsed().as_secs() / 10 * 10;
                tally.add(format!("{why} after {held}-{} s", held + 10), 1);
            }
        }
    })
    .await
}
