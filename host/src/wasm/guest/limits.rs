//! What one instance may use: memory, tables, instances, and time. Time is
//! enforced by the handler's deadline; epoch interruption makes a guest that
//! computes without calling the host yield to it.

use std::time::Duration;

use wasmtime::ResourceLimiter;

use crate::config::InstanceLimits;

/// The most elements a table of an instance may have (also the pool's
/// table size).
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;
/// The most core instances, tables and linear memories one component
/// instance may create (a component is made of a few core instances; the
/// pool caps the same per component). The guests of every language here use
/// at most 3 memories and 8 tables.
const MAX_INSTANCES: usize = 50;
pub(crate) const MAX_TABLES: usize = 32;
pub(crate) const MAX_MEMORIES: usize = 8;

/// How often the epoch advances: how long a busy guest runs before it yields
/// to the executor (so it cannot pin a worker) and its deadline is checked.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// The error a guest traps with when it grows its memory past the limit.
#[derive(Debug, thiserror::Error)]
#[error("the guest's memories would grow to {desired} bytes, past its limit of {limit} bytes")]
pub struct MemoryExhausted {
    desired: usize,
    limit: usize,
}

/// The store's resource limiter. `max_memory` bounds all the linear
/// memories of an instance together: a component of several core modules,
/// each with its own memory, gets one budget, not one per memory.
pub(crate) struct Limiter {
    max_memory: usize,
    /// The bytes of every memory of the instance.
    used: usize,
    /// The component instances in the store: a middleware chain's hops
    /// each get the core instances, tables and memories of one.
    components: usize,
}

impl Limiter {
    pub(crate) fn new(limits: &InstanceLimits) -> Self {
        Self {
            max_memory: limits.max_memory,
            used: 0,
            components: 1,
        }
    }

    /// The store holds `n` component instances (a middleware chain's hops):
    /// `max_memory` still bounds all their memories together.
    pub(crate) fn components(&mut self, n: usize) {
        self.components = n.max(1);
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.max_memory {
            // A trap, not a failed `memory.grow`: most guests cannot recover
            // from running out of memory, and the trap says why.
            return Err(MemoryExhausted {
                desired: total,
                limit: self.max_memory,
            }
            .into());
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES * self.components
    }

    fn tables(&self) -> usize {
        MAX_TABLES * self.components
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES * self.components
    }
}
