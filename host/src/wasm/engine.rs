//! The process-wide WebAssembly engine and linker, and loading a component:
//! read, check it is a `wasi:http` component, compile, pre-instantiate.

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig, Precompiled};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::cache::CompileCache;
use super::check::Report;
use super::ctx::GuestCtx;
use super::limits::EpochTicker;
use super::pre::GuestPre;
use crate::error::{BoxError, Error};

/// The interface a component must export to be served, without its version:
/// any `wasi:http/incoming-handler@0.2.x` is accepted.
const HANDLER_INTERFACE: &str = "wasi:http/incoming-handler@0.2";

/// The process-wide WebAssembly engine, and the linker that gives guests
/// the host's WASI and `wasi:http` implementations.
///
/// Create one per process and load every component through it.
#[derive(Clone)]
pub struct Engine {
    engine: wasmtime::Engine,
    linker: Arc<Linker<GuestCtx>>,
    /// Shared with every handler: it must tick while any can run.
    ticker: Arc<EpochTicker>,
    pooled: bool,
    cache: Option<Arc<CompileCache>>,
}

/// Instances preallocated in a pool (wasmtime's pooling allocator): a
/// request then takes a ready slot instead of mapping fresh memory, and
/// memory that stays resident between requests is reset, not faulted in
/// again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Instances alive at once; give it the server's
    /// `max_concurrent_requests` (`config::ServerSettings::pool` does).
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

impl Engine {
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

    /// Keeps compiled components in `dir`, keyed by the component's SHA-256
    /// and the engine's configuration, so a component is compiled once and
    /// loaded in milliseconds afterwards. The folder is created (mode 0700)
    /// when first written; its files are native code that catshost runs:
    /// give it a folder only you can write.
    pub fn with_compile_cache(mut self, dir: std::path::PathBuf) -> Self {
        self.cache = Some(Arc::new(CompileCache::new(dir)));
        self
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
                    error = %crate::log::chain(&error),
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
                .async_stack_keep_resident(STACK_KEEP_RESIDENT)
                // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only
                // the pages the guest dirtied instead of all it kept: the
                // Rust hello (17 pages) went from 57 to 27 us per request
                // (bench/README.md).
                .pagemap_scan(wasmtime::Enabled::Auto);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        }
        // Components are compiled once at start: use every core for it.
        config.parallel_compilation(true);
        // Guests that compute without calling the host yield every epoch
        // tick, so request deadlines hold and no worker thread is pinned.
        config.epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config).map_err(|e| Error::Engine(e.into()))?;
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
            ticker: Arc::new(ticker),
            pooled: pool.is_some(),
            cache: None,
        })
    }

    /// Loads the component at `path`: a binary component (`.wasm`) or one in
    /// the text format (`.wat`).
    pub fn load_file(&self, path: &Path) -> Result<GuestPre, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::ReadComponent {
            path: path.into(),
            source,
        })?;
        self.load_bytes(&path.display().to_string(), &bytes)
    }

    /// Loads a component from memory. `name` names it in errors and logs.
    ///
    /// `bytes` may be a binary component, one in the text format, or one
    /// precompiled by [`Engine::precompile`] (`catshost compile`): only
    /// load precompiled bytes you made yourself, wasmtime runs them as
    /// native code.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<GuestPre, Error> {
        let component = self.compile(name, bytes)?;
        self.check_exports(name, &component)?;
        let pre = self.pre_instantiate(name, &component)?;
        Ok(GuestPre::new(name, pre, self.ticker.clone()))
    }

    /// What `bytes` export and import, against what catshost serves and
    /// provides (`catshost check`).
    pub fn check(&self, name: &str, bytes: &[u8]) -> Result<Report, Error> {
        let component = self.compile(name, bytes)?;
        let mut report = Report::new(&self.engine, &component);
        if let Err(error) = self.pre_instantiate(name, &component) {
            report.link_error = Some(crate::log::chain(&error));
        }
        Ok(report)
    }

    /// Compiles `bytes` to native code for this runtime's engine, checked
    /// to be servable: what `catshost compile` writes to a `.cwasm` file.
    pub fn precompile(&self, name: &str, bytes: &[u8]) -> Result<Vec<u8>, Error> {
        let binary = to_binary(name, bytes)?;
        let compiled = self
            .engine
            .precompile_component(&binary)
            .map_err(|e| compile_error(name, e))?;
        // SAFETY: `compiled` was made just now by this engine.
        let component = unsafe { Component::deserialize(&self.engine, &compiled) }
            .map_err(|e| compile_error(name, e))?;
        self.check_exports(name, &component)?;
        self.pre_instantiate(name, &component)?;
        Ok(compiled)
    }

    /// The compiled component: deserialized when `bytes` are precompiled,
    /// from the compile cache when it has them, else compiled (and cached).
    fn compile(&self, name: &str, bytes: &[u8]) -> Result<Component, Error> {
        match wasmtime::Engine::detect_precompiled(bytes) {
            Some(Precompiled::Component) => {
                // SAFETY: precompiled bytes are native code that wasmtime
                // trusts; `load_bytes` documents that only the user's own
                // `catshost compile` output may be given. Bytes from another
                // engine version or configuration are refused by wasmtime.
                return unsafe { Component::deserialize(&self.engine, bytes) }.map_err(|e| {
                    Error::Precompiled {
                        name: name.into(),
                        source: e.into(),
                    }
                });
            }
            Some(Precompiled::Module) => {
                return Err(Error::NotAComponent {
                    name: name.into(),
                    what: "a precompiled core module",
                });
            }
            // Native code wasmtime cannot read: truncated, or from another
            // wasmtime.
            None if bytes.starts_with(b"\x7fELF") => {
                return Err(Error::Precompiled {
                    name: name.into(),
                    source: "not a component precompiled by this wasmtime".into(),
                });
            }
            None => {}
        }
        let binary = to_binary(name, bytes)?;
        let started = std::time::Instant::now();
        let (component, cached) = match &self.cache {
            Some(cache) => cache.compile(&self.engine, name, &binary)?,
            None => (
                Component::new(&self.engine, &binary).map_err(|e| compile_error(name, e))?,
                false,
            ),
        };
        let elapsed_ms = crate::log::millis(started.elapsed());
        if cached {
            tracing::info!(
                component = name,
                size = binary.len(),
                elapsed_ms,
                "component loaded from the compile cache"
            );
        } else {
            tracing::info!(
                component = name,
                size = binary.len(),
                elapsed_ms,
                "component compiled"
            );
        }
        Ok(component)
    }

    fn pre_instantiate(
        &self,
        name: &str,
        component: &Component,
    ) -> Result<ProxyPre<GuestCtx>, Error> {
        self.linker
            .instantiate_pre(component)
            .and_then(ProxyPre::new)
            .map_err(|e| {
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

/// The binary component of `bytes`: as they are, or parsed from the text
/// format; refused when they are not a component.
fn to_binary<'a>(name: &str, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, Error> {
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
    Ok(binary)
}

fn compile_error(name: &str, error: wasmtime::Error) -> Error {
    Error::Compile {
        name: name.into(),
        source: error.into(),
    }
}

/// `bytes` as text if they look like WebAssembly text: UTF-8 whose first
/// token opens an s-expression or a comment.
fn as_wat_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    let start = text.trim_start();
    (start.starts_with('(') || start.starts_with(";;")).then_some(text)
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}
