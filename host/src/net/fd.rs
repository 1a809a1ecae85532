//! Listening sockets handed over by whoever started catshost: `--listen-fd`
//! and systemd's socket activation (`LISTEN_FDS`).

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

/// The socket systemd passed (LISTEN_FDS, for this process), if any.
pub fn systemd_listen_fd() -> Option<RawFd> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let count: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    // sd_listen_fds(3): the first passed socket is fd 3.
    (pid == std::process::id() && count >= 1).then_some(3)
}

/// A listener on a duplicate of `fd`: the caller's descriptor stays open
/// whatever catshost does with its own. The error says what `fd` is not.
pub fn listener_from_fd(fd: RawFd) -> io::Result<std::net::TcpListener> {
    let refuse = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--listen-fd {fd} {what}"),
        )
    };
    if fd < 0 {
        return Err(refuse("is not a file descriptor"));
    }
    // SAFETY: the descriptor is only borrowed for the `dup`; if it is not
    // open, `try_clone_to_owned` fails with EBADF.
    let owned = unsafe { BorrowedFd::borrow_raw(fd) }
        .try_clone_to_owned()
        .map_err(|error| refuse(&format!("is not an open file descriptor ({error})")))?;
    let socket = socket2::Socket::from(owned);
    let is_listening_tcp = socket.r#type().ok() == Some(socket2::Type::STREAM)
        && socket.is_listener().unwrap_or(false)
        && socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some();
    if !is_listening_tcp {
        return Err(refuse("is not a listening TCP socket"));
    }
    Ok(socket.into())
}
