//! What on-demand tenants' loading counts: components loaded and unloaded,
//! how long loads take, the code they hold, and the requests that waited
//! for one.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Component loads: 1 ms to about 65 s.
fn load_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The loading metrics of a server's on-demand tenants.
#[derive(Clone)]
pub(super) struct Components {
    loaded: Gauge,
    code: Gauge,
    loads: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    unloads: Family<ReasonLabels, Counter>,
    cold_requests: Counter,
}

impl Components {
    pub(super) fn new() -> Self {
        Self {
            loaded: Gauge::default(),
            code: Gauge::default(),
            loads: Family::new_with_constructor(load_histogram),
            unloads: Family::default(),
            cold_requests: Counter::default(),
        }
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "components_loaded",
            "On-demand tenants whose component is loaded",
            self.loaded.clone(),
        );
        registry.register_with_unit(
            "loaded_code",
            "Compiled code of on-demand tenants' loaded components",
            Unit::Bytes,
            self.code.clone(),
        );
        registry.register_with_unit(
            "component_load_duration",
            "Loads of on-demand tenants' components (read, compiled or taken from \
             the compile cache, pre-instantiated), by outcome: loaded or failed",
            Unit::Seconds,
            self.loads.clone(),
        );
        registry.register(
            "component_unloads",
            "On-demand tenants' components unloaded: idle past idle_unload (idle), \
             or the least recently used past max_loaded_code (budget)",
            self.unloads.clone(),
        );
        registry.register(
            "cold_requests",
            "Requests that found their tenant's component not loaded and waited for it",
            self.cold_requests.clone(),
        );
    }
}

impl super::Metrics {
    /// A load ended after `took`: `outcome` is `loaded` or `failed`.
    pub(crate) fn component_load(&self, outcome: &'static str, took: Duration) {
        self.components
            .loads
            .get_or_create(&OutcomeLabels { outcome })
            .observe(took.as_secs_f64());
    }

    /// A component was unloaded, for `reason` (`idle`, `budget`).
    pub(crate) fn component_unloaded(&self, reason: &'static str) {
        self.components
            .unloads
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// What is loaded now: `components` holding `code` bytes.
    pub(crate) fn set_loaded(&self, components: usize, code: usize) {
        self.components
            .loaded
            .set(i64::try_from(components).unwrap_or(i64::MAX));
        self.components
            .code
            .set(i64::try_from(code).unwrap_or(i64::MAX));
    }

    /// A request found its tenant's component not loaded.
    pub(crate) fn cold_request(&self) {
        self.components.cold_requests.inc();
    }
}
