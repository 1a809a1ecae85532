//! The process signals that drive the stop switch: SIGINT and SIGTERM.

use catshost::Stop;

use super::say;

/// Switches `stop` on the first SIGINT or SIGTERM and exits the process at
/// once, with status 130, on the second.
pub async fn stop_on_signals(stop: Stop) -> std::io::Result<std::convert::Infallible> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut next_signal = async || {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    };
    next_signal().await;
    // First the switch, then the words: nothing may come between a signal
    // and the stop.
    stop.switch();
    tracing::info!("stop requested: finishing in-flight requests (signal again to exit now)");
    next_signal().await;
    say(format_args!("catshost: second stop signal, exiting now"));
    std::process::exit(130);
}
