//! What a tenant's instances run with: their limits, what they may reach
//! (environment, directories, outbound origins), their share of the CPU and
//! the client their outgoing requests go through.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::busy::Busy;
use super::cpu::CpuShare;
use super::error::GuestError;
use super::outbound::{OutboundConnections, Tenants, Upstream};
use super::output::LogBudget;
use crate::account::Account;
use crate::config::units::deadline_after;
use crate::config::{InstanceLimits, WasiAccess};

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
    /// Where allowed requests to other tenants' internal names go (the
    /// server's tenants); `None`: such requests find no tenant.
    pub tenants: Option<Arc<dyn Tenants>>,
    /// The most WASI 0.3 instances of the tenant alive at once (give it
    /// the tenant's `max_concurrent_requests`).
    pub max_instances: usize,
    /// Every instance of the tenant, whatever made it (fresh, reused,
    /// shared, WebSocket): one permit each while it lives.
    pub instance_cap: InstanceCap,
    /// The tenant's account of host memory: what its instances keep
    /// between requests and events, its sockets' queues.
    pub account: Arc<Account>,
    /// Told when an instance is made and when it goes (metrics).
    pub events: Option<Arc<dyn InstanceEvents>>,
    /// `access.dirs`, opened once: [`Sandbox::open_dirs`].
    pub opened: Arc<[OpenedDir]>,
    /// How many guest output lines the tenant may log.
    pub log_budget: Arc<LogBudget>,
    /// The tenant's open outgoing connections.
    pub outbound_connections: Arc<OutboundConnections>,
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

    /// When a request (or an event) that starts now must be done by.
    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        deadline_after(tokio::time::Instant::now(), self.limits.request_timeout)
    }

    /// `guest` under the tenant's CPU share, when it has one: the guest's
    /// run and what the host does for it after, above all dropping its
    /// store (an instance that grew its memory to 128 MiB takes
    /// milliseconds to give it back), so that a tenant whose guests fail
    /// fast cannot take the workers with the host's work for them.
    #[inline]
    pub(crate) fn rationed<F>(&self, guest: F) -> BoxFuture<'static, F::Output>
    where
        F: Future + Send + 'static,
    {
        // The epoch ticks while the run lives (wasm/guest/busy.rs).
        let busy = Busy::start();
        match &self.cpu {
            Some(cpu) => cpu.ration(guest).inspect(move |_| drop(busy)).boxed(),
            None => guest.inspect(move |_| drop(busy)).boxed(),
        }
    }
}

/// The most instances one tenant has alive at once, across every way of
/// making them: so that however its clients behave (requests abandoned
/// mid-run, WebSocket opens reset), a tenant cannot take the instance pool
/// from the others. Cheap to clone: clones share the permits.
#[derive(Clone, Debug)]
pub struct InstanceCap {
    permits: Arc<Semaphore>,
    max: usize,
}

impl InstanceCap {
    /// At most `max` instances (at most [`Semaphore::MAX_PERMITS`]).
    pub fn new(max: usize) -> Self {
        let max = max.min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// `before`'s permits when its cap is `max` too (a reloaded tenant's
    /// live instances keep counting), else a cap of `max` of its own.
    pub fn carried(before: Option<&InstanceCap>, max: usize) -> Self {
        match before {
            Some(before) if before.max == max.min(Semaphore::MAX_PERMITS) => before.clone(),
            _ => Self::new(max),
        }
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Instances alive now.
    pub fn live(&self) -> usize {
        self.max - self.permits.available_permits().min(self.max)
    }

    /// A permit for one more instance, held while it lives.
    pub(crate) fn take(&self) -> Result<OwnedSemaphorePermit, GuestError> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            GuestError::NoInstance(
                format!("the tenant has {} instances alive, its most", self.max).into(),
            )
        })
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
