//! The accounts of host memory (crate::account), read at each scrape:
//! what each tenant's holds, its limit and the charges it refused, and the
//! process's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::labels::TenantLabels;
use crate::account::Account;

/// One tenant's accounts at a scrape: bytes held, limit, charges refused.
struct Row {
    tenant: Arc<str>,
    held: u64,
    limit: u64,
    refused: u64,
}

/// The accounts a scrape reads: each tenant's (a reloaded tenant whose
/// limit changed has two until the old one's charges are gone), and the
/// process's.
#[derive(Debug, Default)]
pub(super) struct Accounts {
    tenants: Mutex<Tracked>,
    process: Mutex<Weak<Account>>,
    /// The label each tenant is shown under: a tenant past the cap on
    /// series, or with no traffic yet, as one of the others.
    shown: std::sync::OnceLock<Arc<super::series::Series>>,
}

/// The tenants' accounts by address; gone ones are dropped whenever their
/// number doubled since the last sweep (10,000 tenants track in linear
/// time).
#[derive(Debug, Default)]
struct Tracked {
    accounts: HashMap<usize, (Arc<str>, Weak<Account>)>,
    sweep_at: usize,
}

impl Accounts {
    pub(super) fn track(&self, tenant: &Arc<str>, account: &Arc<Account>) {
        let mut tracked = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if tracked.accounts.len() >= tracked.sweep_at {
            tracked.accounts.retain(|_, (_, a)| a.strong_count() > 0);
            tracked.sweep_at = (tracked.accounts.len() * 2).max(64);
        }
        tracked
            .accounts
            .entry(Arc::as_ptr(account) as usize)
            .or_insert_with(|| (tenant.clone(), Arc::downgrade(account)));
    }

    pub(super) fn shown_by(&self, series: Arc<super::series::Series>) {
        let _ = self.shown.set(series);
    }

    pub(super) fn track_process(&self, account: &Arc<Account>) {
        *self.process.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(account);
    }

    /// Per tenant, summed over its accounts, by tenant name.
    fn per_tenant(&self) -> Vec<Row> {
        let tracked = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: HashMap<Arc<str>, Row> = HashMap::new();
        for (tenant, account) in tracked.accounts.values() {
            let Some(account) = account.upgrade() else {
                continue;
            };
            let (held, limit) = (account.held() as u64, account.limit() as u64);
            let tenant = match self.shown.get() {
                Some(series) => series.shown(tenant),
                None => tenant.clone(),
            };
            let row = rows.entry(tenant.clone()).or_insert_with(|| Row {
                tenant,
                held: 0,
                limit: 0,
                refused: 0,
            });
            row.held += held;
            row.limit = row.limit.max(limit);
            row.refused += account.refused();
        }
        let mut rows: Vec<Row> = rows.into_values().collect();
        rows.sort_unstable_by(|a, b| a.tenant.cmp(&b.tenant));
        rows
    }
}

/// A family of a tenant's accounts: name, help, type, its value in a row.
type Family = (&'static str, &'static str, MetricType, fn(&Row) -> u64);

/// What a scrape shows of each tenant's accounts.
const FAMILIES: [Family; 3] = [
    (
        "host_memory_bytes",
        "Host memory held on a tenant's behalf, as its account counts it \
         (docs/limits.md)",
        MetricType::Gauge,
        |row| row.held,
    ),
    (
        "host_memory_limit_bytes",
        "The limit of a tenant's account of host memory (max_tenant_host_memory)",
        MetricType::Gauge,
        |row| row.limit,
    ),
    (
        "host_memory_refusals",
        "Charges a tenant's account of host memory refused: its limit, or the \
         process's, was in the way",
        MetricType::Counter,
        |row| row.refused,
    ),
];

impl Collector for Accounts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.per_tenant();
        for (name, help, kind, value) in FAMILIES {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for row in &rows {
                let labels = TenantLabels {
                    tenant: row.tenant.clone(),
                };
                let metric = family.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(value(row)).encode(metric)?,
                    _ => gauge(value(row)).encode(metric)?,
                }
            }
        }
        let process = self
            .process
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade();
        if let Some(process) = process {
            let family = encoder.encode_descriptor(
                "host_memory_process_bytes",
                "Host memory held on every tenant's behalf together (--max-host-memory \
                 bounds it)",
                None,
                MetricType::Gauge,
            )?;
            gauge(process.held() as u64).encode(family)?;
        }
        Ok(())
    }
}

fn gauge(value: u64) -> ConstGauge {
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
}
