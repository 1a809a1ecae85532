//! Per-core mode: one SO_REUSEPORT listener per worker, each served by a
//! single-threaded runtime on a thread of its own, instead of one listener
//! and a work-stealing runtime.

use std::net::SocketAddr;

use super::Server;
use crate::error::Error;
use crate::net::{self, Tls};

/// Scheduler ticks between two checks of I/O and timers (tokio: 61). A
/// guest runs up to an epoch tick per poll: checking every few polls keeps
/// a worker busy with computing guests responsive to new requests and
/// deadlines. `catshost serve`'s runtimes use it too.
pub const EVENT_INTERVAL: u32 = 8;

impl Server {
    /// Serves on `workers` listeners bound to `addr` with SO_REUSEPORT (the
    /// kernel spreads connections over them), each on a single-threaded
    /// runtime of its own thread, until the stop switch is switched and
    /// in-flight requests are done. `first` runs on the first worker's
    /// runtime before it serves (to start signal handling, say); what it
    /// returns is dropped when that worker stops serving. One worker
    /// failing stops the others.
    pub fn serve_per_core<G: 'static>(
        &self,
        addr: SocketAddr,
        workers: usize,
        tls: Option<Tls>,
        first: impl FnOnce() -> std::io::Result<G> + Send + 'static,
    ) -> Result<(), Error> {
        if self.inner.builder.settings.http.http3 {
            return Err(Error::Http3(
                "HTTP/3 is not served in per-core mode (--reuse-port): serve it without",
            ));
        }
        let backlog = self.inner.builder.settings.backlog;
        let bind =
            |addr| net::bind(addr, backlog, true).map_err(|source| Error::Bind { addr, source });
        let listener = bind(addr)?;
        // With port 0 the others must share the port the first one got.
        let bound = listener.local_addr().map_err(Error::Listener)?;
        let mut listeners = vec![listener];
        for _ in 1..workers {
            listeners.push(bind(bound)?);
        }
        let mut first = Some(first);
        let mut threads = Vec::with_capacity(workers);
        for listener in listeners {
            let (server, tls, first) = (self.clone(), tls.clone(), first.take());
            let thread = std::thread::Builder::new()
                .name("catshost-worker".into())
                .spawn(move || server.serve_one_core(listener, tls, first))
                .map_err(Error::Worker)?;
            threads.push(thread);
        }
        let mut result = Ok(());
        for thread in threads {
            let served = thread.join().unwrap_or(Err(Error::WorkerPanicked));
            if result.is_ok() {
                result = served;
            }
        }
        result
    }

    fn serve_one_core<G>(
        &self,
        listener: std::net::TcpListener,
        tls: Option<Tls>,
        first: Option<impl FnOnce() -> std::io::Result<G>>,
    ) -> Result<(), Error> {
        let served = tokio::runtime::Builder::new_current_thread()
            .event_interval(EVENT_INTERVAL)
            .enable_all()
            .build()
            .map_err(Error::Worker)
            .and_then(|runtime| {
                runtime.block_on(async {
                    let started = first
                        .map(|first| first())
                        .transpose()
                        .map_err(Error::Worker)?;
                    let served = self.serve_listener(listener, tls).await;
                    drop(started);
                    served
                })
            });
        // The process must not go on half-served (or with its signal
        // handling gone).
        if served.is_err() {
            self.stop().switch();
        }
        served
    }
}
