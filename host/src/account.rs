//! Accounts of the host memory held on someone's behalf: the process's,
//! under it each tenant's. Whatever the host holds for a client or a guest
//! (a WebSocket's queued messages and buffers, what an instance keeps
//! between requests, ...) is a [`Charge`] on its tenant's account, and so
//! on the process's: taken before the bytes are held, refused past either
//! limit, and refunded when the charge is dropped. A charge cannot leak:
//! when everything it was held for is gone, every account reads zero
//! again.
//!
//! Charging is a few atomic adds, one per account up the chain; no lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// What one account holds, and its limit. Its parent (the process's
/// account, for a tenant's) is charged with it.
#[derive(Debug)]
pub struct Account {
    held: AtomicUsize,
    limit: usize,
    /// Charges it refused.
    refused: AtomicU64,
    parent: Option<Arc<Account>>,
}

/// A charge refused: the account named would go past its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{wanted} more bytes would take the {level} account past its limit of {limit} bytes")]
pub struct Refused {
    /// The bytes asked for.
    pub wanted: usize,
    /// The limit in the way.
    pub limit: usize,
    /// Whose account refused: `"tenant"` or `"process"`.
    pub level: &'static str,
}

impl Account {
    /// The process's account: everything every tenant holds, at most
    /// `limit` bytes (`usize::MAX`: no limit).
    pub fn process(limit: usize) -> Arc<Self> {
        Arc::new(Self::with(limit, None))
    }

    /// An account of at most `limit` bytes under `parent`.
    pub fn under(parent: &Arc<Account>, limit: usize) -> Arc<Self> {
        Arc::new(Self::with(limit, Some(parent.clone())))
    }

    /// An account of its own, under no other (tests, and a library user's
    /// tenant without a server).
    pub fn unlimited() -> Arc<Self> {
        Arc::new(Self::with(usize::MAX, None))
    }

    fn with(limit: usize, parent: Option<Arc<Account>>) -> Self {
        Self {
            held: AtomicUsize::new(0),
            limit,
            refused: AtomicU64::new(0),
            parent,
        }
    }

    /// The bytes it holds now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Its limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many charges it refused.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether it holds more than its limit: only a [`Charge::force`] can
    /// take it there.
    pub fn over(&self) -> bool {
        self.held() > self.limit
    }

    /// Charges `bytes`, here and up the chain: refused, with nothing
    /// charged, when any account would go past its limit.
    pub fn charge(self: &Arc<Self>, bytes: usize) -> Result<Charge, Refused> {
        self.add(bytes)?;
        Ok(Charge {
            account: self.clone(),
            bytes,
        })
    }

    /// A charge of nothing yet, to grow with [`Charge::resize`].
    pub fn empty(self: &Arc<Self>) -> Charge {
        Charge {
            account: self.clone(),
            bytes: 0,
        }
    }

    fn add(&self, bytes: usize) -> Result<(), Refused> {
        if bytes == 0 {
            return Ok(());
        }
        let before = self.held.fetch_add(bytes, Ordering::AcqRel);
        let after = before.saturating_add(bytes);
        if after > self.limit {
            self.held.fetch_sub(bytes, Ordering::AcqRel);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refused {
                wanted: bytes,
                limit: self.limit,
                level: self.level(),
            });
        }
        if let Some(parent) = &self.parent
            && let Err(refused) = parent.add(bytes)
        {
            self.held.fetch_sub(bytes, Ordering::AcqRel);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(refused);
        }
        Ok(())
    }

    /// Adds `bytes` whatever the limits (what is already held and cannot
    /// be refused, only counted).
    fn add_anyway(&self, bytes: usize) {
        self.held.fetch_add(bytes, Ordering::AcqRel);
        if let Some(parent) = &self.parent {
            parent.add_anyway(bytes);
        }
    }

    fn sub(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.held.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(parent) = &self.parent {
            parent.sub(bytes);
        }
    }

    fn level(&self) -> &'static str {
        match self.parent {
            Some(_) => "tenant",
            None => "process",
        }
    }
}

/// Bytes held on an account's behalf: refunded when dropped.
#[derive(Debug)]
pub struct Charge {
    account: Arc<Account>,
    bytes: usize,
}

impl Charge {
    /// The bytes charged.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The account charged.
    pub fn account(&self) -> &Arc<Account> {
        &self.account
    }

    /// Makes the charge `bytes`: a smaller one is refunded the difference,
    /// a larger one charged it, or refused (the charge unchanged).
    pub fn resize(&mut self, bytes: usize) -> Result<(), Refused> {
        if bytes > self.bytes {
            self.account.add(bytes - self.bytes)?;
        } else {
            self.account.sub(self.bytes - bytes);
        }
        self.bytes = bytes;
        Ok(())
    }

