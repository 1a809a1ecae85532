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

    /// How long a guest may run for one request, response body included;
    /// past it: 504, or a cut response once the head is sent.
    #[arg(long, default_value = "30s", value_parser = config::parse_duration)]
    pub request_timeout: Duration,

    /// The largest linear memory of an instance (bytes, KiB, MiB, GiB); a
    /// guest that grows past it gets 500.
    #[arg(long, default_value = "128MiB", value_parser = config::parse_size)]
    pub max_memory: u64,

    /// The largest request body; larger ones get 413.
    #[arg(long, default_value = "10MiB", value_parser = config::parse_size)]
    pub max_body_size: u64,

    /// The most requests running at once; more get 503 with Retry-After.
    #[arg(long, default_value = "1024")]
    pub max_concurrent_requests: NonZeroUsize,

    /// The most connections open at once; more wait in the listen backlog.
    #[arg(long, default_value = "10000")]
    pub max_connections: NonZeroUsize,

    /// How long a client may take to send a request head (also closes idle
    /// HTTP/1 keep-alive connections and silent new connections).
    #[arg(long, default_value = "30s", value_parser = config::parse_duration)]
    pub header_read_timeout: Duration,

    /// The largest request head (HTTP/1) or header list (HTTP/2); larger
    /// ones get 431.
    #[arg(long, default_value = "64KiB", value_parser = config::parse_size)]
    pub max_header_size: u64,
}

impl Serve {
    pub fn into_config(self) -> ServeConfig {
        ServeConfig {
            component: self.component,
            addr: self.addr,
            workers: self.workers.unwrap_or_else(config::default_workers),
            shutdown_timeout: self.shutdown_timeout,
            request_timeout: self.request_timeout,
            max_memory: self.max_memory,
            max_body_size: self.max_body_size,
            max_concurrent_requests: self.max_concurrent_requests,
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            max_header_size: self.max_header_size,
        }
    }
}
