//! The engine and linker, and loading a component: read, check it is a
//! `wasi:http` component, compile, pre-instantiate.

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::ctx::GuestCtx;
use super::handler::Handler;
use super::limits::EpochTicker;
use crate::error::{BoxError, Error};

/// The interface a component must export to be served, without its version:
/// any `wasi:http/incoming-handler@0.2.x` is accepted.
const HANDLER_INTERFACE: &str = "wasi:http/incoming-handler@0.2";

/// The process-wide WebAssembly runtime: an engine and the linker that gives
/// guests the host's WASI and `wasi:http` implementations.
///
/// Create one per process and load every component through it.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<GuestCtx>>,
    /// Shared with every handler: it must tick while any can run.
    _ticker: Arc<EpochTicker>,
    pooled: bool,
}

/// Instances preallocated in a pool (wasmtime's pooling allocator): a
/// request then takes a ready slot instead of mapping fresh memory, and
/// memory that stays resident between requests is reset, not faulted in
/// again.
#[derive(Clone, Copy, Debug)]
pub struct Pool {
    /// Instances alive at once; give it the server's
    /// `max_concurrent_requests`.
    pub instances: u32,
    /// The largest linear memory of an instance; give it the server's
    /// `max_memory`.
    pub max_memory: usize,
}

/// Per slot, bytes of linear memory, table and async stack kept mapped
/// between instances: reset with `memset` (or `pagemap_scan`) instead of
/// page faults on the next request.
const KEEP_RESIDENT: usize = 1 << 20;
const STACK_KEEP_RESIDENT: usize = 256 << 10;
/// Core instances one component may hold: wit-component's shims add a few to
/// each module, and language runtimes bring several modules.
const CORE_INSTANCES_PER_COMPONENT: u32 = 50;

impl Runtime {
    /// A runtime that allocates instance memory on demand (the simplest
    /// setup, and the one for many small servers in one process).
    pub fn new() -> Result<Self, Error> {
        Self::build(None)
    }

    /// A runtime with an instance pool, or on-demand allocation (logged)
    /// when the address space cannot hold the pool.
    pub fn with_pool(pool: Pool) -> Result<Self, Error> {
        Self::build(Some(pool))
    }

    /// Whether instances come from a pool.
    pub fn is_pooled(&self) -> bool {
        self.pooled
    }

    fn build(pool: Option<Pool>) -> Result<Self, Error> {
        if let Some(pool) = pool {
            match Self::with_config(Some(pool)) {
                Ok(runtime) => return Ok(runtime),
                Err(error) => tracing::warn!(
                    error = %crate::error::chain(&error),
                    "the instance pool does not fit this machine's address space: allocating on demand"
                ),
            }
        }
        Self::with_config(None)
    }

    fn with_config(pool: Option<Pool>) -> Result<Self, Error> {
        let mut config = Config::new();
        if let Some(pool) = pool {
            let instances = pool.instances.max(1);
            let mut pooling = PoolingAllocationConfig::new();
            pooling
                .total_component_instances(instances)
                .total_core_instances(instances.saturating_mul(8))
                .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
                .total_memories(instances.saturating_mul(2))
                .total_tables(instances.saturating_mul(4))
                .total_stacks(instances)
                .max_memory_size(pool.max_memory)
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(KEEP_RESIDENT)
                .async_stack_keep_resident(STACK_KEEP_RESIDENT);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        }
        // Components are compiled once at start: use every core for it.
        config.parallel_compilation(true);
        // Guests that compute without calling the host yield every epoch
        // tick, so request deadlines hold and no worker thread is pinned.
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| Error::Engine(e.into()))?;
        let ticker = EpochTicker::start(engine.clone()).map_err(|e| Error::Engine(e.into()))?;

        let mut linker = Linker::new(&engine);
        // The whole WASI 0.2 command surface, not just the proxy world:
        // components from componentize-py and ComponentizeJS import it. The
        // store's `WasiCtx` grants nothing (no preopens, no sockets, no host
        // environment), so the extra imports give no access by themselves.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .map_err(|e| Error::Engine(e.into()))?;

        Ok(Self {
            engine,
            linker: Arc::new(linker),
            _ticker: Arc::new(ticker),
            pooled: pool.is_some(),
        })
    }

    /// The engine every component of this runtime is compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads the component at `path`: a binary component (`.wasm`) or one in
    /// the text format (`.wat`).
    pub fn load_file(&self, path: &Path) -> Result<Handler, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::ReadComponent {
            path: path.into(),
            source,
        })?;
        self.load_bytes(&path.display().to_string(), &bytes)
    }

    /// Loads a component from memory. `name` names it in errors and logs.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Handler, Error> {
        let binary = if bytes.starts_with(b"\0asm") {
            std::borrow::Cow::Borrowed(bytes)
        } else if let Some(text) = as_wat_text(bytes) {
            std::borrow::Cow::Owned(wat::parse_str(text).map_err(|source| Error::Wat {
                name: name.into(),
                source,
            })?)
        } else {
            return Err(Error::NotAComponent {
                name: name.into(),
                what: "not WebAssembly",
            });
        };
        if !wasmparser::Parser::is_component(&binary) {
            return Err(Error::NotAComponent {
                name: name.into(),
                what: if wasmparser::Parser::is_core_wasm(&binary) {
                    "a core WebAssembly module"
                } else {
                    "not WebAssembly"
                },
            });
        }
        let started = std::time::Instant::now();
        let component = Component::new(&self.engine, &binary).map_err(|e| Error::Compile {
            name: name.into(),
            source: e.into(),
        })?;
        tracing::info!(
            component = name,
            size = binary.len(),
            elapsed_ms = crate::http::millis(started.elapsed()),
            "component compiled"
        );
        self.check_exports(name, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(ProxyPre::new)
            .map_err(|e| Error::Link {
                name: name.into(),
                source: BoxError::from(e),
            })?;
        Ok(Handler::new(name, pre, self._ticker.clone()))
    }

    fn check_exports(&self, name: &str, component: &Component) -> Result<(), Error> {
        let ty = component.component_type();
        let mut exports = Vec::new();
        for (export, item) in ty.exports(&self.engine) {
            if export.starts_with(HANDLER_INTERFACE)
                && matches!(item.ty, ComponentItem::ComponentInstance(_))
            {
                return Ok(());
            }
            exports.push(export.to_string());
        }
        Err(Error::NoHandlerExport {
            name: name.into(),
            exports: if exports.is_empty() {
                "nothing".into()
            } else {
                exports.join(", ")
            },
        })
    }
}

/// `bytes` as text if they look like WebAssembly text: UTF-8 whose first
/// token opens an s-expression or a comment.
fn as_wat_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    let start = text.trim_start();
    (start.starts_with('(') || start.starts_with(";;")).then_some(text)
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}
