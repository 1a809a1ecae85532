//! TCP listeners: bound with the options a server wants, and an accept that
//! never ends the server on a per-connection error.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

/// How long to pause accepting when the process is out of file descriptors
/// (or memory), so the loop does not spin while connections close.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Binds a listener on `addr` with a listen queue of `backlog` connections.
/// With `reuse_port`, several listeners can bind the same address and the
/// kernel spreads connections across them (SO_REUSEPORT).
pub fn bind(addr: SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restarting the server must not fail on the old connections' TIME_WAIT.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // `[::]` means IPv6 only; a second listener can take IPv4.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// A listening socket on the runtime.
pub(crate) struct Listener {
    inner: TcpListener,
}

/// One accepted connection.
pub(crate) struct Accepted {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
}

impl Listener {
    /// Takes over `listener` (which must be in non-blocking mode).
    pub(crate) fn new(listener: std::net::TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self {
            inner: TcpListener::from_std(listener)?,
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The next connection. Errors that concern one connection only (a reset
    /// before accept, say) are skipped; running out of descriptors pauses
    /// accepting for a moment. Only an error of the listener itself returns.
    pub(crate) async fn accept(&self) -> io::Result<Accepted> {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    // Small responses must not wait ~40 ms for Nagle's algorithm.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "failed to set TCP_NODELAY");
                    }
                    return Ok(Accepted { stream, peer });
                }
                Err(error) if is_connection_error(&error) => {
                    tracing::debug!(%error, "a connection failed before it was accepted");
                }
                Err(error) if is_resource_error(&error) => {
                    tracing::warn!(%error, "cannot accept connections for now; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM: the process or system is short of a
/// resource that closing connections gives back.
fn is_resource_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
