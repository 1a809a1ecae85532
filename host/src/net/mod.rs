//! Sockets: binding listeners and accepting connections.

mod listener;
mod tls;

pub(crate) use listener::Listener;
pub use listener::bind;
pub use tls::{CertKey, SniCerts, Tls, TlsError, fingerprint};
