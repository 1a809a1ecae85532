//! The units settings are written in, on the command line and in config
//! files: durations (`500ms`, `30s`, `2m`), sizes (`65536`, `64KiB`,
//! `10MiB`), counts, switches and addresses; read from text, and written
//! back the same way for `--help`.

use std::net::SocketAddr;
use std::time::Duration;

/// The longest duration a setting may have: a year. Deadlines are instants
/// this far ahead at most, which no clock overflows.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `start + after`, or `start + MAX_DURATION` when `after` is longer (a
/// library user's timeout, say): the clock holds every deadline a setting
/// can give, and one past a year is no deadline, not a panic.
pub fn deadline_after(start: tokio::time::Instant, after: Duration) -> tokio::time::Instant {
    start + after.min(MAX_DURATION)
}

/// Parses a duration: a number with a unit of `ms`, `s` or `m` (`500ms`,
/// `30s`, `2m`), at most [`MAX_DURATION`]. A bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("invalid duration '{text}': expected a number with ms, s or m, like 30s");
    let unit_ns: u128 = match unit.trim() {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "" if number.bytes().all(|b| b == b'0' || b == b'.') && !number.is_empty() => 0,
        _ => return Err(bad()),
    };
    // In whole nanoseconds, not floating point: `8422664549ms` is exactly
    // that many milliseconds.
    let nanos = decimal_nanos(number, unit_ns).ok_or_else(bad)?;
    let too_long = || format!("'{text}' is too long: a setting's time is at most a year");
    if nanos > MAX_DURATION.as_nanos() {
        return Err(too_long());
    }
    Ok(Duration::from_nanos(
        u64::try_from(nanos).map_err(|_| too_long())?,
    ))
}

/// `number` (digits, at most one `.` with digits on either side) times
/// `unit_ns` nanoseconds, cut to whole nanoseconds (saturating: a number
/// too large for any setting stays too large); `None` when it is not such
/// a number.
fn decimal_nanos(number: &str, unit_ns: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty())
        || number.ends_with('.')
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u128 = match whole {
        "" => 0,
        digits => digits.parse().unwrap_or(u128::MAX),
    };
    let mut nanos = whole.saturating_mul(unit_ns);
    // Digits past the 20th are below a nanosecond of any unit here.
    let mut scale = unit_ns;
    for digit in fraction.bytes().take(20) {
        scale /= 10;
        nanos = nanos.saturating_add(u128::from(digit - b'0') * scale);
    }
    Some(nanos)
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

/// A size that must fit the memory of this machine.
pub fn parse_size_usize(text: &str) -> Result<usize, String> {
    let value = parse_size(text)?;
    usize::try_from(value).map_err(|_| format!("{value} is too large"))
}

/// A size that must fit in 32 bits (an HTTP/2 window, say).
pub fn parse_size_u32(text: &str) -> Result<u32, String> {
    let value = parse_size(text)?;
    u32::try_from(value).map_err(|_| format!("{value} is too large (at most 4GiB - 1)"))
}

/// An HTTP/2 frame size: 16 KiB to 16 MiB - 1 (RFC 9113, 6.5.2).
pub fn parse_frame_size(text: &str) -> Result<u32, String> {
    let value = parse_size(text)?;
    if !(16 << 10..16 << 20).contains(&value) {
        return Err(format!(
            "{value} is out of range: HTTP/2 allows 16KiB to 16MiB - 1"
        ));
    }
    Ok(value as u32)
}

/// A largest linear memory: a 32-bit memory holds at most 4 GiB.
pub fn parse_memory(text: &str) -> Result<usize, String> {
    let value = parse_size(text)?;
    if value > MAX_MEMORY {
        return Err(format!(
            "{value} is too large: a WebAssembly memory holds at most 4GiB"
        ));
    }
    usize::try_from(value).map_err(|_| format!("{value} is too large"))
}

/// The most memory an instance may be given: all a 32-bit memory can
/// address.
const MAX_MEMORY: u64 = 4 << 30;

/// A whole number (`N`): `u32`, `usize`.
pub fn parse_count<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("invalid number '{text}': expected a whole number"))
}

/// A whole number other than 0.
pub fn parse_nonzero(text: &str) -> Result<usize, String> {
    match parse_count(text)? {
        0 => Err("0 is not allowed: expected a nonzero number".into()),
        n => Ok(n),
    }
}

/// `true` or `false`.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("invalid value '{text}': expected true or false")),
    }
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

/// A duration as it is written: `30s`, `500ms`, `2m`.
pub fn show_duration(duration: &Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        0 => "0".into(),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// A size as it is written: `64KiB`, `10MiB`, `7`.
pub fn show_size(bytes: u64) -> String {
    for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{}{unit}", bytes / scale);
        }
    }
    bytes.to_string()
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
            ("525600m", Some(MAX_DURATION)),
            ("525601m", None),
            ("10000000000000000000s", None),
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

    #[test]
    fn what_is_shown_reads_back_the_same() {
        for text in ["30s", "500ms", "2m", "0", "1500ms"] {
            let duration = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&show_duration(&duration)), Ok(duration));
        }
        for text in ["64KiB", "10MiB", "128MiB", "7", "1025"] {
            let size = parse_size(text).unwrap();
            assert_eq!(parse_size(&show_size(size)), Ok(size));
        }
        assert_eq!(show_size(64 << 10), "64KiB");
        assert_eq!(show_duration(&Duration::from_secs(30)), "30s");
    }

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

    #[test]
    fn bounded_values_say_why_they_are_refused() {
        assert!(
            parse_frame_size("1KiB")
                .unwrap_err()
                .contains("1024 is out of range")
        );
        assert!(parse_size_u32("5GiB").unwrap_err().contains("too large"));
        assert!(parse_memory("5GiB").unwrap_err().contains("at most 4GiB"));
        assert!(parse_nonzero("0").unwrap_err().contains("nonzero"));
        assert_eq!(parse_bool("true"), Ok(true));
        assert!(parse_bool("yes").is_err());
    }
}
