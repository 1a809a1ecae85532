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
        if let Err(why) = self.trusted() {
            tracing::warn!(dir = %self.dir.display(), why, "not using the compile cache: compiling");
            let component = Component::new(engine, binary).map_err(|e| Error::Compile {
                name: name.into(),
                source: e.into(),
            })?;
            return Ok((component, false));
        }
        let path = self.dir.join(format!("{}.cwasm", key(engine, binary)));
        if path.is_file() {
            // SAFETY: entries are written only by `store` below, from
            // `Engine::precompile_component`, under a name that includes the
            // engine's compatibility hash, into a folder that `trusted` found
            // owned by this user and writable by nobody else.
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

    /// Whether entries in the folder can be trusted: it is created (mode
    /// 0700) if missing; an existing one must belong to this user and be
    /// writable by nobody else, or anyone who can write to it could have
    /// catshost run their native code.
    fn trusted(&self) -> Result<(), &'static str> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|_| "the folder cannot be created")?;
        let meta = std::fs::metadata(&self.dir).map_err(|_| "the folder cannot be read")?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        if meta.uid() != uid {
            return Err("the folder belongs to another user");
        }
        if meta.mode() & 0o022 != 0 {
            return Err("the folder is writable by other users");
        }
        Ok(())
    }

    /// Writes an entry whole or not at all: another catshost starting at the
    /// same time never reads half of one, and a failed write leaves nothing.
    fn store(&self, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(format!(".{}.partial", std::process::id()));
        let written = std::fs::File::create(&partial)
            .and_then(|mut file| {
                file.write_all(compiled)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&partial, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written
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
