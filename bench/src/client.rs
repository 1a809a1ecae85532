//! A small HTTP client over one connection: HTTP/1.1 or HTTP/2 by prior
//! knowledge, and what became of a request.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// What the client saw of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A whole response with this status.
    Status(u16),
    /// The response head or body was cut: an error, not an end.
    Cut,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Status(status) => write!(f, "{status}"),
            Outcome::Cut => f.write_str("cut"),
        }
    }
}

impl From<StatusCode> for Outcome {
    fn from(status: StatusCode) -> Self {
        Outcome::Status(status.as_u16())
    }
}

/// One connection.
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Conn {
    pub async fn open(addr: SocketAddr, version: Version) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let io = TokioIo::new(tcp);
        Ok(if version == Version::HTTP_2 {
            let (send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Conn::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Conn::H1(send)
        })
    }

    /// GETs `path` and reads the whole response. Any error is a cut
    /// response; see [`Conn::is_closed`] for whether the connection survived.
    pub async fn get(&mut self, addr: SocketAddr, path: &str) -> Outcome {
        let response = match self {
            Conn::H1(send) => {
                let request = Request::get(path)
                    .header("host", addr.to_string())
                    .body(Empty::new());
                match send.ready().await {
                    Ok(()) => send.send_request(request.expect("a valid request")).await,
                    Err(error) => Err(error),
                }
            }
            Conn::H2(send) => {
                let request = Request::get(format!("http://{addr}{path}")).body(Empty::new());
                match send.ready().await {
                    Ok(()) => send.send_request(request.expect("a valid request")).await,
                    Err(error) => Err(error),
                }
            }
        };
        let Ok(response) = response else {
            return Outcome::Cut;
        };
        let status = response.status();
        match response.into_body().collect().await {
            Ok(_) => Outcome::from(status),
            Err(_) => Outcome::Cut,
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Conn::H1(send) => send.is_closed(),
            Conn::H2(send) => send.is_closed(),
        }
    }
}
