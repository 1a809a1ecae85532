//! Sockets: binding listeners and accepting connections, the PROXY header of
//! a load balancer's connections, TLS, listeners handed over by a
//! supervisor, and the HTTP client guests call out with.

mod client;
mod clients;
mod fd;
mod listener;
mod proxy;
mod tls;

pub use client::{Client, IoFuture};
pub(crate) use clients::{ClientSlot, PerClient};
pub use fd::{listener_from_fd, systemd_listen_fd};
pub use listener::bind;
pub(crate) use listener::{Accepted, Listener};
pub(crate) use proxy::{Rewind, read_header};
pub use tls::{CertKey, SniCerts, Tls, TlsError, fingerprint};
