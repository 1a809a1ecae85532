//! The server: a [`Builder`] for its settings, and [`Server`], which accepts
//! connections, serves them, and stops gracefully when its [`Stop`] switches.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::task::JoinSet;

use crate::error::Error;
use crate::http::{ConnBuilder, DefaultErrorHandler, ErrorHandler, Service};
use crate::lifecycle::{Ready, ReadyLatch, Stop};
use crate::net::{self, Listener};
use crate::wasm::{GuestTasks, Handler};

/// How long a stop waits for in-flight requests by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// The listen queue length by default.
pub const DEFAULT_BACKLOG: u32 = 1024;

/// Settings for a [`Server`].
#[derive(Clone)]
pub struct Builder {
    shutdown_timeout: Duration,
    backlog: u32,
    stop: Stop,
    errors: Arc<dyn ErrorHandler>,
}

impl Builder {
    /// Settings with every default.
    pub fn new() -> Self {
        Self {
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            backlog: DEFAULT_BACKLOG,
            stop: Stop::new(),
            errors: Arc::new(DefaultErrorHandler),
        }
    }

    /// How long a stop waits for in-flight requests before cancelling them.
    ///
    /// Default is 30 seconds.
    pub fn shutdown_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The listen queue length of listeners the server binds itself.
    ///
    /// Default is 1024.
    pub fn backlog(&mut self, backlog: u32) -> &mut Self {
        self.backlog = backlog;
        self
    }

    /// The switch that stops the server. Give several servers clones of one
    /// `Stop` to stop them together.
    ///
    /// Default is a new switch of the server's own, see [`Server::stop`].
    pub fn stop(&mut self, stop: Stop) -> &mut Self {
        self.stop = stop;
        self
    }

    /// Makes the responses the host sends itself (400, 500, 503, ...).
    ///
    /// Default is [`DefaultErrorHandler`].
    pub fn error_handler(&mut self, handler: impl ErrorHandler) -> &mut Self {
        self.errors = Arc::new(handler);
        self
    }

    /// A server that serves every request with `handler`.
    pub fn build(&self, handler: Handler) -> Server {
        let tasks = GuestTasks::default();
        Server {
            inner: Arc::new(Inner {
                service: Arc::new(Service::new(handler, tasks.clone(), self.errors.clone())),
                tasks,
                conn: ConnBuilder::new(),
                shutdown_timeout: self.shutdown_timeout,
                backlog: self.backlog,
                stop: self.stop.clone(),
                ready: ReadyLatch::new(),
            }),
        }
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

/// A server of one component. Cheap to clone: clones are the same server.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    service: Arc<Service>,
    tasks: GuestTasks,
    conn: ConnBuilder,
    shutdown_timeout: Duration,
    backlog: u32,
    stop: Stop,
    ready: ReadyLatch,
}

impl Server {
    /// Settings for a new server.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Resolves with the bound address once the server accepts connections.
    pub fn ready(&self) -> Ready {
        self.inner.ready.subscribe()
    }

    /// The switch that stops this server.
    pub fn stop(&self) -> &Stop {
        &self.inner.stop
    }

    /// Binds `addr` and serves plaintext HTTP/1.1 and h2c (HTTP/2 by prior
    /// knowledge) on it until the stop switch is switched and in-flight
    /// requests are done.
    pub async fn serve_clear(&self, addr: SocketAddr) -> Result<(), Error> {
        let listener = net::bind(addr, self.inner.backlog)
            .and_then(Listener::new)
            .map_err(|source| {
                self.inner.ready.fail();
                Error::Bind { addr, source }
            })?;
        self.serve(listener).await
    }

    /// Serves plaintext HTTP on a listener the caller bound. The listener is
    /// closed when serving ends.
    pub async fn serve_listener(&self, listener: std::net::TcpListener) -> Result<(), Error> {
        let listener = Listener::new(listener).map_err(|e| {
            self.inner.ready.fail();
            Error::Listener(e)
        })?;
        self.serve(listener).await
    }

    async fn serve(&self, listener: Listener) -> Result<(), Error> {
        let inner = &*self.inner;
        let addr = listener.local_addr().map_err(Error::Listener)?;
        inner.ready.open(addr);

        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let result = loop {
            tokio::select! {
                biased;
                () = inner.stop.switched() => break Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => {
                        let server = self.inner.clone();
                        let watcher = graceful.watcher();
                        connections.spawn(async move {
                            let service = server.service.clone();
                            tracing::trace!(peer = %accepted.peer, "connection accepted");
                            server.conn.serve(accepted.stream, service, false, watcher).await;
                        });
                    }
                    Err(error) => break Err(Error::Listener(error)),
                },
                // Reap finished connections so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        };
        // New connections are refused from here on.
        drop(listener);
        self.drain(graceful, connections).await;
        result
    }

    /// Lets connections and guests finish, up to the shutdown timeout, then
    /// cancels what is left.
    async fn drain(&self, graceful: GracefulShutdown, mut connections: JoinSet<()>) {
        let inner = &*self.inner;
        let in_flight = graceful.count();
        if in_flight > 0 {
            tracing::info!(connections = in_flight, timeout = ?inner.shutdown_timeout, "waiting for in-flight requests");
        }
        inner.tasks.close();
        let finished = tokio::time::timeout(inner.shutdown_timeout, async {
            // Asks HTTP/1 connections to close after their current response
            // and sends HTTP/2 GOAWAY, then waits for them to end.
            graceful.shutdown().await;
            inner.tasks.wait().await;
        })
        .await;
        if finished.is_err() {
            tracing::warn!(timeout = ?inner.shutdown_timeout, "shutdown timeout reached: cancelling the requests still running");
            inner.tasks.cancel();
            connections.abort_all();
            inner.tasks.wait().await;
        }
        while connections.join_next().await.is_some() {}
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}
