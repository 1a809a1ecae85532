//! The process-wide WebAssembly engines and linkers, and loading a
//! component: read, check it is a `wasi:http` component, compile,
//! pre-instantiate.
//!
//! WASI 0.2 components run on an engine with the component model's async
//! ABI turned off; WASI 0.3 components need it, and get an engine of their
//! own, made the first time one is loaded. wasmtime 48 calls that ABI "very
//! incomplete" and its p3 modules unstable: a process that serves only WASI
//! 0.2 components never turns it on (docs/reuse.md).

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::handler::ProxyPre;

use super::cache::CompileCache;
use super::check::Report;
use super::component::{Wasi, check_exports, to_binary, wasi_of};
use super::pre::GuestPre;
use super::ticker::EpochTicker;
use super::websocket_wit;
use crate::config::Pool;
use crate::error::{BoxError, Error};
use crate::wasm::guest::{GuestCtx, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES};

/// The process-wide WebAssembly engines, and the linkers that give guests
/// the host's WASI and `wasi:http` implementations.
///
/// Create one per process and load every component through it.
#[derive(Clone)]
pub struct Engine {
    p2: Flavour,
    /// Made when the first WASI 0.3 component is loaded.
    p3: Arc<std::sync::OnceLock<Result<Flavour, String>>>,
    pool: Option<Pool>,
    cache: Option<Arc<CompileCache>>,
}

