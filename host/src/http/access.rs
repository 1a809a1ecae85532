//! One record per request, written when its response ends: an access log
//! line (target `catshost::access`) and the request metrics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::{Method, Request, StatusCode, Uri, Version};
use prometheus_client::metrics::gauge::Gauge;

use crate::ids::RequestId;
use crate::metrics::Metrics;

/// The status recorded for a request whose client went away before its
/// response head was sent (nginx's "client closed request").
const CLIENT_CLOSED: u16 = 499;

/// What every request of one tenant is recorded with.
pub(crate) struct Recorder {
    pub(crate) tenant: Arc<str>,
    pub(crate) metrics: Arc<Metrics>,
    access_log: bool,
    /// Its metrics label and in-flight gauge, from its first request: a
    /// tenant without requests takes none of the series the cap allows.
    series: OnceLock<(Arc<str>, Gauge)>,
}

impl Recorder {
    pub(crate) fn new(tenant: Arc<str>, metrics: Arc<Metrics>, access_log: bool) -> Self {
        Self {
            tenant,
            metrics,
            access_log,
            series: OnceLock::new(),
        }
    }

    fn series(&self) -> &(Arc<str>, Gauge) {
        self.series.get_or_init(|| {
            let label = self.metrics.tenant_label(&self.tenant);
            let in_flight = self.metrics.in_flight_gauge(&label);
            (label, in_flight)
        })
    }

    /// The `tenant` label of its metrics (its name, or `_other` past the
    /// cap on tenants with series of their own).
    pub(crate) fn label(&self) -> &Arc<str> {
        &self.series().0
    }

    /// Starts the record of `req`; it is written when the record is dropped.
    pub(crate) fn start<B>(
        self: &Arc<Self>,
        id: RequestId,
        req: &Request<B>,
        client: SocketAddr,
    ) -> Exchange {
        self.series().1.inc();
        Exchange {
            recorder: self.clone(),
            id,
            start: Instant::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            client,
            status: None,
            bytes_in: self.access_log.then(Default::default),
            bytes_out: 0,
            complete: false,
        }
    }
}

/// One request on its way: its response's status and size once known.
pub(crate) struct Exchange {
    recorder: Arc<Recorder>,
    id: RequestId,
    start: Instant,
    method: Method,
    uri: Uri,
    version: Version,
    client: SocketAddr,
    status: Option<StatusCode>,
    /// Request body bytes read, when they are logged.
    bytes_in: Option<Arc<AtomicU64>>,
    bytes_out: u64,
    complete: bool,
}

impl Exchange {
    /// The counter of request body bytes, if the access log wants it.
    pub(crate) fn bytes_in(&self) -> Option<Arc<AtomicU64>> {
        self.bytes_in.clone()
    }

    pub(crate) fn responded(&mut self, status: StatusCode) {
        self.status = Some(status);
    }

    pub(crate) fn sent(&mut self, bytes: usize) {
        self.bytes_out += bytes as u64;
    }

    /// The whole response body was handed to the connection.
    pub(crate) fn completed(&mut self) {
        self.complete = true;
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let duration = self.start.elapsed();
        let recorder = &*self.recorder;
        recorder.series().1.dec();
        let status = self.status.map_or(CLIENT_CLOSED, |s| s.as_u16());
        let protocol = protocol(self.version);
        recorder
            .metrics
            .request_done(recorder.label(), status, protocol, duration);
        if !recorder.access_log {
            return;
        }
        let bytes_in = self
            .bytes_in
            .as_ref()
            .map_or(0, |n| n.load(Ordering::Relaxed));
        // A HEAD response has no body to send.
        let complete = self.complete || (self.status.is_some() && self.method == Method::HEAD);
        tracing::info!(
            target: "catshost::access",
            method = %self.method,
            path = self.uri.path(),
            status,
            protocol,
            bytes_in,
            bytes_out = self.bytes_out,
            duration_ms = crate::log::millis(duration),
            complete,
            tenant = &*recorder.tenant,
            request_id = %self.id,
            client = %self.client,
            "request",
        );
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}
