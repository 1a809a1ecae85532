//! What a server counts, in the Prometheus text format (`prometheus-client`):
//! requests, latency, in-flight requests, connections, instance creation
//! time, guest faults, admission rejections and TLS handshake failures.
//!
//! Every name starts with `catshost_`; the table is in docs/operations.md.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Where a failure is counted: `catshost_guest_faults_total{kind}` or
/// `catshost_admission_rejections_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// A guest's fault, of this kind (`trap`, `timeout`, `memory`).
    GuestFault(&'static str),
    /// A request refused with 503, for this reason (`concurrency`,
    /// `instance_pool`).
    Rejected(&'static str),
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// A server's metrics. Share one between servers (with
/// [`crate::Builder::metrics`]) to count them together.
pub struct Metrics {
    registry: Registry,
    accounts: Arc<accounts::Accounts>,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<LatencyLabels>,
    requests_in_flight: Family<TenantLabels, Gauge>,
    connections_open: Gauge,
    instance_creation: HistogramFamily<TenantLabels>,
    instances_live: Family<TenantLabels, Gauge>,
    instances_retired: Family<TenantLabels, Counter>,
    instance_requests: HistogramFamily<TenantLabels>,
    guest_faults: Family<FaultLabels, Counter>,
    admission_rejections: Family<RejectionLabels, Counter>,
    tls_handshake_failures: Family<ReasonLabels, Counter>,
    connections_closed: Family<ReasonLabels, Counter>,
    tenants_stale: Gauge,
    upgrades: Family<TenantLabels, Counter>,
    upgraded_open: Family<TenantLabels, Gauge>,
    websockets: Family<RequestProtocolLabels, Counter>,
    websockets_open: Family<TenantLabels, Gauge>,
    websocket_messages: Family<DirectionLabels, Counter>,
    websocket_closes: Family<CloseLabels, Counter>,
    components: components::Components,
    series: Arc<series::Series>,
}

mod accounts;
mod components;
mod labels;
mod series;

pub use crate::config::OTHER_TENANTS;

use labels::{
    Bounded, CloseLabels, DirectionLabels, FaultLabels, LatencyLabels, ReasonLabels,
    RejectionLabels, RequestLabels, RequestProtocolLabels, TenantLabels,
};

/// Request latency: 100 us to about 13 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

/// Requests one instance served: 1 to 2^20.
fn requests_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 21))
}

/// Instance creation: 5 us to about 160 ms.
fn instance_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_005, 2.0, 16))
}

