//! One wasmtime engine for components of one WASI version: its
//! configuration (the instance pool, the features guests may use, epoch
//! interruption), its linker, its epoch ticker, and pre-instantiating a
//! component with it.

use std::sync::Arc;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::handler::ProxyPre;

use super::check::Report;
use super::component::Wasi;
use super::ticker::EpochTicker;
use super::websocket_wit;
use crate::config::Pool;
use crate::error::{BoxError, Error};
use crate::wasm::guest::{GuestCtx, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES};

/// One wasmtime engine, its linker and its epoch.
#[derive(Clone)]
pub(super) struct WasiEngine {
    pub(super) engine: wasmtime::Engine,
    linker: Arc<Linker<GuestCtx>>,
    /// Shared with every component: it must tick while any can run.
    pub(super) ticker: Arc<EpochTicker>,
    pub(super) pooled: bool,
}

/// Per slot, bytes of linear memory, table and async stack kept mapped
/// between instances: reset with `memset` (or `pagemap_scan`) instead of
/// page faults on the next request.
const KEEP_RESIDENT: usize = 1 << 20;
/// Of an async stack, zeroed between uses: the top (a request's calls use a
/// few KiB) is cleared with `memset`, the rest returned to the kernel.
const STACK_KEEP_RESIDENT: usize = 64 << 10;
/// Core instances one component may hold: wit-component's shims add a few to
/// each module, and language runtimes bring several modules.
const CORE_INSTANCES_PER_COMPONENT: u32 = 50;

impl WasiEngine {
    /// The engine for `wasi` components, with an instance pool when `pool`
    /// is given and the address space can hold it (else allocating on
    /// demand, logged).
    pub(super) fn build(pool: Option<Pool>, wasi: Wasi) -> Result<Self, Error> {
        if let Some(pool) = pool {
            match Self::with_config(Some(pool), wasi) {
                Ok(wasi_engine) => return Ok(wasi_engine),
                Err(error) => tracing::warn!(
                    target: "catshost::wasm::engine",
                    error = %crate::log::chain(&error),
                    wasi = wasi.as_str(),
                    "the instance pool does not fit this machine's address space: allocating on demand"
                ),
            }
        }
        Self::with_config(None, wasi)
    }

    fn with_config(pool: Option<Pool>, wasi: Wasi) -> Result<Self, Error> {
        let engine =
            wasmtime::Engine::new(&config(pool, wasi)).map_err(|e| Error::Engine(e.into()))?;
        let ticker = EpochTicker::start(engine.clone()).map_err(|e| Error::Engine(e.into()))?;
        let linker = linker(&engine, wasi).map_err(|e| Error::Engine(e.into()))?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            ticker: Arc::new(ticker),
            pooled: pool.is_some(),
        })
    }

    pub(super) fn pre_instantiate(
        &self,
        name: &str,
        component: &Component,
        wasi: Wasi,
    ) -> Result<ProxyPre<GuestCtx>, Error> {
        self.pre_instantiate_with(&self.linker, name, component, wasi)
    }

    /// The linker of the middleware at `position` of a chain (WASI 0.3
    /// only): its `wasi:http/handler` import calls the next hop.
    pub(super) fn middleware_linker(&self, position: usize) -> Result<Linker<GuestCtx>, Error> {
        super::chain::linker_at(&self.linker, position).map_err(|e| Error::Engine(e.into()))
    }

    pub(super) fn pre_instantiate_with(
        &self,
        linker: &Linker<GuestCtx>,
        name: &str,
        component: &Component,
        wasi: Wasi,
    ) -> Result<ProxyPre<GuestCtx>, Error> {
        let pre = linker.instantiate_pre(component);
        let pre = match wasi {
            Wasi::P2 => pre.and_then(|pre| {
                wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre).map(ProxyPre::P2)
            }),
            Wasi::P3 => pre.and_then(|pre| {
                wasmtime_wasi_http::p3::bindings::ServicePre::new(pre).map(ProxyPre::P3)
            }),
        };
        pre.map_err(|e| {
            let report = Report::new(&self.engine, component);
            let missing: Vec<String> = report
                .missing()
                .map(|i| format!("{} ({})", i.name, i.missing.as_deref().unwrap_or("")))
                .collect();
            Error::Link {
                name: name.into(),
                missing: if missing.is_empty() {
                    "every import is provided by name, but not as the component needs it".into()
                } else {
                    missing.join(", ")
                },
                source: BoxError::from(e),
            }
        })
    }
}