/// One wasmtime engine, its linker and its epoch.
#[derive(Clone)]
struct Flavour {
    engine: wasmtime::Engine,
    linker: Arc<Linker<GuestCtx>>,
    /// Shared with every component: it must tick while any can run.
    ticker: Arc<EpochTicker>,
    pooled: bool,
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
        self.p2.pooled
    }

    fn build(pool: Option<Pool>) -> Result<Self, Error> {
        Ok(Self {
            p2: Flavour::build(pool, Wasi::P2)?,
            p3: Arc::default(),
            pool,
            cache: None,
        })
    }

    /// The engine for components of `wasi`, made when first asked for.
    fn flavour(&self, wasi: Wasi) -> Result<&Flavour, Error> {
        match wasi {
            Wasi::P2 => Ok(&self.p2),
            Wasi::P3 => self
                .p3
                .get_or_init(|| {
                    Flavour::build(self.pool, Wasi::P3).map_err(|e| crate::log::chain(&e))
                })
                .as_ref()
                .map_err(|e| Error::Engine(e.clone().into())),
        }
    }

    /// Loads the component at `path`: a binary component (`.wasm`) or one in
    /// the text format (`.wat`). Precompiled native code (a `.cwasm`) is
    /// refused: see [`Engine::load_file_allowing_precompiled`].
    pub fn load_file(&self, path: &Path) -> Result<GuestPre, Error> {
        let bytes = read_component(path)?;
        self.load(&path.display().to_string(), &bytes, Precompiled::Refuse)
    }

    /// Loads a component from memory: a binary component or one in the text
    /// format. `name` names it in errors and logs. Precompiled native code
    /// is refused: see [`Engine::load_bytes_allowing_precompiled`].
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<GuestPre, Error> {
        self.load(name, bytes, Precompiled::Refuse)
    }

    /// [`Engine::load_file`], also loading a component precompiled by
    /// [`Engine::precompile`] (`catshost compile`).
    ///
    /// # Safety
    ///
    /// Precompiled bytes are native code that wasmtime runs without checking
    /// it: whoever wrote the file runs code in this process, outside the
    /// sandbox. The file must be one this program's own `precompile` wrote,
    /// kept where nobody else can change it.
    pub unsafe fn load_file_allowing_precompiled(&self, path: &Path) -> Result<GuestPre, Error> {
        let bytes = read_component(path)?;
        self.load(&path.display().to_string(), &bytes, Precompiled::Allow)
    }

    /// [`Engine::load_bytes`], also loading a component precompiled by
    /// [`Engine::precompile`] (`catshost compile`).
    ///
    /// # Safety
    ///
    /// As for [`Engine::load_file_allowing_precompiled`]: precompiled
    /// `bytes` must be this program's own `precompile` output.
    pub unsafe fn load_bytes_allowing_precompiled(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<GuestPre, Error> {
        self.load(name, bytes, Precompiled::Allow)
    }

    /// Whether `bytes` are precompiled native code (what the `unsafe`
    /// loaders alone take).
    pub fn is_precompiled(bytes: &[u8]) -> bool {
        wasmtime::Engine::detect_precompiled(bytes).is_some() || bytes.starts_with(b"\x7fELF")
    }

    fn load(&self, name: &str, bytes: &[u8], precompiled: Precompiled) -> Result<GuestPre, Error> {
        let (wasi, component) = self.compile(name, bytes, precompiled)?;
        let flavour = self.flavour(wasi)?;
        check_exports(&flavour.engine, name, &component)?;
        let pre = flavour.pre_instantiate(name, &component, wasi)?;
        let websocket = websocket_wit::handler_pre(&flavour.engine, name, &component, &pre)?;
        Ok(GuestPre::new(name, pre, websocket, flavour.ticker.clone()))
    }

    /// What `bytes` export and import, against what catshost serves and
    /// provides (`catshost check`).
    /// Precompiled native code is refused, as [`Engine::load_bytes`] does.
    pub fn check(&self, name: &str, bytes: &[u8]) -> Result<Report, Error> {
        let (wasi, component) = self.compile(name, bytes, Precompiled::Refuse)?;
        let flavour = self.flavour(wasi)?;
        let mut report = Report::new(&flavour.engine, &component);
        if let Err(error) = flavour.pre_instantiate(name, &component, wasi) {
            report.link_error = Some(crate::log::chain(&error));
        }
        Ok(report)
    }

    /// Compiles `bytes` to native code for the engine of its WASI version,
    /// checked to be servable: what `catshost compile` writes to a `.cwasm`
    /// file.
    pub fn precompile(&self, name: &str, bytes: &[u8]) -> Result<Vec<u8>, Error> {
        let binary = to_binary(name, bytes)?;
        let wasi = wasi_of(&binary);
        let flavour = self.flavour(wasi)?;
        let compiled = flavour
            .engine
            .precompile_component(&binary)
            .map_err(|e| compile_error(name, e))?;
        // SAFETY: `compiled` was made just now by this engine.
        let component = unsafe { Component::deserialize(&flavour.engine, &compiled) }
            .map_err(|e| compile_error(name, e))?;
        check_exports(&flavour.engine, name, &component)?;
        flavour.pre_instantiate(name, &component, wasi)?;
        Ok(compiled)
    }

    /// The compiled component and the WASI version it is served as:
    /// deserialized when `bytes` are precompiled (and `precompiled` allows
    /// them), from the compile cache when it has them, else compiled (and
    /// cached).
    fn compile(
        &self,
        name: &str,
        bytes: &[u8],
        precompiled: Precompiled,
    ) -> Result<(Wasi, Component), Error> {
        match wasmtime::Engine::detect_precompiled(bytes) {
            Some(wasmtime::Precompiled::Component) => {
                return match precompiled {
                    Precompiled::Allow => self.deserialize(name, bytes),
                    Precompiled::Refuse => Err(Error::PrecompiledRefused { name: name.into() }),
                };
            }
            Some(wasmtime::Precompiled::Module) => {
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
        let wasi = wasi_of(&binary);
        let engine = &self.flavour(wasi)?.engine;
        let started = std::time::Instant::now();
        let (component, cached) = match &self.cache {
            Some(cache) => cache.compile(engine, name, &binary)?,
            None => (
                Component::new(engine, &binary).map_err(|e| compile_error(name, e))?,
                false,
            ),
        };
        let elapsed_ms = crate::log::millis(started.elapsed());
        let wasi_version = wasi.as_str();
        if cached {
            tracing::info!(
                target: "catshost::wasm::engine",
                component = name,
                size = binary.len(),
                wasi = wasi_version,
                elapsed_ms,
                "component loaded from the compile cache"
            );
        } else {
            tracing::info!(
                target: "catshost::wasm::engine",
                component = name,
                size = binary.len(),
                wasi = wasi_version,
                elapsed_ms,
                "component compiled"
            );
        }
        Ok((wasi, component))
    }

    /// Precompiled bytes, for the engine they were compiled for: WASI 0.2's,
    /// else WASI 0.3's (their configurations differ, and wasmtime refuses
    /// bytes compiled for another).
    fn deserialize(&self, name: &str, bytes: &[u8]) -> Result<(Wasi, Component), Error> {
        // SAFETY: precompiled bytes are native code that wasmtime trusts;
        // only the `unsafe` loaders reach here, whose callers vouch for the
        // bytes. Bytes from another engine version or configuration are
        // refused by wasmtime.
        let p2 = match unsafe { Component::deserialize(&self.p2.engine, bytes) } {
            Ok(component) => return Ok((Wasi::P2, component)),
            Err(error) => error,
        };
        let p3 = self.flavour(Wasi::P3)?;
        // SAFETY: as above.
        match unsafe { Component::deserialize(&p3.engine, bytes) } {
            Ok(component) => Ok((Wasi::P3, component)),
            Err(_) => Err(Error::Precompiled {
                name: name.into(),
                source: p2.into(),
            }),
        }
    }
}

/// Whether a loader takes precompiled native code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Precompiled {
    Refuse,
    Allow,
}

/// The bytes of the component file at `path`.
fn read_component(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::ReadComponent {
        path: path.into(),
        source,
    })
}

