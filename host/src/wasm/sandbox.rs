//! What a tenant's instances run with: their limits, what they may reach
//! (environment, directories, outbound origins), their share of the CPU and
//! the client their outgoing requests go through.

use std::path::PathBuf;
use std::sync::Arc;

use super::cpu::CpuShare;
use super::limits::InstanceLimits;
use super::outbound::{Outbound, Upstream};

/// What every instance of one tenant is given and held to.
#[derive(Clone)]
pub struct Sandbox {
    /// Names the tenant in guest output lines and outbound log lines.
    pub tenant: Arc<str>,
    /// Time and memory of each instance.
    pub limits: InstanceLimits,
    /// Environment, directories and outbound origins.
    pub access: WasiAccess,
    /// When set, the tenant's guests run only while they hold one of its
    /// permits.
    pub cpu: Option<CpuShare>,
    /// Where allowed outgoing requests go (`net::Client`).
    pub upstream: Arc<dyn Upstream>,
    /// The most instances of the tenant alive at once (WASI 0.3; give it
    /// the tenant's `max_concurrent_requests`).
    pub max_instances: usize,
    /// Told when an instance is made and when it goes (metrics).
    pub events: Option<Arc<dyn InstanceEvents>>,
    /// `access.dirs`, opened once: [`Sandbox::open_dirs`].
    pub opened: Arc<[OpenedDir]>,
    /// How many guest output lines the tenant may log.
    pub log_budget: Arc<super::output::LogBudget>,
    /// The tenant's open outgoing connections.
    pub outbound_connections: Arc<super::outbound::OutboundConnections>,
}

/// A preopened directory, opened once when its tenant is made: every
/// instance gets this directory, whatever its path names later (a symlink
/// swapped in, say).
#[derive(Debug)]
pub struct OpenedDir {
    /// The directory, or why it cannot be opened (then requests get 500).
    dir: std::io::Result<std::os::fd::OwnedFd>,
    guest: String,
    writable: bool,
}

impl OpenedDir {
    /// Its name in the guest.
    pub(crate) fn guest(&self) -> &str {
        &self.guest
    }

    /// Whether the guest may write in it.
    pub(crate) fn writable(&self) -> bool {
        self.writable
    }

    /// The path wasmtime opens: the open directory itself, through
    /// `/proc/self/fd`.
    pub(crate) fn path(&self) -> std::io::Result<PathBuf> {
        use std::os::fd::AsRawFd;
        match &self.dir {
            Ok(dir) => Ok(PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))),
            Err(error) => Err(std::io::Error::new(error.kind(), error.to_string())),
        }
    }
}

impl Sandbox {
    /// Opens the directories of `access`, each once, without following a
    /// symlink in its last component.
    pub fn open_dirs(access: &WasiAccess) -> Arc<[OpenedDir]> {
        use std::os::unix::fs::OpenOptionsExt;
        access
            .dirs
            .iter()
            .map(|preopen| OpenedDir {
                dir: std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&preopen.host)
                    .map(std::os::fd::OwnedFd::from)
                    .map_err(|error| {
                        std::io::Error::new(
                            error.kind(),
                            format!("cannot open '{}': {error}", preopen.host.display()),
                        )
                    }),
                guest: preopen.guest.clone(),
                writable: preopen.writable,
            })
            .collect()
    }
}

/// What a tenant's instances report of their lives.
pub trait InstanceEvents: Send + Sync + 'static {
    /// An instance was made, in `took`.
    fn created(&self, took: std::time::Duration);
    /// An instance went, after serving `requests`.
    fn retired(&self, requests: u32);
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("tenant", &self.tenant)
            .field("limits", &self.limits)
            .field("access", &self.access)
            .field("cpu", &self.cpu)
            .finish_non_exhaustive()
    }
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
