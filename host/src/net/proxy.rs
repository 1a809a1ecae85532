//! The PROXY protocol (HAProxy's; v1 text and v2 binary): the header a load
//! balancer opens a connection with to say which client it carries. It is
//! read before anything else (the TLS handshake included), within a
//! deadline and a size bound, from the peers the caller trusts
//! (`config::TrustedProxies`); parsing is the `ppp` crate's. The bytes read
//! past the header are given back in front of the stream ([`Rewind`]).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use ppp::PartialResult;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The longest PROXY header read. A v1 header is at most 107 bytes; a v2
/// header is 16, then 12 (IPv4), 36 (IPv6) or 216 (Unix) bytes of addresses
/// and the balancer's TLVs (connection and endpoint IDs, the SNI name, TLS
/// facts: tens to hundreds of bytes), though its length field allows 64
/// KiB. A longer one closes the connection.
pub(crate) const MAX_HEADER: usize = 4096;

/// The longest v1 header, its CRLF included.
const V1_MAX: usize = 107;

/// A v2 header's bytes before its addresses: the signature, the version and
/// command, the family and protocol, the length of the rest.
const V2_FIXED: usize = 16;

/// Why a connection's PROXY header gave no client.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyHeaderError {
    #[error("no whole PROXY protocol header within {0:?}")]
    Timeout(Duration),
    #[error("the connection closed before its PROXY protocol header ended")]
    Closed,
    #[error("failed to read the PROXY protocol header")]
    Read(#[source] io::Error),
    #[error("the PROXY protocol header is longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error("no valid PROXY protocol header (v1)")]
    V1(#[source] ppp::v1::BinaryParseError),
    #[error("no valid PROXY protocol header (v2)")]
    V2(#[source] ppp::v2::ParseError),
}

/// A connection whose PROXY header was read.
#[derive(Debug)]
pub(crate) struct Proxied<S> {
    /// The client the header names. `None` when it names none: a v2 LOCAL
    /// header (the proxy's own connection, a health check), v1 `UNKNOWN`,
    /// v2 addresses of no IP family. The connection is then the proxy's.
    pub(crate) client: Option<SocketAddr>,
    /// The connection, the bytes read past the header in front.
    pub(crate) stream: Rewind<S>,
}

/// Reads the PROXY header `stream` opens with, within `timeout`.
pub(crate) async fn read_header<S>(
    mut stream: S,
    timeout: Duration,
) -> Result<Proxied<S>, ProxyHeaderError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = vec![0; MAX_HEADER];
    let read = tokio::time::timeout(timeout, read_into(&mut stream, &mut buf)).await;
    let (len, client, filled) = read.map_err(|_| ProxyHeaderError::Timeout(timeout))??;
    let rest = Bytes::copy_from_slice(&buf[len..filled]);
    Ok(Proxied {
        client,
        stream: Rewind::new(stream, rest),
    })
}

/// Reads into `buf` until it starts with a whole header: the header's
/// length, the client it names, and how much of `buf` was read.
async fn read_into<S>(
    stream: &mut S,
    buf: &mut [u8],
) -> Result<(usize, Option<SocketAddr>, usize), ProxyHeaderError>
where
    S: AsyncRead + Unpin,
{
    let mut filled = 0;
    loop {
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(ProxyHeaderError::Read)?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed);
        }
        filled += n;
        if let Some(parsed) = parse(&buf[..filled]) {
            return parsed.map(|(len, client)| (len, client, filled));
        }
        if filled == buf.len() {
            return Err(ProxyHeaderError::TooLong);
        }
    }
}

/// The header `bytes` start with: its length and the client it names;
/// `None` while more bytes could still make one.
fn parse(bytes: &[u8]) -> Option<Result<(usize, Option<SocketAddr>), ProxyHeaderError>> {
    // By the v2 signature, so a bad v2 header is reported as one (ppp's
    // `HeaderResult::parse` tries v1 on any v2 error).
    let signature = ppp::v2::PROTOCOL_PREFIX;
    if !(bytes.starts_with(signature) || signature.starts_with(bytes)) {
        return parse_v1(bytes);
    }
    let parsed = ppp::v2::Header::try_from(bytes);
    if let Err(ppp::v2::ParseError::Partial(_, length)) = parsed {
        // Known too long before it is read.
        if V2_FIXED + length > MAX_HEADER {
            return Some(Err(ProxyHeaderError::TooLong));
        }
    }
    if parsed.is_incomplete() {
        return None;
    }
    Some(match parsed {
        Ok(header) => Ok((header.len(), v2_client(&header))),
        Err(error) => Err(ProxyHeaderError::V2(error)),
    })
}

