//! Small helpers for log fields: an error with its whole chain of causes,
//! and durations in milliseconds.

/// Formats an error and its sources as one line: `outer: inner: root`.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Milliseconds to the microsecond: `0.926`, not `0.9265159999999999`.
pub(crate) fn millis(duration: std::time::Duration) -> f64 {
    duration.as_micros() as f64 / 1e3
}
