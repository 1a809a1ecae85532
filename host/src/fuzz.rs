//! Property tests of the entry points a client or a config file reaches:
//! size and duration text, routes, Host headers. Cases: 1,000 by default
//! (CI), `CATSHOST_FUZZ_CASES=100000` in the bench.

use std::time::Duration;

use proptest::prelude::*;

use crate::config::units::{
    MAX_DURATION, parse_duration, parse_memory, parse_size, show_duration, show_size,
};
use crate::routing::{Route, normalize_host};

fn config() -> ProptestConfig {
    let cases = std::env::var("CATSHOST_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(config())]

    /// Any text is a duration within the bound or an error; never a panic.
    #[test]
    fn durations_are_bounded_or_refused(text in "\\PC{0,24}|[0-9]{1,25}(ms|s|m|h)?") {
        if let Ok(duration) = parse_duration(&text) {
            prop_assert!(duration <= MAX_DURATION);
            // A deadline computed from it cannot overflow the clock.
            prop_assert!(std::time::Instant::now().checked_add(duration).is_some());
        }
    }

    /// What a duration shows is read back as itself.
    #[test]
    fn shown_durations_read_back(ms in 0u64..=MAX_DURATION.as_millis() as u64) {
        let duration = Duration::from_millis(ms);
        prop_assert_eq!(parse_duration(&show_duration(&duration)), Ok(duration));
    }

    /// Any text is a size or an error; a memory at most 4 GiB.
    #[test]
    fn sizes_parse_without_panicking(text in "\\PC{0,24}|[0-9]{1,25}(B|KiB|MiB|GiB|TiB)?") {
        let _ = parse_size(&text);
        if let Ok(memory) = parse_memory(&text) {
            prop_assert!(memory as u64 <= 4 << 30);
        }
    }

    /// What a size shows is read back as itself.
    #[test]
    fn shown_sizes_read_back(bytes in any::<u32>()) {
        let bytes = u64::from(bytes);
        prop_assert_eq!(parse_size(&show_size(bytes)), Ok(bytes));
    }

    /// Any text is a route or an error; a route reads back from its text,
    /// and matches hosts without panicking.
    #[test]
    fn routes_parse_and_read_back(
        text in "\\PC{0,40}|[a-z*.]{0,20}(/[a-z0-9/]{0,10})?",
        host in "\\PC{0,30}",
        path in "/\\PC{0,30}",
    ) {
        if let Ok(route) = Route::parse(&text) {
            let again = Route::parse(&route.to_string());
            prop_assert_eq!(again.as_ref().ok(), Some(&route));
            let _ = route.matches(Some(&host), &path);
        }
        let _ = normalize_host(&host);
    }

    /// Any Host header and URI: a host or a 400; never a panic.
    #[test]
    fn host_headers_are_checked_without_panicking(
        host in proptest::collection::vec(any::<u8>(), 0..40),
        authority in "[a-z0-9.:\\[\\]@-]{0,20}",
    ) {
        let Ok(value) = http::HeaderValue::from_bytes(&host) else { return Ok(()) };
        let uri = format!("http://{authority}/");
        let mut request = http::Request::builder();
        if let Ok(uri) = uri.parse::<http::Uri>() {
            request = request.uri(uri);
        }
        let request = request.header(http::header::HOST, value).body(()).unwrap();
        let _ = crate::http::request_host(&request);
    }
}