impl Flavour {
    /// The engine for `wasi` components, with an instance pool when `pool`
    /// is given and the address space can hold it (else allocating on
    /// demand, logged).
    fn build(pool: Option<Pool>, wasi: Wasi) -> Result<Self, Error> {
        if let Some(pool) = pool {
            match Self::with_config(Some(pool), wasi) {
                Ok(flavour) => return Ok(flavour),
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
        let mut config = Config::new();
        if let Some(pool) = pool {
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
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
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
        let engine = wasmtime::Engine::new(&config).map_err(|e| Error::Engine(e.into()))?;
        let ticker = EpochTicker::start(engine.clone()).map_err(|e| Error::Engine(e.into()))?;

        let mut linker = Linker::new(&engine);
        // The whole WASI command surface, not just the proxy world:
        // components from componentize-py and ComponentizeJS import it. The
        // store's `WasiCtx` grants nothing (no preopens, no sockets, no host
        // environment), so the extra imports give no access by themselves.
        // WASI 0.3 components may import WASI 0.2 interfaces too.
        let linked = wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| match wasi {
                Wasi::P2 => websocket_wit::add_to_linker(&mut linker),
                Wasi::P3 => wasmtime_wasi::p3::add_to_linker(&mut linker)
                    .and_then(|()| wasmtime_wasi_http::p3::add_to_linker(&mut linker)),
            });
        linked.map_err(|e| Error::Engine(e.into()))?;

        Ok(Self {
            engine,
            linker: Arc::new(linker),
            ticker: Arc::new(ticker),
            pooled: pool.is_some(),
        })
    }

    fn pre_instantiate(
        &self,
        name: &str,
        component: &Component,
        wasi: Wasi,
    ) -> Result<ProxyPre<GuestCtx>, Error> {
        let pre = self.linker.instantiate_pre(component);
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

fn compile_error(name: &str, error: wasmtime::Error) -> Error {
    Error::Compile {
        name: name.into(),
        source: error.into(),
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}
