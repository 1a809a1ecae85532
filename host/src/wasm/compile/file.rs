//! A component file to be loaded later, with the engine to load it with:
//! what an on-demand tenant is until its first request.

use std::path::PathBuf;

use super::{Engine, GuestPre};
use crate::error::Error;

/// A component file and how to load it: [`ComponentFile::load`] reads,
/// compiles (or takes from the compile cache) and pre-instantiates it.
#[derive(Clone)]
pub struct ComponentFile {
    /// The file.
    pub path: PathBuf,
    /// The engine it is loaded with (and its compile cache).
    pub engine: Engine,
    /// Whether the file may be precompiled native code (`catshost
    /// compile`'s output), which runs outside the sandbox: whoever wrote it
    /// runs code in this process. Default is no.
    pub unsafe_allow_precompiled: bool,
    /// Whether it must export a WebSocket handler
    /// (`catshost:websocket/handler`): a config file's tenant with
    /// `websockets = true`. One that exports none then fails to load.
    /// Default is no: a handler is served when there is one.
    pub requires_websocket_handler: bool,
    /// Middleware components in front of it, in order (the first sees each
    /// request first): WASI 0.3 `wasi:http/middleware` components, linked
    /// into one chain when it loads ([`Engine::chain`]). Default is none.
    pub middleware: Vec<PathBuf>,
}

/// What a file was when it was looked at: a load that failed is tried
/// again once the file changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
    /// The stamps of its middleware files, folded: a chain is loaded again
    /// when any of its files changes.
    middleware: u64,
}

impl ComponentFile {
    /// The file `path`, loaded with `engine`; precompiled native code is
    /// refused.
    pub fn new(path: impl Into<PathBuf>, engine: &Engine) -> Self {
        Self {
            path: path.into(),
            engine: engine.clone(),
            unsafe_allow_precompiled: false,
            requires_websocket_handler: false,
            middleware: Vec::new(),
        }
    }

    /// Loads it, with its middleware in front (blocking: it may compile for
    /// seconds).
    pub fn load(&self) -> Result<GuestPre, Error> {
        let handler = match self.unsafe_allow_precompiled {
            // SAFETY: the operator vouched for the file when they allowed
            // precompiled code for it (`unsafe_allow_precompiled`).
            true => unsafe { self.engine.load_file_allowing_precompiled(&self.path)? },
            false => self.engine.load_file(&self.path)?,
        };
        if self.middleware.is_empty() {
            return Ok(handler);
        }
        let middleware = self
            .middleware
            .iter()
            .map(|path| self.engine.load_middleware_file(path))
            .collect::<Result<Vec<_>, _>>()?;
        self.engine.chain(&middleware, &handler)
    }

    /// What the file (and its middleware's) is now; `None` when one cannot
    /// be looked at.
    pub fn stamp(&self) -> Option<FileStamp> {
        use std::hash::{Hash, Hasher};
        let mut middleware = std::collections::hash_map::DefaultHasher::new();
        for path in &self.middleware {
            stamp_of(path)?.hash(&mut middleware);
        }
        let (len, modified, inode) = stamp_of(&self.path)?;
        Some(FileStamp {
            len,
            modified,
            inode,
            middleware: middleware.finish(),
        })
    }
}

/// The length, time of change and inode of the file at `path`.
fn stamp_of(path: &std::path::Path) -> Option<(u64, Option<std::time::SystemTime>, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok(), meta.ino()))
}

impl std::fmt::Debug for ComponentFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentFile")
            .field("path", &self.path)
            .field("unsafe_allow_precompiled", &self.unsafe_allow_precompiled)
            .field("middleware", &self.middleware)
            .finish_non_exhaustive()
    }
}