    /// Makes the charge `bytes` whatever the limits: for what the host
    /// already holds and can only count (what an instance kept, found
    /// after the fact). The account may then be [over](Account::over) its
    /// limit, and refuses what would add to it.
    pub fn force(&mut self, bytes: usize) {
        if bytes > self.bytes {
            self.account.add_anyway(bytes - self.bytes);
        } else {
            self.account.sub(self.bytes - bytes);
        }
        self.bytes = bytes;
    }

    /// Splits `bytes` off into a charge of its own (at most all of it).
    pub fn split(&mut self, bytes: usize) -> Charge {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        Charge {
            account: self.account.clone(),
            bytes,
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.account.sub(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_charge_past_either_limit_is_refused_and_charges_nothing() {
        let process = Account::process(100);
        let a = Account::under(&process, 60);
        let b = Account::under(&process, 60);
        let first = a.charge(50).unwrap();
        let refused = a.charge(20).unwrap_err();
        assert_eq!((refused.level, refused.limit), ("tenant", 60));
        let second = b.charge(40).unwrap();
        // b is under its own limit, the process is not.
        let refused = b.charge(20).unwrap_err();
        assert_eq!((refused.level, refused.limit), ("process", 100));
        assert_eq!((a.held(), b.held(), process.held()), (50, 40, 90));
        assert_eq!((a.refused(), b.refused()), (1, 1));
        drop((first, second));
        assert_eq!((a.held(), b.held(), process.held()), (0, 0, 0));
    }

    #[test]
    fn a_forced_charge_counts_what_is_held_and_blocks_more() {
        let process = Account::process(100);
        let a = Account::under(&process, 10);
        let mut kept = a.empty();
        kept.force(30);
        assert!(a.over());
        assert!(a.charge(1).is_err());
        kept.force(5);
        assert!(a.charge(5).is_ok());
        drop(kept);
        assert_eq!(process.held(), 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Charge(usize, usize),
        Resize(usize, usize),
        Force(usize, usize),
        Split(usize, usize),
        Drop(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3usize, 0..400usize).prop_map(|(t, n)| Op::Charge(t, n)),
            (0..64usize, 0..400usize).prop_map(|(i, n)| Op::Resize(i, n)),
            (0..64usize, 0..400usize).prop_map(|(i, n)| Op::Force(i, n)),
            (0..64usize, 0..400usize).prop_map(|(i, n)| Op::Split(i, n)),
            (0..64usize).prop_map(Op::Drop),
        ]
    }

    proptest! {
        /// Any mix of charges, resizes, splits and drops, on three tenants
        /// under one process: an account past its limit only by forced
        /// charges, each holding exactly what its live charges hold, and
        /// every account back at zero when they are gone.
        #[test]
        fn accounts_hold_what_their_charges_hold_and_end_at_zero(
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let process = Account::process(1000);
            let tenants: Vec<_> = (0..3).map(|_| Account::under(&process, 500)).collect();
            let mut charges: Vec<(usize, Charge, bool)> = Vec::new();
            for op in ops {
                match op {
                    Op::Charge(t, n) => {
                        if let Ok(charge) = tenants[t].charge(n) {
                            charges.push((t, charge, false));
                        }
                    }
                    Op::Resize(i, n) if !charges.is_empty() => {
                        let i = i % charges.len();
                        let _ = charges[i].1.resize(n);
                    }
                    Op::Force(i, n) if !charges.is_empty() => {
                        let i = i % charges.len();
                        charges[i].1.force(n);
                        charges[i].2 = true;
                    }
                    Op::Split(i, n) if !charges.is_empty() => {
                        let i = i % charges.len();
                        let (t, forced) = (charges[i].0, charges[i].2);
                        let split = charges[i].1.split(n);
                        charges.push((t, split, forced));
                    }
                    Op::Drop(i) if !charges.is_empty() => {
                        let i = i % charges.len();
                        charges.swap_remove(i);
                    }
                    _ => {}
                }
                let mut total = 0;
                for (t, tenant) in tenants.iter().enumerate() {
                    let held: usize = charges.iter().filter(|c| c.0 == t).map(|c| c.1.bytes()).sum();
                    prop_assert_eq!(tenant.held(), held);
                    let forced = charges.iter().any(|c| c.0 == t && c.2);
                    prop_assert!(forced || held <= tenant.limit());
                    total += held;
                }
                prop_assert_eq!(process.held(), total);
                let forced = charges.iter().any(|c| c.2);
                prop_assert!(forced || total <= process.limit());
            }
            drop(charges);
            prop_assert_eq!(process.held(), 0);
            for tenant in &tenants {
                prop_assert_eq!(tenant.held(), 0);
            }
        }
    }
}
