//! What a tenant's guests are given and held to, as plain data: the limits
//! of each instance and how it is reused, what a guest may reach (its
//! environment, directories and outbound origins), its WebSocket limits,
//! and the process's instance pool. The WebAssembly layer (`wasm/`) enforces
//! these; nothing here runs anything.

use std::path::PathBuf;
use std::time::Duration;

use super::outbound::Outbound;

/// [`InstanceLimits::request_timeout`] by default: 30 seconds.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// [`InstanceLimits::max_memory`] by default: 128 MiB.
pub const DEFAULT_MAX_MEMORY: usize = 128 << 20;
/// [`TenantLimits::max_log_lines_per_second`] by default: 1000.
///
/// [`TenantLimits::max_log_lines_per_second`]: super::TenantLimits::max_log_lines_per_second
pub const DEFAULT_LOG_LINES_PER_SECOND: u32 = 1000;

/// [`Reuse::idle_instance_timeout`] by default: 1 second.
pub const DEFAULT_IDLE_INSTANCE_TIMEOUT: Duration = Duration::from_secs(1);
/// [`Reuse::max_instance_reuse_count`] by default for a WASI 0.3
/// component: 128 (`wasmtime serve`'s default).
pub const DEFAULT_P3_REUSE_COUNT: u32 = 128;
/// [`Reuse::max_instance_concurrent_reuse_count`] by default: 16
/// (`wasmtime serve`'s default).
pub const DEFAULT_P3_CONCURRENT_REUSE_COUNT: u32 = 16;

/// How an instance is reused: how many requests it serves in all and at
/// once, and how long it is kept idle. Unset counts take the component's
/// default (each field says which): a fresh instance for every request for
/// WASI 0.2 components (nothing one request leaves in memory is seen by the
/// next), reuse for WASI 0.3 ones, whose world is made for it. Reuse gives
/// up that isolation between the requests of one tenant: what a request
/// leaves in the instance's memory (globals, caches, files it wrote to a
/// preopen it could already write) the next request of the same tenant may
/// see. Instances are never shared between tenants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reuse {
    /// The most requests one instance serves, in all, before a new one is
    /// made; above 1, what one request leaves in the instance is seen by
    /// the tenant's next (docs/reuse.md). Default is the component's: 1 for
    /// WASI 0.2 (a fresh instance for every request),
    /// [`DEFAULT_P3_REUSE_COUNT`] for WASI 0.3.
    pub max_instance_reuse_count: Option<u32>,
    /// The most requests one instance serves at once (WASI 0.3 only; a WASI
    /// 0.2 instance serves one at a time). Default is
    /// [`DEFAULT_P3_CONCURRENT_REUSE_COUNT`].
    pub max_instance_concurrent_reuse_count: Option<u32>,
    /// How long an instance with no request is kept for the next one.
    /// Default is [`DEFAULT_IDLE_INSTANCE_TIMEOUT`].
    pub idle_instance_timeout: Duration,
}

impl Default for Reuse {
    fn default() -> Self {
        Self {
            max_instance_reuse_count: None,
            max_instance_concurrent_reuse_count: None,
            idle_instance_timeout: DEFAULT_IDLE_INSTANCE_TIMEOUT,
        }
    }
}

impl Reuse {
    /// The most requests an instance serves in all: for a WASI 0.3
    /// component when `p3`.
    pub fn reuse_count(&self, p3: bool) -> u32 {
        let default = if p3 { DEFAULT_P3_REUSE_COUNT } else { 1 };
        self.max_instance_reuse_count.unwrap_or(default).max(1)
    }

    /// The most requests a WASI 0.3 instance serves at once.
    pub fn concurrent_reuse_count(&self) -> u32 {
        self.max_instance_concurrent_reuse_count
            .unwrap_or(DEFAULT_P3_CONCURRENT_REUSE_COUNT)
            .max(1)
    }
}

/// Limits of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceLimits {
    /// How long the guest may run, from the start of the request to the end
    /// of its response body (a WebSocket handler: for each event). Past it:
    /// 504 before the response head, a cut response after, and the instance
    /// is dropped. Default is [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// The most linear memory of an instance, in bytes, all its memories
    /// together (a component of several core modules gets one budget, not
    /// one per memory). A guest that grows past it traps (500). Default is
    /// [`DEFAULT_MAX_MEMORY`].
    pub max_memory: usize,
    /// How the instance is reused.
    pub reuse: Reuse,
}

impl Default for InstanceLimits {
    fn default() -> Self {
        Self {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_memory: DEFAULT_MAX_MEMORY,
            reuse: Reuse::default(),
        }
    }
}

/// Instances preallocated in a pool (wasmtime's pooling allocator): a
/// request then takes a ready slot instead of mapping fresh memory, and
/// memory that stays resident between requests is reset, not faulted in
/// again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Instances alive at once; give it the most requests running at once
    /// ([`TenantLimits::pool`] and [`pool`] do).
    ///
    /// [`TenantLimits::pool`]: super::TenantLimits::pool
    /// [`pool`]: super::pool
    pub instances: u32,
    /// The largest linear memory of an instance; give it the server's
    /// `max_memory`.
    pub max_memory: usize,
}

/// What a tenant's sockets may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketLimits {
    /// The largest message, in bytes, either way.
    pub max_message: usize,
    /// The most sockets one instance serves.
    pub per_instance: usize,
}

/// What a guest may reach beyond its request: nothing by default. The host
/// environment is never inherited; only what is listed here is given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WasiAccess {
    /// Environment variables, in order (`wasi:cli/environment`).
    pub env: Vec<(String, String)>,
    /// Directories the guest can open (`wasi:filesystem/preopens`).
    pub dirs: Vec<Preopen>,
    /// Origins the guest may send HTTP requests to
    /// (`wasi:http/outgoing-handler`).
    pub outbound: Outbound,
}

/// A host directory a guest sees under a name of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preopen {
    /// The directory on the host.
    pub host: PathBuf,
    /// Its path in the guest (`/data`, say).
    pub guest: String,
    /// Whether the guest may create, write and delete in it.
    pub writable: bool,
}

impl Preopen {
    /// Parses `HOST::GUEST` (wasmtime's syntax); `::GUEST` may be left out
    /// to use the host path. Checks that the directory exists.
    pub fn parse(text: &str, writable: bool) -> Result<Self, String> {
        let (host, guest) = text.split_once("::").unwrap_or((text, text));
        if host.is_empty() || guest.is_empty() {
            return Err(format!(
                "'{text}' is not HOST::GUEST (e.g. ./static::/static)"
            ));
        }
        let host = PathBuf::from(host);
        if host
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(format!(
                "'{}' is a symlink: name the directory it points to (a preopen is opened once, \
                 without following a symlink)",
                host.display()
            ));
        }
        if !host.is_dir() {
            return Err(format!("'{}' is not a directory", host.display()));
        }
        Ok(Self {
            host,
            guest: guest.to_string(),
            writable,
        })
    }
}
