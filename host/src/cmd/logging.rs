//! Log lines: `tracing` events on stderr, as text or JSON, filtered by
//! `RUST_LOG`; and the spinner shown while a component compiles (log lines
//! are written around it).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::RwLock;

use crate::cli::LogFormat;

/// Log events to stderr, filtered by `RUST_LOG` (default: warnings, and
/// catshost's own info events: access log, guest output, start-up).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,catshost=info"));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter)
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
}

/// The spinner on screen, if any: log lines are written around it.
static SPINNER: RwLock<Option<indicatif::ProgressBar>> = RwLock::new(None);

/// Writes log lines to stderr, hiding the spinner while it does.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let spinner = SPINNER
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*spinner {
            Some(spinner) => spinner.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
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
