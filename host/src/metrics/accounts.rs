//! The accounts of host memory (crate::account), read at each scrape:
//! what each tenant's holds, its limit and the charges it refused, and the
//! process's.

use std::sync::{Arc, Mutex, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::labels::TenantLabels;
use crate::account::Account;

/// The accounts a scrape reads: each tenant's (a reloaded tenant whose
/// limit changed has two until the old one's charges are gone), and the
/// process's.
#[derive(Debug, Default)]
pub(super) struct Accounts {
    tenants: Mutex<Vec<(Arc<str>, Weak<Account>)>>,
    process: Mutex<Weak<Account>>,
}

impl Accounts {
    pub(super) fn track(&self, tenant: &Arc<str>, account: &Arc<Account>) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        tenants.retain(|(_, a)| a.strong_count() > 0);
        if !tenants
            .iter()
            .any(|(_, a)| a.as_ptr() == Arc::as_ptr(account))
        {
            tenants.push((tenant.clone(), Arc::downgrade(account)));
        }
    }

    pub(super) fn track_process(&self, account: &Arc<Account>) {
        *self.process.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(account);
    }

    /// Per tenant: bytes held, limit, charges refused (summed over its
    /// accounts).
    fn per_tenant(&self) -> Vec<(Arc<str>, u64, u64, u64)> {
        let tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(Arc<str>, u64, u64, u64)> = Vec::new();
        for (tenant, account) in tenants.iter() {
            let Some(account) = account.upgrade() else {
                continue;
            };
            let held = account.held() as u64;
            let limit = account.limit() as u64;
            let refused = account.refused();
            match rows.iter_mut().find(|row| row.0 == *tenant) {
                Some(row) => {
                    row.1 += held;
                    row.2 = row.2.max(limit);
                    row.3 += refused;
                }
                None => rows.push((tenant.clone(), held, limit, refused)),
            }
        }
        rows
    }
}

impl Collector for Accounts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.per_tenant();
        let gauge = |value: u64| ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
        let mut family = encoder.encode_descriptor(
            "host_memory_bytes",
            "Host memory held on a tenant's behalf, as its account counts it \
             (docs/limits.md)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (tenant, held, _, _) in &rows {
            let labels = TenantLabels {
                tenant: tenant.clone(),
            };
            gauge(*held).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "host_memory_limit_bytes",
            "The limit of a tenant's account of host memory (max_tenant_host_memory)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (tenant, _, limit, _) in &rows {
            let labels = TenantLabels {
                tenant: tenant.clone(),
            };
            gauge(*limit).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "host_memory_refusals",
            "Charges a tenant's account of host memory refused: its limit, or the \
             process's, was in the way",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (tenant, _, _, refused) in &rows {
            let labels = TenantLabels {
                tenant: tenant.clone(),
            };
            ConstCounter::new(*refused).encode(family.encode_family(&labels)?)?;
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
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            gauge(process.held() as u64).encode(family)?;
        }
        Ok(())
    }
}
