//! The compile cache: compiled components on disk, content-addressed by the
//! component's SHA-256 and the engine's compatibility hash (wasmtime
//! version, compiler settings, tunables), so a changed component, catshost
//! or configuration never loads a stale entry.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::Error;

/// A folder of `.cwasm` files.
#[derive(Debug)]
pub(crate) struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The compiled `binary`, from the cache (`true`) or compiled now and
    /// stored (`false`). A cache that cannot be read or written is logged
    /// and compiled around, never an error.
    pub(crate) fn compile(
        &self,
        engine: &Engine,
        name: &str,
        binary: &[u8],
    ) -> Result<(Component, bool), Error> {
        let path = self.dir.join(format!("{}.cwasm", key(engine, binary)));
        if path.is_file() {
            // SAFETY: entries are written only by `store` below, from
            // `Engine::precompile_component`, into a folder the user gave
            // catshost for this (see `Runtime::with_compile_cache`), under a
            // name that includes the engine's compatibility hash.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, true)),
                Err(error) => tracing::warn!(
                    path = %path.display(),
                    error = %error,
                    "ignoring a compile cache entry that does not load: compiling again"
                ),
            }
        }
        let compiled = engine
            .precompile_component(binary)
            .map_err(|e| Error::Compile {
                name: name.into(),
                source: e.into(),
            })?;
        if let Err(error) = self.store(&path, &compiled) {
            tracing::warn!(dir = %self.dir.display(), %error, "failed to write to the compile cache");
        }
        // SAFETY: `compiled` was made just now by this engine.
        let component =
            unsafe { Component::deserialize(engine, &compiled) }.map_err(|e| Error::Compile {
                name: name.into(),
                source: e.into(),
            })?;
        Ok((component, false))
    }

    /// Writes an entry whole or not at all: another catshost starting at the
    /// same time never reads half of one.
    fn store(&self, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let mut partial = path.as_os_str().to_owned();
        partial.push(format!(".{}.partial", std::process::id()));
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(compiled)?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
    }
}

/// `SHA256-COMPAT`, in hex.
fn key(engine: &Engine, binary: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, binary);
    let mut hex = String::with_capacity(64 + 17);
    for byte in digest.as_ref() {
        hex.push_str(&format!("{byte:02x}"));
    }
    // SipHash with fixed keys: the same for the same build of catshost,
    // which is all a compatibility hash from wasmtime needs to be.
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{hex}-{:016x}", hasher.finish())
}
