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
    /// before accept, a network error Linux passes on, say) are skipped;
    /// running out of descriptors or memory pauses accepting for a moment.
    /// Only an error that means the listener itself is gone returns.
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
                Err(error) => match Failure::of(&error) {
                    Failure::Connection => {
                        tracing::debug!(%error, "a connection failed before it was accepted");
                    }
                    Failure::Resources => {
                        tracing::warn!(%error, "cannot accept connections for now; retrying");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    Failure::Listener => return Err(error),
                },
            }
        }
    }
}

/// What a failed `accept` means for the accept loop.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// One connection failed: accept the next.
    Connection,
    /// The process or system is short of a resource that closing
    /// connections gives back: pause, then accept again.
    Resources,
    /// The listener itself is gone or unusable: serving ends.
    Listener,
}

impl Failure {
    /// accept(2): besides EMFILE and friends, Linux passes on the pending
    /// connection's network errors (ENETDOWN, EPROTO, ENOPROTOOPT,
    /// EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH), and EPERM
    /// when a firewall refuses it; "treat them like EAGAIN by retrying". Only
    /// a descriptor that is not (or no longer) a listening socket ends the
    /// loop.
    fn of(error: &io::Error) -> Self {
        match error.raw_os_error() {
            Some(libc::EBADF | libc::ENOTSOCK | libc::EINVAL | libc::EFAULT) => Failure::Listener,
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => Failure::Resources,
            Some(_) => Failure::Connection,
            None if is_connection_error(error) => Failure::Connection,
            None => Failure::Listener,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_of_the_listener_itself_end_the_accept_loop() {
        let cases = [
            (libc::ECONNABORTED, Failure::Connection),
            (libc::EPROTO, Failure::Connection),
            (libc::EPERM, Failure::Connection),
            (libc::ENETDOWN, Failure::Connection),
            (libc::ENETUNREACH, Failure::Connection),
            (libc::EHOSTUNREACH, Failure::Connection),
            (libc::ENOPROTOOPT, Failure::Connection),
            (libc::EOPNOTSUPP, Failure::Connection),
            (libc::EINTR, Failure::Connection),
            (libc::EAGAIN, Failure::Connection),
            (libc::EMFILE, Failure::Resources),
            (libc::ENFILE, Failure::Resources),
            (libc::ENOBUFS, Failure::Resources),
            (libc::ENOMEM, Failure::Resources),
            (libc::EBADF, Failure::Listener),
            (libc::ENOTSOCK, Failure::Listener),
            (libc::EINVAL, Failure::Listener),
        ];
        for (errno, want) in cases {
            let error = io::Error::from_raw_os_error(errno);
            assert_eq!(Failure::of(&error), want, "{error}");
        }
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(Failure::of(&reset), Failure::Connection);
    }
}
