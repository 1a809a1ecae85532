//! Telling the world the server is ready, and then that it stops: the
//! ready line on stderr, the ready file, and systemd's notify protocol
//! (`READY=1`, `STOPPING=1`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use catshost::Server;

use super::say;

/// Once `server` is ready: the ready line on stderr, the ready file, and
/// READY=1 to a systemd-style supervisor; STOPPING=1 once it stops, or at
/// the latest when the returned guard is dropped (the announcing task may
/// not have run since the stop). With `http3`, the line and the file say
/// HTTP/3 is served on the same port (UDP): the file's second line is
/// the `Alt-Svc` value. Call it on the runtime that serves.
pub fn announce_ready(
    server: &Server,
    tls: bool,
    http3: bool,
    ready_file: Option<PathBuf>,
) -> Announced {
    let scheme = if tls { "https" } else { "http" };
    let ready = server.ready();
    let stop = server.stop().clone();
    let supervisor = Supervisor::default();
    let announcer = supervisor.clone();
    tokio::spawn(async move {
        let Some(addr) = ready.await else { return };
        let url = format!("{scheme}://{addr}");
        let mut ready = format!("{url}\n");
        if http3 {
            ready.push_str(&format!("h3=\":{}\"\n", addr.port()));
        }
        if let Some(path) = ready_file
            && let Err(error) = write_ready_file(&path, &ready)
        {
            tracing::warn!(path = %path.display(), %error, "failed to write the ready file");
        }
        match http3 {
            true => say(format_args!(
                "catshost: serving {url}, and HTTP/3 on UDP port {}",
                addr.port()
            )),
            false => say(format_args!("catshost: serving {url}")),
        }
        announcer.ready();
        stop.switched().await;
        announcer.stopping();
    });
    Announced(supervisor)
}

/// Sends STOPPING=1 when dropped, if READY=1 was sent and STOPPING=1 was
/// not.
pub struct Announced(Supervisor);

impl Drop for Announced {
    fn drop(&mut self) {
        self.0.stopping();
    }
}

/// What a systemd-style supervisor has been told: READY=1 once, then
/// STOPPING=1 once, whichever of the announcing task and the serving code
/// gets there first.
#[derive(Clone, Default)]
struct Supervisor(Arc<AtomicU8>);

impl Supervisor {
    const STARTING: u8 = 0;
    const READY: u8 = 1;
    const STOPPING: u8 = 2;

    fn ready(&self) {
        self.advance(Self::STARTING, Self::READY, "READY=1");
    }

    /// STOPPING=1, if READY=1 was sent and STOPPING=1 was not.
    fn stopping(&self) {
        self.advance(Self::READY, Self::STOPPING, "STOPPING=1");
    }

    fn advance(&self, from: u8, to: u8, state: &str) {
        let advanced = self
            .0
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire);
        if advanced.is_ok() {
            notify_supervisor(state);
        }
    }
}

/// Writes `text` to `path` whole or not at all (a reader polling for the
/// file never sees it half written).
fn write_ready_file(path: &Path, text: &str) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}

/// Tells a supervisor that speaks systemd's notify protocol about the
/// process's state (`READY=1`, `STOPPING=1`): a datagram to `NOTIFY_SOCKET`,
/// when that is set. A supervisor that went away is not an error of ours.
#[cfg(target_os = "linux")]
fn notify_supervisor(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy();
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&*path),
    };
    let sent = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr));
    if let Err(error) = sent {
        tracing::warn!(socket = %path, %error, "failed to notify the supervisor");
    }
}
