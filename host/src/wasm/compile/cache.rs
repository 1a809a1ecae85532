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
            tracing::warn!(target: "catshost::wasm::cache", dir = %self.dir.display(), why, "not using the compile cache: compiling");
            let component = Component::new(engine, binary).map_err(|e| Error::Compile {
                name: name.into(),
                source: e.into(),
            })?;
            return Ok((component, false));
        }
        let path = self.dir.join(format!("{}.cwasm", key(engine, binary)));
        match open_entry(&path) {
            Ok(None) => {}
            Ok(Some(entry)) => {
                // SAFETY: entries are written only by `store` below, from
                // `Engine::precompile_component`, under a name that includes
                // the engine's compatibility hash, into a folder that
                // `trusted` found owned by this user and writable by nobody
                // else; `open_entry` checked the file itself the same way,
                // and this is the file it opened (not the path again).
                match unsafe { deserialize_open(engine, &entry) } {
                    Ok(component) => return Ok((component, true)),
                    Err(error) => tracing::warn!(
                        target: "catshost::wasm::cache",
                        path = %path.display(),
                        error = %error,
                        "ignoring a compile cache entry that does not load: compiling again"
                    ),
                }
            }
            Err(why) => tracing::warn!(
                target: "catshost::wasm::cache",
                path = %path.display(),
                why,
                "ignoring a compile cache entry that cannot be trusted: compiling again"
            ),
        }
        let compiled = engine
            .precompile_component(binary)
            .map_err(|e| Error::Compile {
                name: name.into(),
                source: e.into(),
            })?;
        match self.store(&path, &compiled) {
            // Mapped from the entry just written, as a later load would be.
            Ok(()) => {
                if let Ok(Some(entry)) = open_entry(&path) {
                    // SAFETY: as above: the entry was written just now, by
                    // `store`, and checked once open.
                    if let Ok(component) = unsafe { deserialize_open(engine, &entry) } {
                        return Ok((component, false));
                    }
                }
            }
            Err(error) => {
                tracing::warn!(target: "catshost::wasm::cache", dir = %self.dir.display(), %error, "failed to write to the compile cache")
            }
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
        let written = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&partial)
        }
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

/// The compiled component in the open `file`, mapped from it (file-backed
/// pages: the kernel shares them between tenants of the same component and
/// can drop them under pressure), through its `/proc/self/fd` path so that
/// what is mapped is the file that was checked; read into memory where
/// `/proc` is not mounted.
///
/// # Safety
///
/// As [`Component::deserialize_file`]: the file must be this program's own
/// `precompile_component` output, and nobody may change it while it is
/// mapped (the cache folder is this user's alone, and no guest is given a
/// preopen that reaches it: `config::check_preopens`).
unsafe fn deserialize_open(engine: &Engine, file: &std::fs::File) -> wasmtime::Result<Component> {
    use std::os::fd::AsRawFd;
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    if by_fd.exists() {
        // SAFETY: the caller's.
        return unsafe { Component::deserialize_file(engine, &by_fd) };
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &*file, &mut bytes)?;
    // SAFETY: the caller's.
    unsafe { Component::deserialize(engine, &bytes) }
}

/// The entry at `path`, open, `None` if there is none. The file is opened
/// without following a symlink, and checked once open (so what is checked
/// is what is mapped or read): a regular file of this user that nobody
/// else can write.
fn open_entry(path: &Path) -> Result<Option<std::fs::File>, &'static str> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => return Err("it is a symlink"),
        Err(_) => return Err("it cannot be opened"),
    };
    let meta = file.metadata().map_err(|_| "it cannot be read")?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if !meta.file_type().is_file() {
        return Err("it is not a regular file");
    }
    if meta.uid() != uid {
        return Err("it belongs to another user");
    }
    if meta.mode() & 0o022 != 0 {
        return Err("it is writable by other users");
    }
    Ok(Some(file))
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn an_entry_is_loaded_only_when_it_is_a_private_file_of_this_user() {
        let dir = std::env::temp_dir().join(format!("catshost-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = CompileCache::new(dir.clone());
        let engine = Engine::default();
        let binary = wat::parse_str("(component)").unwrap();
        let load = || cache.compile(&engine, "test", &binary).unwrap().1;
        assert!(!load(), "compiled and stored");
        assert!(load(), "loaded from the cache");
        let entry = dir.join(format!("{}.cwasm", key(&engine, &binary)));

        // Writable by others: compiled again (and stored private again).
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!load());
        assert!(load());

        // A symlink, even to a good entry: compiled again.
        let elsewhere = dir.join("elsewhere.cwasm");
        std::fs::rename(&entry, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
        assert!(matches!(open_entry(&entry), Err("it is a symlink")));
        assert!(!load());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