/// The configuration of the engine for `wasi` components: an instance pool
/// when `pool` is given, the features guests use, epoch interruption.
fn config(pool: Option<Pool>, wasi: Wasi) -> Config {
    let mut config = Config::new();
    if let Some(pool) = pool {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(pool)));
    }
    match wasi {
        // Without the async ABI: a WASI 0.2 component cannot use it,
        // and none of its unfinished code is reachable.
        Wasi::P2 => config
            .wasm_component_model_async(false)
            .concurrency_support(false),
        Wasi::P3 => config
            .wasm_component_model_async(true)
            .concurrency_support(true),
    };
    // Features wasi:http guests do not use are refused at compile time,
    // so their code in wasmtime is out of reach: threads and shared
    // memory (a store is one request's, on one thread), GC and typed
    // function references, 64-bit memories (a guest's memory is at most
    // 4 GiB), stack switching. Kept: what compilers emit today (SIMD and
    // relaxed SIMD, bulk memory, reference types, multi-value, tail
    // calls, exceptions from newer toolchains) and multi-memory
    // (components fuse several modules' memories).
    config
        .wasm_threads(false)
        .wasm_shared_everything_threads(false)
        .wasm_gc(false)
        .wasm_function_references(false)
        .wasm_memory64(false)
        .wasm_stack_switching(false)
        .wasm_custom_page_sizes(false);
    // A pooled async stack is zeroed between uses: nothing of one
    // request's stack is seen by the next tenant's.
    config.async_stack_zeroing(true);
    // Components are compiled once at start: use every core for it.
    config.parallel_compilation(true);
    // Guests that compute without calling the host yield every epoch
    // tick, so request deadlines hold and no worker thread is pinned.
    config.epoch_interruption(true);
    config
}

/// The slots of the instance pool for `pool`.
fn pooling(pool: Pool) -> PoolingAllocationConfig {
    let instances = pool.instances.max(1);
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(8))
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        // A component of many modules gets no more slots than its
        // share: every memory and table beyond these is refused.
        .max_memories_per_component(MAX_MEMORIES as u32)
        .max_tables_per_component(MAX_TABLES as u32)
        .table_elements(MAX_TABLE_ELEMENTS)
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_memory_size(pool.max_memory)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .async_stack_keep_resident(STACK_KEEP_RESIDENT)
        // Reuse the slots a component used before (least recently
        // used first) rather than warm up new ones: the slots ever
        // used, each keeping what it keeps resident, stay as many
        // as were ever in use at once. wasmtime's default (100
        // unused warm slots) kept a Python component's RSS at 600+
        // MiB under load (bench/REUSE.md).
        .max_unused_warm_slots(0)
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only
        // the pages the guest dirtied instead of all it kept: the
        // Rust hello (17 pages) went from 57 to 27 us per request
        // (bench/README.md).
        .pagemap_scan(wasmtime::Enabled::Auto);
    pooling
}

/// The linker of `wasi` components: the host's WASI, `wasi:http` and (WASI
/// 0.2) `catshost:websocket/sockets`.
fn linker(engine: &wasmtime::Engine, wasi: Wasi) -> wasmtime::Result<Linker<GuestCtx>> {
    let mut linker = Linker::new(engine);
    // The whole WASI command surface, not just the proxy world:
    // components from componentize-py and ComponentizeJS import it. The
    // store's `WasiCtx` grants nothing (no preopens, no sockets, no host
    // environment), so the extra imports give no access by themselves.
    // WASI 0.3 components may import WASI 0.2 interfaces too.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    match wasi {
        Wasi::P2 => websocket_wit::add_to_linker(&mut linker)?,
        Wasi::P3 => {
            wasmtime_wasi::p3::add_to_linker(&mut linker)?;
            wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        }
    }
    Ok(linker)
}