/// A v1 header is parsed once its line is whole: ppp takes a line cut at a
/// space for a bad one (`PROXY TCP4 1.2.3.4 5.6.7.8 80 ` has an empty
/// port), and one whole with too few fields for an incomplete one.
fn parse_v1(bytes: &[u8]) -> Option<Result<(usize, Option<SocketAddr>), ProxyHeaderError>> {
    use ppp::v1::{Header, ParseError};
    let line = match bytes.windows(2).position(|pair| pair == b"\r\n") {
        Some(end) => &bytes[..end + 2],
        None if bytes.len() >= V1_MAX => {
            return Some(Err(ProxyHeaderError::V1(ParseError::HeaderTooLong.into())));
        }
        None if bytes.starts_with(b"PROXY ") || b"PROXY ".starts_with(bytes) => return None,
        // Not a v1 header: ppp says why.
        None => bytes,
    };
    Some(match Header::try_from(line) {
        Ok(header) => Ok((header.header.len(), v1_client(header.addresses))),
        Err(error) => Err(ProxyHeaderError::V1(error)),
    })
}

fn v1_client(addresses: ppp::v1::Addresses) -> Option<SocketAddr> {
    use ppp::v1::Addresses;
    match addresses {
        Addresses::Tcp4(ip) => Some((ip.source_address, ip.source_port).into()),
        Addresses::Tcp6(ip) => Some((ip.source_address, ip.source_port).into()),
        Addresses::Unknown => None,
    }
}

fn v2_client(header: &ppp::v2::Header<'_>) -> Option<SocketAddr> {
    use ppp::v2::{Addresses, Command};
    if header.command == Command::Local {
        return None;
    }
    match header.addresses {
        Addresses::IPv4(ip) => Some((ip.source_address, ip.source_port).into()),
        Addresses::IPv6(ip) => Some((ip.source_address, ip.source_port).into()),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    }
}

