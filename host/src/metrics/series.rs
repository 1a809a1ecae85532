//! The cap on tenants with metric series of their own: at 10,000 tenants a
//! series per tenant and family would make every scrape megabytes long.
//! The first `max` tenants to be counted (in the order their first event
//! comes: the first with traffic) keep their own `tenant` label; every
//! other is counted under [`OTHER_TENANTS`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::config::{DEFAULT_MAX_TENANT_SERIES, OTHER_TENANTS};

/// The tenants with series of their own.
#[derive(Debug)]
pub(super) struct Series {
    other: Arc<str>,
    own: Mutex<Own>,
}

#[derive(Debug)]
struct Own {
    /// 0: no cap.
    max: usize,
    tenants: HashSet<Arc<str>>,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            other: OTHER_TENANTS.into(),
            own: Mutex::new(Own {
                max: DEFAULT_MAX_TENANT_SERIES,
                tenants: HashSet::new(),
            }),
        }
    }
}

impl Series {
    fn own(&self) -> std::sync::MutexGuard<'_, Own> {
        self.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn set_max(&self, max: usize) {
        self.own().max = max;
    }

    /// The label `tenant` is counted under, taking one of the slots if one
    /// is free.
    pub(super) fn label(&self, tenant: &Arc<str>) -> Arc<str> {
        let mut own = self.own();
        if own.tenants.contains(tenant) {
            return tenant.clone();
        }
        if own.max == 0 || own.tenants.len() < own.max {
            own.tenants.insert(tenant.clone());
            return tenant.clone();
        }
        self.other.clone()
    }

    /// The label `tenant` is shown under, without taking a slot.
    pub(super) fn shown(&self, tenant: &Arc<str>) -> Arc<str> {
        let own = self.own();
        match own.max == 0 || own.tenants.contains(tenant) {
            true => tenant.clone(),
            false => self.other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tenants_keep_their_label_and_the_rest_share_one() {
        let series = Series::default();
        series.set_max(2);
        let [a, b, c]: [Arc<str>; 3] = ["a".into(), "b".into(), "c".into()];
        assert_eq!(&*series.shown(&a), OTHER_TENANTS, "not counted yet");
        assert_eq!(series.label(&a), a);
        assert_eq!(series.label(&b), b);
        assert_eq!(&*series.label(&c), OTHER_TENANTS);
        assert_eq!(series.label(&a), a, "a keeps its slot");
        assert_eq!(series.shown(&b), b);
        series.set_max(0);
        assert_eq!(series.label(&c), c, "no cap");
    }
}
