//! Log lines: `tracing` events on stderr, as text or JSON, filtered by
//! `RUST_LOG`; and the spinner shown while a component compiles (log lines
//! are written around it).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

use crate::cli::LogFormat;

/// Log lines waiting for stderr at most: past them, lines are dropped (and
/// counted) rather than block the threads that serve requests.
const MAX_QUEUED_LINES: usize = 64 * 1024;

/// How often a count of dropped lines is written.
const DROPPED_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Keeps the log writer's thread; dropping it writes out the queued lines.
pub struct LogGuard {
    _worker: tracing_appender::non_blocking::WorkerGuard,
}

/// Log events to stderr, filtered by `RUST_LOG` (default: warnings, and
/// catshost's own info events: access log, guest output, start-up).
///
/// Lines go through a bounded queue to a thread of their own, so a slow
/// stderr (a full pipe, a slow terminal) never blocks a worker: when the
/// queue is full, lines are dropped, and their count is written every 10
/// seconds. No line can break into two: a newline or carriage return inside
/// one (a guest's trap message, an error string) is written as `\n`, `\r`.
pub fn init(format: LogFormat) -> LogGuard {
    let (writer, worker) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(MAX_QUEUED_LINES)
        .thread_name("catshost-log")
        .finish(LogWriter);
    report_dropped(writer.error_counter());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,catshost=info"));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // Its report of a failed write is an `eprintln!`, which panics when
        // stderr is a closed pipe: a log line is not worth a task.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => logger.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logger
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    LogGuard { _worker: worker }
}

/// Writes how many lines were dropped, when some were, from a thread of its
/// own (the queue is what is full).
fn report_dropped(counter: tracing_appender::non_blocking::ErrorCounter) {
    let spawned = std::thread::Builder::new()
        .name("catshost-log-drops".into())
        .spawn(move || {
            let mut reported = 0;
            loop {
                std::thread::sleep(DROPPED_REPORT_INTERVAL);
                let dropped = counter.dropped_lines();
                if dropped > reported {
                    let line = format!(
                        "catshost: {} log lines dropped in the last {}s: stderr is too slow\n",
                        dropped - reported,
                        DROPPED_REPORT_INTERVAL.as_secs()
                    );
                    let _ = LogWriter.write_all(line.as_bytes());
                    reported = dropped;
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot count dropped log lines");
    }
}

/// The spinner on screen, if any: log lines are written around it.
static SPINNER: RwLock<Option<indicatif::ProgressBar>> = RwLock::new(None);

/// Writes log lines to stderr, hiding the spinner while it does. Each write
/// is one line, ending in its newline.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = one_line(buf);
        let spinner = SPINNER
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*spinner {
            Some(spinner) => spinner.suspend(|| std::io::stderr().write_all(&line)),
            None => std::io::stderr().write_all(&line),
        }?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `buf` with every newline and carriage return but a final newline
/// written as `\n` and `\r`.
fn one_line(buf: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    if !body.iter().any(|&b| b == b'\n' || b == b'\r') {
        return std::borrow::Cow::Borrowed(buf);
    }
    let mut line = Vec::with_capacity(buf.len() + 16);
    for &b in body {
        match b {
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            b => line.push(b),
        }
    }
    if body.len() < buf.len() {
        line.push(b'\n');
    }
    std::borrow::Cow::Owned(line)
}

/// Shows a spinner naming the component while `load` compiles it, when
/// stderr is a terminal; the library logs the time it took either way.
pub fn with_spinner<T>(path: &Path, load: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return load();
    }
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let spinner = indicatif::ProgressBar::new_spinner().with_message(format!(
        "compiling {} ({})",
        path.display(),
        indicatif::HumanBytes(size)
    ));
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    *SPINNER
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(spinner.clone());
    let loaded = load();
    SPINNER
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    spinner.finish_and_clear();
    loaded
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_line_cannot_be_broken_into_two() {
        assert_eq!(&*one_line(b"plain\n"), b"plain\n");
        assert_eq!(
            &*one_line(b"trap: x\n2026 INFO forged\r\n"),
            b"trap: x\\n2026 INFO forged\\r\n"
        );
        assert_eq!(&*one_line(b"no end\nhere"), b"no end\\nhere");
    }
}