/// A stream with bytes already read from it put back in front (hyper's
/// `Rewind`): what came after a PROXY header in the same read. Reads
/// take those first; everything else goes to the stream.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    read: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    /// `inner`, whose next bytes are `read`.
    pub(crate) fn new(inner: S, read: Bytes) -> Self {
        Self { read, inner }
    }

    /// `inner` as it is: nothing was read from it.
    pub(crate) fn unread(inner: S) -> Self {
        Self::new(inner, Bytes::new())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    /// As the stream's: hyper writes a head and a body chunk in one call
    /// (`writev`) when it is.
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The socket's, for the watchdog's look at its send queue.
impl<S: AsRawFd> AsRawFd for Rewind<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A v2 PROXY header (command PROXY, TCP) from `source` to `destination`,
    /// with `tlvs` after the addresses.
    fn v2(source: SocketAddr, destination: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
        let mut addresses = Vec::new();
        let family = match (source, destination) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                addresses.extend(s.ip().octets());
                addresses.extend(d.ip().octets());
                0x11
            }
            (SocketAddr::V6(s), SocketAddr::V6(d)) => {
                addresses.extend(s.ip().octets());
                addresses.extend(d.ip().octets());
                0x21
            }
            _ => unreachable!("one family"),
        };
        addresses.extend(source.port().to_be_bytes());
        addresses.extend(destination.port().to_be_bytes());
        addresses.extend(tlvs);
        let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21".to_vec();
        header.push(family);
        header.extend(u16::try_from(addresses.len()).unwrap().to_be_bytes());
        header.extend(addresses);
        header
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// What reading `sent` (in pieces of `piece` bytes) gives: the client,
    /// and what a reader of the stream reads after the header.
    async fn read(
        sent: &[u8],
        piece: usize,
    ) -> Result<(Option<SocketAddr>, Vec<u8>), ProxyHeaderError> {
        let (mut client, server) = tokio::io::duplex(64 << 10);
        let writes = async {
            // A reader that gave up has dropped its end: writes then fail.
            for chunk in sent.chunks(piece) {
                let _ = client.write_all(chunk).await;
                tokio::task::yield_now().await;
            }
            let _ = client.shutdown().await;
        };
        let (proxied, ()) = tokio::join!(read_header(server, Duration::from_secs(5)), writes);
        let mut proxied = proxied?;
        let mut rest = Vec::new();
        proxied.stream.read_to_end(&mut rest).await.unwrap();
        Ok((proxied.client, rest))
    }

    #[tokio::test]
    async fn a_header_gives_its_client_and_the_bytes_after_it_stay_on_the_stream() {
        let request = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
        let tlv = [0x04, 0x00, 0x02, 0xab, 0xcd]; // PP2_TYPE_NOOP
        let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
            (
                b"PROXY TCP4 203.0.113.7 10.0.0.1 4711 443\r\n".to_vec(),
                Some("203.0.113.7:4711"),
            ),
            (
                b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n".to_vec(),
                Some("[2001:db8::7]:4711"),
            ),
            (b"PROXY UNKNOWN\r\n".to_vec(), None),
            (b"PROXY UNKNOWN ::1 ::2 1 2\r\n".to_vec(), None),
            (
                v2(addr("203.0.113.7:4711"), addr("10.0.0.1:443"), &[]),
                Some("203.0.113.7:4711"),
            ),
            (
                v2(addr("[2001:db8::7]:4711"), addr("[2001:db8::1]:443"), &tlv),
                Some("[2001:db8::7]:4711"),
            ),
            // LOCAL: the proxy's own connection.
            (b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec(), None),
        ];
        for (header, client) in cases {
            let sent = [&header[..], request].concat();
            // At once, and a byte at a time.
            for piece in [sent.len(), 1] {
                let (got, rest) = read(&sent, piece).await.unwrap();
                let name = String::from_utf8_lossy(&header);
                assert_eq!(got, client.map(addr), "{name}");
                assert_eq!(rest, request, "{name}");
            }
        }
    }

    #[tokio::test]
    async fn what_is_not_a_whole_valid_header_is_an_error() {
        let v2_ok = v2(addr("203.0.113.7:4711"), addr("10.0.0.1:443"), &[]);
        let mut bad_version = v2_ok.clone();
        bad_version[12] = 0x31;
        let mut too_long = v2_ok[..14].to_vec();
        too_long.extend(u16::try_from(MAX_HEADER).unwrap().to_be_bytes());
        let big_tlv = [&[0x04, 0x10, 0x00][..], &[0; 4096]].concat();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"GET / HTTP/1.1\r\nhost: a\r\n\r\n".to_vec(), "(v1)"),
            (b"PROXY TCP4 203.0.113.7\r\n".to_vec(), "(v1)"),
            (b"PROXY TCP4 ::1 ::2 1 2\r\n".to_vec(), "(v1)"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 1\r\n".to_vec(), "(v1)"),
            (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 1\r\n".to_vec(), "(v1)"),
            ([&b"PROXY TCP4 "[..], &[b'1'; 120]].concat(), "(v1)"),
            (bad_version, "(v2)"),
            (too_long, "longer than 4096 bytes"),
            (
                v2(addr("1.2.3.4:1"), addr("5.6.7.8:2"), &big_tlv),
                "longer than",
            ),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 ".to_vec(), "closed before"),
            (v2_ok[..20].to_vec(), "closed before"),
            (Vec::new(), "closed before"),
        ];
        for (sent, want) in cases {
            let error = read(&sent, sent.len().max(1)).await.unwrap_err();
            let text = error.to_string();
            assert!(
                text.contains(want),
                "{}: {text}",
                String::from_utf8_lossy(&sent)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_that_does_not_come_in_time_is_an_error() {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"PROXY TCP4 ").await.unwrap();
        let error = read_header(server, Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(matches!(error, ProxyHeaderError::Timeout(_)), "{error}");
        drop(client);
    }
}
