//! Builds `wasi:http` components from core-module WAT and the WIT in `wit/`.
//!
//! No `wasm32` Rust target is available on the machines this project is built
//! on, so the host's embedded demo and the test fixtures are written as core
//! WebAssembly text against the canonical ABI of the `catshost:guest/handler`
//! world and turned into components here with the `wat` and `wit-component`
//! crates: the same thing `wasm-tools component embed` + `component new` do.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{ManglingAndAbi, Resolve, WorldId};

/// The world every catshost guest targets, as named in `wit/world.wit`.
pub const DEFAULT_WORLD: &str = "catshost:guest/handler";

/// The workspace's `wit/` folder.
pub fn wit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit")
}

/// The shared prelude of every WAT guest in this project: the imports, memory,
/// allocator and helpers that guests are written with.
pub fn prelude_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prelude.wat")
}

/// The text of [`prelude_path`], built into this crate.
pub const PRELUDE: &str = include_str!("../prelude.wat");

/// The parsed WIT of `wit/` with the world guests are built against.
pub struct Wit {
    resolve: Resolve,
    world: WorldId,
}

impl Wit {
    /// Parses the WIT folder `dir` and selects `world` in it.
    pub fn load(dir: &Path, world: &str) -> Result<Self> {
        let mut resolve = Resolve::default();
        let (package, _) = resolve
            .push_dir(dir)
            .with_context(|| format!("failed to parse the WIT in '{}'", dir.display()))?;
        let world = resolve.select_world(&[package], Some(world))?;
        Ok(Self { resolve, world })
    }

    /// Parses this workspace's `wit/` with [`DEFAULT_WORLD`].
    pub fn workspace() -> Result<Self> {
        Self::load(&wit_dir(), DEFAULT_WORLD)
    }

    /// Builds a component from a guest written in WAT: the fields of a core
    /// module (functions, data, exports) that are placed after [`PRELUDE`]
    /// inside `(module ...)`. The module implements the world with the legacy
    /// (`wasm-tools component embed`) name mangling.
    pub fn component_from_wat(&self, guest: &str) -> Result<Vec<u8>> {
        let wat = format!("(module\n{PRELUDE}\n{guest}\n)");
        let mut module = wat::parse_str(&wat).context("the core module text does not parse")?;
        wit_component::embed_component_metadata(
            &mut module,
            &self.resolve,
            self.world,
            StringEncoding::UTF8,
            // The legacy (`wasm-tools component embed`) names the prelude uses.
            false,
        )?;
        ComponentEncoder::default()
            .validate(true)
            .module(&module)?
            .encode()
            .context("the core module does not fit the world")
    }

    /// Builds a component from a core-module WAT file.
    pub fn component_from_wat_file(&self, path: &Path) -> Result<Vec<u8>> {
        let wat = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read '{}'", path.display()))?;
        self.component_from_wat(&wat)
            .with_context(|| format!("failed to build a component from '{}'", path.display()))
    }

    /// The text of a core module with every import of the world and empty
    /// exports: the signatures to write a WAT guest against.
    pub fn import_signatures(&self) -> Result<String> {
        let module = wit_component::dummy_module(
            &self.resolve,
            self.world,
            ManglingAndAbi::Legacy(wit_parser::LiftLowerAbi::Sync),
        );
        wasmprinter::print_bytes(module)
    }
}

/// Prints a component (or module) in the text format.
pub fn to_text(wasm: &[u8]) -> Result<String> {
    wasmprinter::print_bytes(wasm)
}
