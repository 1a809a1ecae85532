//! What one tenant may use ([`TenantLimits`]): its instances, bodies,
//! requests, WebSockets and host memory. What each limit means is the doc
//! of its field; `settings.rs` names each in its table.

use std::time::Duration;

use super::settings::{
    DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_MAX_UPGRADES,
    DEFAULT_MAX_WEBSOCKET_MESSAGE, DEFAULT_MAX_WEBSOCKETS, DEFAULT_WEBSOCKET_IDLE_TIMEOUT,
    DEFAULT_WEBSOCKET_SOCKETS_PER_INSTANCE,
};
use super::{InstanceLimits, Pool, SocketLimits};

/// [`TenantLimits::max_websockets_per_client`] by default: 64.
pub const DEFAULT_MAX_WEBSOCKETS_PER_CLIENT: usize = 64;
/// [`TenantLimits::max_host_memory`] by default: 256 MiB, room for 1,024
/// sockets with a few messages queued each, or six instances each keeping
/// its most (docs/limits.md).
pub const DEFAULT_TENANT_HOST_MEMORY: usize = 256 << 20;

/// What one tenant's requests may use: time and memory of each instance,
/// body size, and how many run at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantLimits {
    /// Time and memory of each instance, and how it is reused.
    pub instance: InstanceLimits,
    /// The largest request body, in bytes: a larger `content-length` gets
    /// 413 before the guest runs; a body without one is counted as it
    /// streams and stops the guest when it goes past (413, or a cut
    /// response once the guest has answered). Default is
    /// [`DEFAULT_MAX_BODY_SIZE`].
    pub max_body_size: u64,
    /// The most of the tenant's requests running at once; more get 503
    /// with `Retry-After`. Default is [`DEFAULT_MAX_CONCURRENT_REQUESTS`]; a
    /// config file's tenants take
    /// [`DEFAULT_TENANT_CONCURRENT_REQUESTS`](super::file::DEFAULT_TENANT_CONCURRENT_REQUESTS)
    /// unless it says otherwise.
    pub max_concurrent_requests: usize,
    /// The most of the tenant's requests admitted per second (a token
    /// bucket holding a second's worth); more get 429 with `Retry-After`.
    /// Default is no limit.
    pub max_requests_per_second: Option<u32>,
    /// Whether the tenant is out of service: its requests get 503 with
    /// `Retry-After` without reaching its guests. In a config file, a reload
    /// turns it on or off without a restart. Default is no.
    pub out_of_service: bool,
    /// Whether the tenant's guests may accept upgrades, handed to the
    /// library's [`Builder::upgrade`](crate::Builder::upgrade) hook. Not a
    /// flag or a config key: a library user sets it. Default is no.
    pub allow_upgrade: bool,
    /// The most upgraded connections (HTTP/2: streams) of the tenant open
    /// at once; past it an upgrade request gets 503 with `Retry-After`
    /// before its guest runs. Not a flag or a config key. Default is
    /// [`DEFAULT_MAX_UPGRADES`].
    pub max_upgrades: usize,
    /// The most lines of guest output (stdout and stderr together) the
    /// tenant's guests log per second, in a burst of up to a second's worth;
    /// past it lines are dropped, and counted in a warning. The warnings of
    /// outgoing requests the host denies its guests count against it too.
    /// Default is [`DEFAULT_LOG_LINES_PER_SECOND`](super::DEFAULT_LOG_LINES_PER_SECOND).
    pub max_log_lines_per_second: u32,
    /// Whether WebSocket upgrades go to the component's WebSocket handler
    /// (`catshost:websocket/handler`), when it exports one. Default is yes;
    /// a config file's tenants accept WebSockets only when their entry
    /// says so (and a component that exports no handler is then refused).
    pub websockets: bool,
    /// The most WebSockets of the tenant open at once; past it an upgrade
    /// gets 503 with `Retry-After` before the guest's `open` runs. Default is
    /// [`DEFAULT_MAX_WEBSOCKETS`].
    pub max_websockets: usize,
    /// The most WebSockets of the tenant open at once from one client (an
    /// IPv4 address, or the /64 network of an IPv6 one), opens included;
    /// past it an upgrade gets 429 before the guest's `open` runs. Default
    /// is [`DEFAULT_MAX_WEBSOCKETS_PER_CLIENT`].
    pub max_websockets_per_client: usize,
    /// The largest WebSocket message (or frame), in bytes, either way; a
    /// client's larger one closes its socket with 1009, a guest's gets
    /// `too-large`. Default is [`DEFAULT_MAX_WEBSOCKET_MESSAGE`].
    pub max_websocket_message: usize,
    /// How long a WebSocket may go without a message, either way, before
    /// the host closes it with 1001: pings and pongs do not count, so a
    /// client cannot keep a socket its guest has no use for open with them.
    /// Default is [`DEFAULT_WEBSOCKET_IDLE_TIMEOUT`].
    pub websocket_idle_timeout: Duration,
    /// The most WebSockets one instance of the handler serves; 1 gives
    /// every socket an instance of its own (one failing takes no other
    /// down). Default is [`DEFAULT_WEBSOCKET_SOCKETS_PER_INSTANCE`].
    pub websocket_sockets_per_instance: usize,
    /// The most host memory, in bytes, the tenant's account may hold: what
    /// its instances keep between requests and events (unsent bodies,
    /// fields), its WebSockets' buffers and queued messages. Past it what
    /// would add fails as its protocol expects (docs/limits.md: a socket
    /// opens with 503, a message closes its socket with 1008, an instance
    /// that keeps too much is not reused). Default is
    /// [`DEFAULT_TENANT_HOST_MEMORY`]. Its key and flag are
    /// `max_tenant_host_memory` (`max_host_memory` is the server's guard,
    /// [`ServerSettings::max_host_memory`](super::ServerSettings::max_host_memory)).
    pub max_host_memory: usize,
    /// Whether a config file's tenant is loaded at start and kept loaded,
    /// rather than loaded on its first request and unloaded when idle
    /// ([`LoadSettings`](super::LoadSettings)). A tenant given to the
    /// library already loaded is always so. Default is no.
    pub preload: bool,
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            instance: InstanceLimits::default(),
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_requests_per_second: None,
            out_of_service: false,
            max_log_lines_per_second: super::DEFAULT_LOG_LINES_PER_SECOND,
            allow_upgrade: false,
            max_upgrades: DEFAULT_MAX_UPGRADES,
            websockets: true,
            max_websockets: DEFAULT_MAX_WEBSOCKETS,
            max_websockets_per_client: DEFAULT_MAX_WEBSOCKETS_PER_CLIENT,
            max_websocket_message: DEFAULT_MAX_WEBSOCKET_MESSAGE,
            websocket_idle_timeout: DEFAULT_WEBSOCKET_IDLE_TIMEOUT,
            websocket_sockets_per_instance: DEFAULT_WEBSOCKET_SOCKETS_PER_INSTANCE,
            max_host_memory: DEFAULT_TENANT_HOST_MEMORY,
            preload: false,
        }
    }
}

