//! Validated server settings, and the units (durations, sizes) they are
//! written in on the command line.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

/// The address `catshost serve` listens on by default: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// What `catshost serve` runs, validated.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The component to serve; `None` serves the built-in demo.
    pub component: Option<PathBuf>,
    /// Where to listen.
    pub addr: SocketAddr,
    /// Worker threads of the runtime that serves requests.
    pub workers: NonZeroUsize,
    /// How long a stop waits for in-flight requests.
    pub shutdown_timeout: Duration,
}

/// The number of cores, the default number of workers.
pub fn default_workers() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
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
}