impl Metrics {
    /// Metrics at zero.
    pub fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("catshost"),
            accounts: Arc::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            requests_in_flight: Family::default(),
            connections_open: Gauge::default(),
            instance_creation: Family::new_with_constructor(instance_histogram),
            instances_live: Family::default(),
            instances_retired: Family::default(),
            instance_requests: Family::new_with_constructor(requests_histogram),
            guest_faults: Family::default(),
            admission_rejections: Family::default(),
            tls_handshake_failures: Family::default(),
            connections_closed: Family::default(),
            tenants_stale: Gauge::default(),
            upgrades: Family::default(),
            upgraded_open: Family::default(),
            websockets: Family::default(),
            websockets_open: Family::default(),
            websocket_messages: Family::default(),
            websocket_closes: Family::default(),
            components: components::Components::new(),
            series: Arc::default(),
        };
        metrics.accounts.shown_by(metrics.series.clone());
        let registry = &mut metrics.registry;
        registry.register(
            "build",
            "catshost's version, and the wasmtime it runs guests on",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("wasmtime", env!("CATSHOST_WASMTIME_VERSION")),
            ]),
        );
        registry.register(
            "requests",
            "Requests answered, by tenant, status and protocol",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from a request's head to the end of its response",
            Unit::Seconds,
            metrics.request_duration.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests received whose response has not ended",
            metrics.requests_in_flight.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections open",
            metrics.connections_open.clone(),
        );
        registry.register_with_unit(
            "instance_creation",
            "Time to make an instance of a component (one per request unless instances are reused)",
            Unit::Seconds,
            metrics.instance_creation.clone(),
        );
        registry.register(
            "instances_live",
            "Instances made and not yet gone (serving, or idle for reuse)",
            metrics.instances_live.clone(),
        );
        registry.register(
            "instances_retired",
            "Instances that went: done, idle past their timeout, failed or replaced",
            metrics.instances_retired.clone(),
        );
        registry.register(
            "instance_requests",
            "Requests each instance served, counted when it goes",
            metrics.instance_requests.clone(),
        );
        registry.register(
            "guest_faults",
            "Guests that trapped (trap), ran past their request timeout (timeout), \
             past their memory limit (memory), answered with an upgrade the host \
             does not send (bad_response), or whose component cannot be loaded (load)",
            metrics.guest_faults.clone(),
        );
        registry.register(
            "admission_rejections",
            "Requests refused: 503 for too many running (concurrency), no \
             instance slot free (instance_pool), a tenant out of service \
             (out_of_service), too many upgraded connections (upgrades) or \
             WebSockets (websockets) open, a component still loading (loading); 429 \
             past a tenant's rate limit (rate)",
            metrics.admission_rejections.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed (error) or took too long (timeout)",
            metrics.tls_handshake_failures.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections the host closed, on the server's listener and the admin one: \
             past the per-client limit at accept (per_client_limit), past the admin \
             listener's limit at accept (admin_limit), the process's account of host \
             memory at its limit (host_memory), no valid PROXY header from a trusted proxy \
             in time (proxy_header), no request within the header read timeout of the start \
             (no_request), no request in flight for the idle timeout (idle), data not taken \
             for the write timeout (not_reading); HTTP/3's: sent a Retry to validate its \
             address while many handshakes were in progress (quic_retry), refused at \
             --max-connections (max_connections)",
            metrics.connections_closed.clone(),
        );
        registry.register(
            "tenants_stale",
            "Tenants serving their previous component because the last reload's \
             version of them cannot be served",
            metrics.tenants_stale.clone(),
        );
        registry.register(
            "upgrades",
            "Connections (HTTP/2: streams) a guest's accepted upgrade handed to the \
             library's upgrade hook",
            metrics.upgrades.clone(),
        );
        registry.register(
            "upgraded_open",
            "Upgraded connections (HTTP/2: streams) whose hook still runs",
            metrics.upgraded_open.clone(),
        );
        registry.register(
            "websockets",
            "WebSockets a tenant's WebSocket handler opened, by the protocol of \
             their handshake (HTTP/2: an extended CONNECT, RFC 8441)",
            metrics.websockets.clone(),
        );
        registry.register(
            "websockets_open",
            "WebSockets open",
            metrics.websockets_open.clone(),
        );
        registry.register(
            "websocket_messages",
            "WebSocket messages, from clients to guests (in) and from guests to \
             clients (out)",
            metrics.websocket_messages.clone(),
        );
        registry.register(
            "websocket_closes",
            "WebSockets closed, by the close code (1005: the client gave none; \
             1006: gone without a close)",
            metrics.websocket_closes.clone(),
        );
        metrics.components.register(registry);
        registry.register_collector(Box::new(metrics.accounts.clone()));
        metrics
    }

    /// Reads `account`, `tenant`'s account of host memory, at each scrape
    /// (while it lives).
    pub(crate) fn track_account(&self, tenant: &Arc<str>, account: &Arc<crate::account::Account>) {
        self.accounts.track(tenant, account);
    }

    /// Reads `account`, the process's account of host memory, at each
    /// scrape (while it lives).
    pub(crate) fn track_process_account(&self, account: &Arc<crate::account::Account>) {
        self.accounts.track_process(account);
    }

    /// Every metric in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Caps the tenants with metric series of their own at `max` (0: no
    /// cap); the others are counted as `tenant="_other"`
    /// ([`OTHER_TENANTS`]).
    pub fn set_max_tenant_series(&self, max: usize) {
        self.series.set_max(max);
    }

    /// The `tenant` label `tenant`'s metrics go under (its own, or
    /// [`OTHER_TENANTS`] past the cap): to keep rather than look up per
    /// request.
    pub(crate) fn tenant_label(&self, tenant: &Arc<str>) -> Arc<str> {
        self.series.label(tenant)
    }

    /// The in-flight gauge of the tenant `label`s ([`Metrics::tenant_label`]),
    /// to keep rather than look up per request.
    pub(crate) fn in_flight_gauge(&self, tenant: &Arc<str>) -> Gauge {
        self.requests_in_flight.get_or_create_owned(&TenantLabels {
            tenant: tenant.clone(),
        })
    }

    pub(crate) fn request_done(
        &self,
        tenant: &Arc<str>,
        status: u16,
        protocol: &'static str,
        duration: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                tenant: tenant.clone(),
                status: Bounded::status(status),
                protocol,
            })
            .inc();
        self.request_duration
            .get_or_create(&LatencyLabels {
                tenant: tenant.clone(),
                protocol,
            })
            .observe(duration.as_secs_f64());
    }

    pub(crate) fn instance_created(&self, tenant: &Arc<str>, took: Duration) {
        let labels = TenantLabels {
            tenant: tenant.clone(),
        };
        self.instance_creation
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.instances_live.get_or_create(&labels).inc();
    }

    pub(crate) fn instance_retired(&self, tenant: &Arc<str>, requests: u32) {
        let labels = TenantLabels {
            tenant: tenant.clone(),
        };
        self.instances_live.get_or_create(&labels).dec();
        self.instances_retired.get_or_create(&labels).inc();
        self.instance_requests
            .get_or_create(&labels)
            .observe(f64::from(requests));
    }

    /// Counts a failure where its kind says (see `http::Fault::counted`).
    pub(crate) fn count(&self, tenant: &Arc<str>, counted: Counted) {
        match counted {
            Counted::GuestFault(kind) => self
                .guest_faults
                .get_or_create(&FaultLabels {
                    tenant: tenant.clone(),
                    kind,
                })
                .inc(),
            Counted::Rejected(reason) => self
                .admission_rejections
                .get_or_create(&RejectionLabels {
                    tenant: tenant.clone(),
                    reason,
                })
                .inc(),
        };
    }

    /// Counts an open connection until the guard is dropped.
    pub(crate) fn connection_opened(&self) -> ConnectionGuard {
        self.connections_open.inc();
        ConnectionGuard(self.connections_open.clone())
    }

    /// Counts an upgrade of `tenant` handed to the hook, open until the
    /// guard is dropped.
    pub(crate) fn upgraded(&self, tenant: &Arc<str>) -> ConnectionGuard {
        let labels = TenantLabels {
            tenant: self.tenant_label(tenant),
        };
        self.upgrades.get_or_create(&labels).inc();
        let open = self.upgraded_open.get_or_create_owned(&labels);
        open.inc();
        ConnectionGuard(open)
    }

    /// Counts a WebSocket of `tenant` opened over `protocol` (`HTTP/1.1`,
    /// or `HTTP/2` for an extended CONNECT), open until the guard is
    /// dropped.
    pub(crate) fn websocket_opened(
        &self,
        tenant: &Arc<str>,
        protocol: &'static str,
    ) -> ConnectionGuard {
        let tenant = self.tenant_label(tenant);
        self.websockets
            .get_or_create(&RequestProtocolLabels {
                tenant: tenant.clone(),
                protocol,
            })
            .inc();
        let labels = TenantLabels { tenant };
        let open = self.websockets_open.get_or_create_owned(&labels);
        open.inc();
        ConnectionGuard(open)
    }

    /// The counters of `tenant`'s WebSocket messages: in, then out.
    pub(crate) fn websocket_messages(&self, tenant: &Arc<str>) -> (Counter, Counter) {
        let tenant = self.tenant_label(tenant);
        let counter = |direction| {
            self.websocket_messages
                .get_or_create_owned(&DirectionLabels {
                    tenant: tenant.clone(),
                    direction,
                })
        };
        (counter("in"), counter("out"))
    }

    /// Counts a WebSocket of `tenant` closed with `code`.
    pub(crate) fn websocket_closed(&self, tenant: &Arc<str>, code: u16) {
        self.websocket_closes
            .get_or_create(&CloseLabels {
                tenant: self.tenant_label(tenant),
                code: Bounded::close_code(code),
            })
            .inc();
    }

    /// How many tenants serve a previous component after the last reload.
    pub fn set_stale_tenants(&self, count: usize) {
        self.tenants_stale
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The host closed a connection, for `reason`.
    pub(crate) fn connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// `reason` is `error` or `timeout`.
    pub(crate) fn tls_handshake_failed(&self, reason: &'static str) {
        self.tls_handshake_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Counts one open connection (or upgrade) while it lives.
pub(crate) struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One tenant's instance events, counted.
pub(crate) struct TenantInstances {
    metrics: Arc<Metrics>,
    tenant: Arc<str>,
    /// Its metrics label, from its first instance.
    label: std::sync::OnceLock<Arc<str>>,
}

impl TenantInstances {
    pub(crate) fn new(metrics: Arc<Metrics>, tenant: Arc<str>) -> Self {
        Self {
            metrics,
            tenant,
            label: std::sync::OnceLock::new(),
        }
    }

    fn label(&self) -> &Arc<str> {
        self.label
            .get_or_init(|| self.metrics.tenant_label(&self.tenant))
    }
}

impl crate::wasm::InstanceEvents for TenantInstances {
    fn created(&self, took: Duration) {
        self.metrics.instance_created(self.label(), took);
    }

    fn retired(&self, requests: u32) {
        self.metrics.instance_retired(self.label(), requests);
    }
}

#[cfg(test)]
mod tests;
