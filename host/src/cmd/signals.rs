//! The process signals that drive the stop switch: SIGINT and SIGTERM.

use catshost::Stop;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::say;

/// SIGINT and SIGTERM, caught: from [`StopSignals::catch`] on, they no
/// longer end the process by themselves.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    /// Catches SIGINT and SIGTERM now, on the current runtime. Call it
    /// before readiness is announced: a supervisor may stop the server as
    /// soon as it is told, and a signal that came before the handlers were
    /// in place would end the process without its graceful stop.
    pub fn catch() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Switches `stop` on the first signal and exits the process at once,
    /// with status 130, on the second.
    pub async fn stop(mut self, stop: Stop) -> std::convert::Infallible {
        self.next().await;
        // First the switch, then the words: nothing may come between a
        // signal and the stop.
        stop.switch();
        tracing::info!("stop requested: finishing in-flight requests (signal again to exit now)");
        self.next().await;
        say(format_args!("catshost: second stop signal, exiting now"));
        std::process::exit(130);
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
