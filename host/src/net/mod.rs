//! Sockets: binding listeners and accepting connections.

mod listener;

pub(crate) use listener::{Listener, bind};
