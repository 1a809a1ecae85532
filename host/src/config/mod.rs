//! Validated server settings, and the units (durations, sizes) they are
//! written in on the command line.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

pub mod file;

/// The address `catshost serve` listens on by default: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// Where `catshost serve` listens.
#[derive(Clone, Copy, Debug)]
pub enum Listen {
    /// Bind this address.
    Addr(SocketAddr),
    /// Serve on this already-bound listening socket (`--listen-fd`, or
    /// systemd's LISTEN_FDS).
    Fd(RawFd),
}

/// Where the TLS certificate comes from.
#[derive(Clone, Debug)]
pub enum TlsSource {
    /// PEM files.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
    /// A self-signed certificate made at start.
    SelfSigned,
}

/// What `catshost serve` runs, validated.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The component to serve; `None` serves the built-in demo (or the
    /// config file's tenants).
    pub component: Option<PathBuf>,
    /// The config file of tenants to serve, which replaces `component`,
    /// `listen` (unless it is a passed socket), `tls`, `server` and `pool`.
    pub config: Option<PathBuf>,
    /// Reload the config file when it or a file it names changes.
    pub watch: bool,
    /// Whether every request gets an access log line.
    pub access_log: bool,
    /// Where to listen.
    pub listen: Listen,
    /// Worker threads of the runtime that serves requests.
    pub workers: NonZeroUsize,
    /// One listener and single-threaded runtime per worker (SO_REUSEPORT).
    pub reuse_port: bool,
    /// Where to write the served URL once ready.
    pub ready_file: Option<PathBuf>,
    /// HTTPS when set.
    pub tls: Option<TlsSource>,
    /// Every server setting: limits, timeouts, HTTP tunables.
    pub server: crate::Builder,
    /// The instance pool, sized by the limits.
    pub pool: crate::Pool,
    /// Where to serve the admin endpoints (`/healthz`, `/readyz`,
    /// `/metrics`); `None` serves none.
    pub admin_addr: Option<SocketAddr>,
    /// The compile cache folder; `None` compiles at every start.
    pub cache: Option<PathBuf>,
}

/// The compile cache by default: `$XDG_CACHE_HOME/catshost`, else
/// `$HOME/.cache/catshost`; none without either.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })?;
    Some(base.join("catshost"))
}

/// Parses the admin address: `HOST:PORT`, or a bare `PORT` on loopback
/// (the endpoints tell about the server: not for everyone by default).
pub fn parse_admin_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| {
        format!("'{text}' is not an address: expected HOST:PORT (127.0.0.1:9090) or a port (9090)")
    })
}

/// The address `catshost serve` listens on by default.
/// A size that must fit in 32 bits (an HTTP/2 window, say); `name` is the
/// setting as the user wrote it.
pub fn size_u32(value: u64, name: &str) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("{name} {value} is too large (at most 4GiB - 1)"))
}

/// An HTTP/2 frame size: 16 KiB to 16 MiB - 1 (RFC 9113, 6.5.2).
pub fn http2_frame_size(value: u64, name: &str) -> Result<u32, String> {
    if !(16 << 10..16 << 20).contains(&value) {
        return Err(format!(
            "{name} {value} is out of range: HTTP/2 allows 16KiB to 16MiB - 1"
        ));
    }
    size_u32(value, name)
}

pub fn default_addr() -> SocketAddr {
    DEFAULT_ADDR
        .parse()
        .expect("DEFAULT_ADDR is a valid address")
}

/// The number of cores, the default number of workers.
pub fn default_workers() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

#[cfg(test)]
mod admin_addr_tests {
    use super::parse_admin_addr;

    #[test]
    fn a_bare_port_is_loopback_and_bad_text_is_refused() {
        assert_eq!(
            parse_admin_addr("9090").unwrap().to_string(),
            "127.0.0.1:9090"
        );
        assert_eq!(
            parse_admin_addr("0.0.0.0:9").unwrap().to_string(),
            "0.0.0.0:9"
        );
        assert_eq!(parse_admin_addr("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert!(
            parse_admin_addr("localhost")
                .unwrap_err()
                .contains("HOST:PORT")
        );
        assert!(parse_admin_addr("70000").is_err());
    }
}

/// Parses a duration: a number with a unit of `ms`, `s` or `m` (`500ms`,
/// `30s`, `2m`). A bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("invalid duration '{text}': expected a number with ms, s or m, like 30s");
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "" if value == 0.0 => 0.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

/// Parses a size in bytes: a whole number with an optional unit of `B`,
/// `KiB`, `MiB` or `GiB` (`65536`, `64KiB`, `10MiB`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || {
        format!(
            "invalid size '{text}': expected bytes, or a number with KiB, MiB or GiB, like 10MiB"
        )
    };
    let value: u64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    value.checked_mul(scale).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("30s", Some(Duration::from_secs(30))),
            ("500ms", Some(Duration::from_millis(500))),
            ("2m", Some(Duration::from_secs(120))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("0", Some(Duration::ZERO)),
            (" 10s ", Some(Duration::from_secs(10))),
            ("10", None),
            ("s", None),
            ("-1s", None),
            ("10h", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).ok(), want, "{text:?}");
        }
    }

    #[test]
    fn sizes() {
        let cases = [
            ("65536", Some(65536)),
            ("64KiB", Some(64 << 10)),
            ("10MiB", Some(10 << 20)),
            ("2 GiB", Some(2 << 30)),
            ("7B", Some(7)),
            ("10MB", None),
            ("1.5MiB", None),
            ("-1", None),
            ("", None),
            ("99999999999GiB", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text).ok(), want, "{text:?}");
        }
    }
}
