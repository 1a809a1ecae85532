//! The command line: clap structs only. Turning them into settings happens
//! in [`Serve::into_config`].

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use catshost::config::{self, ServeConfig};
use clap::{Parser, Subcommand};

/// Serve HTTP from sandboxed wasi:http WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "catshost", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a wasi:http component over HTTP/1.1 and HTTP/2 (h2c).
    ///
    /// Every request runs in a fresh instance of the component. The line
    /// `catshost: serving http://ADDR` on stderr says the server is ready.
    /// SIGINT or SIGTERM stops it gracefully; a second one exits at once.
    Serve(Serve),
}

#[derive(Debug, clap::Args)]
pub struct Serve {
    /// The component to serve (`.wasm`, or `.wat` text). Without it, a
    /// built-in demo answers with the method, path and protocol it saw.
    pub component: Option<PathBuf>,

    /// Address to listen on. Port 0 picks a free port.
    #[arg(long, default_value = config::DEFAULT_ADDR)]
    pub addr: SocketAddr,

    /// Worker threads serving requests [default: the number of cores].
    #[arg(long)]
    pub workers: Option<NonZeroUsize>,

    /// How long a stop waits for in-flight requests before cancelling them
    /// (ms, s or m).
    #[arg(long, default_value = "30s", value_parser = config::parse_duration)]
    pub shutdown_timeout: Duration,
}

impl Serve {
    pub fn into_config(self) -> ServeConfig {
        ServeConfig {
            component: self.component,
            addr: self.addr,
            workers: self.workers.unwrap_or_else(config::default_workers),
            shutdown_timeout: self.shutdown_timeout,
        }
    }
}