/// The instance pool for `instances` at once of at most `max_memory` each:
/// the one place the pool is sized.
pub fn pool(instances: usize, max_memory: usize) -> Pool {
    Pool {
        instances: u32::try_from(instances).unwrap_or(u32::MAX),
        max_memory,
    }
}

impl TenantLimits {
    /// The pool for one tenant with these limits (`catshost serve` without
    /// a config file).
    pub fn pool(&self) -> Pool {
        pool(self.instances(), self.instance.max_memory)
    }

    /// The most instances the tenant has at once: one per request running,
    /// and those of its open WebSockets.
    pub fn instances(&self) -> usize {
        let sockets = if self.websockets {
            self.max_websockets
                .div_ceil(self.websocket_sockets_per_instance.max(1))
        } else {
            0
        };
        self.max_concurrent_requests.saturating_add(sockets)
    }

    /// What its WebSockets may use on the WebAssembly side.
    pub fn socket_limits(&self) -> SocketLimits {
        SocketLimits {
            max_message: self.max_websocket_message,
            per_instance: self.websocket_sockets_per_instance,
        }
    }
}

/// The memory this process may use, in bytes: its cgroup's limit (v2, else
/// v1) when it has one, else the machine's physical memory; `None` when
/// neither can be read.
pub fn memory_available() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|text| text.trim().parse::<u64>().ok());
    let physical = read("/proc/meminfo").and_then(|info| {
        let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    match (cgroup, physical) {
        // cgroup v1 writes "no limit" as a huge number.
        (Some(cgroup), Some(physical)) => Some(cgroup.min(physical)),
        (cgroup, physical) => cgroup.or(physical),
    }
}
