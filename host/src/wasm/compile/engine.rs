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

use wasmtime::component::Component;

use super::cache::CompileCache;
use super::check::Report;
use super::component::{Wasi, check_exports, to_binary, wasi_of};
use super::pre::GuestPre;
use super::wasi_engine::WasiEngine;
use super::websocket_wit;
use crate::config::Pool;
use crate::error::Error;

/// The process-wide WebAssembly engines, and the linkers that give guests
/// the host's WASI and `wasi:http` implementations.
///
/// Create one per process and load every component through it.
#[derive(Clone)]
pub struct Engine {
    p2: WasiEngine,
    /// Made when the first WASI 0.3 component is loaded.
    p3: Arc<std::sync::OnceLock<Result<WasiEngine, String>>>,
    pool: Option<Pool>,
    cache: Option<Arc<CompileCache>>,
}

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
            p2: WasiEngine::build(pool, Wasi::P2)?,
            p3: Arc::default(),
            pool,
            cache: None,
        })
    }

    /// The engine for components of `wasi`, made when first asked for.
    pub(super) fn wasi_engine(&self, wasi: Wasi) -> Result<&WasiEngine, Error> {
        match wasi {
            Wasi::P2 => Ok(&self.p2),
            Wasi::P3 => self
                .p3
                .get_or_init(|| {
                    WasiEngine::build(self.pool, Wasi::P3).map_err(|e| crate::log::chain(&e))
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
        let wasi_engine = self.wasi_engine(wasi)?;
        check_exports(&wasi_engine.engine, name, &component)?;
        if wasi == Wasi::P3 && super::chain::imports_handler(&wasi_engine.engine, &component) {
            return Err(Error::IsMiddleware { name: name.into() });
        }
        let pre = wasi_engine.pre_instantiate(name, &component, wasi)?;
        let websocket = websocket_wit::handler_pre(&wasi_engine.engine, name, &component, &pre)?;
        let image = component.image_range();
        Ok(GuestPre::new(
            name,
            pre,
            websocket,
            (image.end as usize).saturating_sub(image.start as usize),
            wasi_engine.ticker.clone(),
        ))
    }

    /// What `bytes` export and import, against what catshost serves and
    /// provides (`catshost check`).
    /// Precompiled native code is refused, as [`Engine::load_bytes`] does.
    pub fn check(&self, name: &str, bytes: &[u8]) -> Result<Report, Error> {
        let (wasi, component) = self.compile(name, bytes, Precompiled::Refuse)?;
        let wasi_engine = self.wasi_engine(wasi)?;
        let mut report = Report::new(&wasi_engine.engine, &component);
        // A middleware links with its next hop provided.
        let linked = match report.is_middleware() {
            true => wasi_engine.middleware_linker(0).and_then(|linker| {
                wasi_engine.pre_instantiate_with(&linker, name, &component, wasi)
            }),
            false => wasi_engine.pre_instantiate(name, &component, wasi),
        };
        if let Err(error) = linked {
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
        let wasi_engine = self.wasi_engine(wasi)?;
        let compiled = wasi_engine
            .engine
            .precompile_component(&binary)
            .map_err(|e| compile_error(name, e))?;
        // SAFETY: `compiled` was made just now by this engine.
        let component = unsafe { Component::deserialize(&wasi_engine.engine, &compiled) }
            .map_err(|e| compile_error(name, e))?;
        check_exports(&wasi_engine.engine, name, &component)?;
        // A middleware links with its next hop provided.
        if wasi == Wasi::P3 && super::chain::imports_handler(&wasi_engine.engine, &component) {
            let linker = wasi_engine.middleware_linker(0)?;
            wasi_engine.pre_instantiate_with(&linker, name, &component, wasi)?;
        } else {
            wasi_engine.pre_instantiate(name, &component, wasi)?;
        }
        Ok(compiled)
    }

    /// The compiled component and the WASI version it is served as:
    /// deserialized when `bytes` are precompiled (and `precompiled` allows
    /// them), from the compile cache when it has them, else compiled (and
    /// cached).
    pub(super) fn compile(
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
        let engine = &self.wasi_engine(wasi)?.engine;
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
        let p3 = self.wasi_engine(Wasi::P3)?;
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
pub(super) enum Precompiled {
    Refuse,
    Allow,
}

/// The bytes of the component file at `path`.
pub(super) fn read_component(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::ReadComponent {
        path: path.into(),
        source,
    })
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
