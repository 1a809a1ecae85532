//! Which of the host's own files a guest's preopens reach, decided before
//! anything is served: a guest writes as catshost's user, so a writable
//! preopen that holds the compile cache, the config file, a component, a
//! certificate or a key would let it hand catshost native code, its own
//! limits, or another TLS identity; a read-only one that holds a private key
//! not its tenant's would let it read that key. docs/limits.md gives the
//! rule; `catshost serve` checks it at start and at every reload.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::file::FileConfig;
use super::{Preopen, ServeSettings, TlsSource};
use reach::{Index, Opened, Reach, identity};

mod reach;
#[cfg(test)]
mod tests;

/// One of the host's own files or folders, which no guest may write (nor,
/// for a private key, read unless it is its tenant's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFile {
    /// The path catshost opens it by.
    pub path: PathBuf,
    /// What catshost does with it.
    pub role: Role,
}

/// What catshost does with one of its own files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The compile cache folder: its entries are loaded as native code.
    CompileCache,
    /// The config file of tenants, read again at every reload.
    ConfigFile,
    /// A component that is served.
    Component,
    /// A certificate chain that is served.
    Certificate,
    /// A private key. `owner` is the tenant whose hosts alone it serves
    /// (its guests may read it through a read-only preopen); `None` for
    /// `[server] tls` of a config file, which no tenant's guests may read,
    /// and for `--tls-key`, whose one component is no tenant.
    Key {
        /// The tenant it is the key of.
        owner: Option<String>,
    },
}

/// The preopens of one tenant.
#[derive(Clone, Copy, Debug)]
pub struct Grant<'a> {
    /// The tenant's name; `None` for the one component of `catshost serve
    /// COMPONENT` (which may read its own `--tls-key`).
    pub tenant: Option<&'a str>,
    /// Its preopens.
    pub dirs: &'a [Preopen],
}

/// Why a config's preopens cannot be granted: one of them reaches one of
/// the host's files, or cannot be resolved.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PreopenError(Box<Why>);

impl PreopenError {
    /// The tenant whose preopen it is; `None` for the one component of
    /// `catshost serve COMPONENT`.
    pub fn tenant(&self) -> Option<&str> {
        match &*self.0 {
            Why::Reaches { tenant, .. } | Why::Unresolved { tenant, .. } => tenant.as_deref(),
        }
    }

    /// The preopen's directory, as it was given.
    pub fn dir(&self) -> &Path {
        match &*self.0 {
            Why::Reaches { preopen, .. } => &preopen.host,
            Why::Unresolved { path, .. } => path,
        }
    }

    /// The host's file the preopen reaches; `None` when the preopen could
    /// not be resolved.
    pub fn file(&self) -> Option<&HostFile> {
        match &*self.0 {
            Why::Reaches { file, .. } => Some(file),
            Why::Unresolved { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum Why {
    /// A preopen reaches one of the host's files.
    #[error(
        "{}the {} directory '{}'{} contains {} '{}'{}: {}. {} (docs/limits.md)",
        whose(tenant.as_deref()),
        if preopen.writable { "writable" } else { "read-only" },
        preopen.host.display(),
        differs(&preopen.host, dir),
        file.role,
        file.path.display(),
        differs(&file.path, reached),
        file.role.danger(preopen.writable),
        if preopen.writable {
            "Give guests directories that hold none of catshost's own files"
        } else {
            "Give its guests a directory that holds no other tenant's key"
        }
    )]
    Reaches {
        /// The tenant whose preopen it is (`None`: `catshost serve
        /// COMPONENT`'s).
        tenant: Option<String>,
        /// The preopen.
        preopen: Preopen,
        /// Its canonical path.
        dir: PathBuf,
        /// What it reaches.
        file: HostFile,
        /// Where the file's path leads (its canonical path; below its
        /// nearest existing folder when it does not exist yet).
        reached: PathBuf,
    },
    /// A preopen's directory cannot be resolved, so what it reaches cannot
    /// be told.
    #[error("{}the directory '{}' cannot be checked", whose(tenant.as_deref()), path.display())]
    Unresolved {
        /// The tenant whose preopen it is.
        tenant: Option<String>,
        /// The preopen's directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn whose(tenant: Option<&str>) -> String {
    tenant.map_or(String::new(), |name| format!("tenant '{name}': "))
}

fn differs(given: &Path, canonical: &Path) -> String {
    match std::path::absolute(given) {
        Ok(absolute) if absolute == canonical => String::new(),
        _ => format!(" (which is '{}')", canonical.display()),
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::CompileCache => f.write_str("the compile cache"),
            Role::ConfigFile => f.write_str("the config file"),
            Role::Component => f.write_str("the component"),
            Role::Certificate => f.write_str("the certificate"),
            Role::Key { owner: Some(owner) } => write!(f, "tenant '{owner}''s private key"),
            Role::Key { owner: None } => f.write_str("the private key"),
        }
    }
}

impl Role {
    /// What a guest could do with the file through its preopen.
    fn danger(&self, writable: bool) -> &'static str {
        match (self, writable) {
            (Role::Key { .. }, false) => "its guests could read a private key that is not theirs",
            (Role::CompileCache, _) => {
                "its guests could put native code there that catshost would load and run \
                 outside the sandbox"
            }
            (Role::ConfigFile, _) => {
                "its guests could rewrite the config (their own limits, directories and \
                 allow-list), which the next reload applies"
            }
            (Role::Component, _) => "its guests could replace a component that is served",
            (Role::Certificate | Role::Key { .. }, _) => {
                "its guests could replace the certificate or key HTTPS is served with"
            }
        }
    }

    /// Whether a read-only preopen of `tenant` may hold it.
    fn readable_by(&self, tenant: Option<&str>) -> bool {
        match self {
            Role::Key { owner } => owner.as_deref() == tenant,
            _ => true,
        }
    }
}

/// Checks that no preopen of `grants` reaches one of `files`: a writable
/// one may hold none of them, nor a folder on the way to one (a guest could
/// swap that folder or a symlink in it); a read-only one may hold no
/// private key but its own tenant's. "Holds" is decided on canonical paths
/// (the preopen is the folder or one above it) and on device and inode
/// numbers (the preopen is the same folder as one on the way, which also
/// catches a bind mount); a file that does not exist yet (the compile
/// cache before the first start) is checked at its nearest existing folder.
/// The first preopen found is reported, in the order of `grants`.
pub fn check_preopens(grants: &[Grant<'_>], files: &[HostFile]) -> Result<(), PreopenError> {
    if grants.iter().all(|grant| grant.dirs.is_empty()) {
        return Ok(());
    }
    let mut opened = Vec::new();
    for (tenant, grant) in grants.iter().enumerate() {
        for (number, preopen) in grant.dirs.iter().enumerate() {
            let unresolved = |source| {
                PreopenError(Box::new(Why::Unresolved {
                    tenant: grant.tenant.map(String::from),
                    path: preopen.host.clone(),
                    source,
                }))
            };
            let dir = std::fs::canonicalize(&preopen.host).map_err(unresolved)?;
            let id = identity(&dir).ok_or_else(|| {
                unresolved(std::io::Error::other("its device and inode cannot be read"))
            })?;
            opened.push(Opened {
                tenant,
                number,
                writable: preopen.writable,
                dir,
                id,
            });
        }
    }
    let index = Index::new(opened);
    let mut found: Option<(usize, &HostFile, PathBuf)> = None;
    let mut reaches: HashMap<&Path, Reach> = HashMap::new();
    for file in files {
        let reach = reaches
            .entry(&file.path)
            .or_insert_with(|| Reach::of(&file.path));
        let owner = |i: usize| grants[index.opened[i].tenant].tenant;
        let first = index
            .reaching(reach)
            .into_iter()
            .find(|&i| index.opened[i].writable || !file.role.readable_by(owner(i)));
        if let Some(i) = first
            && found.as_ref().is_none_or(|(j, ..)| i < *j)
        {
            found = Some((i, file, reach.end.clone()));
        }
    }
    let Some((i, file, reached)) = found else {
        return Ok(());
    };
    let opened = &index.opened[i];
    let grant = &grants[opened.tenant];
    Err(PreopenError(Box::new(Why::Reaches {
        tenant: grant.tenant.map(String::from),
        preopen: grant.dirs[opened.number].clone(),
        dir: opened.dir.clone(),
        file: file.clone(),
        reached,
    })))
}

impl FileConfig {
    /// The host's own files of this config: the file itself, its
    /// components, certificates and keys; and the compile cache `cache`.
    pub fn host_files(&self, cache: Option<&Path>) -> Vec<HostFile> {
        let mut files = vec![HostFile {
            path: self.path.clone(),
            role: Role::ConfigFile,
        }];
        files.extend(cache.map(|dir| HostFile {
            path: dir.into(),
            role: Role::CompileCache,
        }));
        let tls = |tls: &super::file::TlsFiles, owner: Option<&str>| {
            [
                HostFile {
                    path: tls.cert.clone(),
                    role: Role::Certificate,
                },
                HostFile {
                    path: tls.key.clone(),
                    role: Role::Key {
                        owner: owner.map(String::from),
                    },
                },
            ]
        };
        files.extend(self.tls.iter().flat_map(|t| tls(t, None)));
        for tenant in &self.tenants {
            files.push(HostFile {
                path: tenant.component.clone(),
                role: Role::Component,
            });
            files.extend(tenant.tls.iter().flat_map(|t| tls(t, Some(&tenant.name))));
        }
        files
    }

    /// [`check_preopens`] for the tenants of this config, with the compile
    /// cache `cache`.
    pub fn check_preopens(&self, cache: Option<&Path>) -> Result<(), PreopenError> {
        let grants: Vec<Grant<'_>> = self
            .tenants
            .iter()
            .map(|tenant| Grant {
                tenant: Some(&tenant.name),
                dirs: &tenant.access.dirs,
            })
            .collect();
        check_preopens(&grants, &self.host_files(cache))
    }
}

impl ServeSettings {
    /// [`check_preopens`] for what these settings serve: the tenants of
    /// `file` when one is given (they replace the flags' component), else
    /// the component of the flags, with its certificate and key.
    pub fn check_preopens(&self, file: Option<&FileConfig>) -> Result<(), PreopenError> {
        if let Some(file) = file {
            return file.check_preopens(self.cache.as_deref());
        }
        let mut files: Vec<HostFile> = Vec::new();
        let mut add = |path: &Path, role| {
            files.push(HostFile {
                path: path.into(),
                role,
            })
        };
        if let Some(dir) = &self.cache {
            add(dir, Role::CompileCache);
        }
        if let Some(component) = &self.component {
            add(component, Role::Component);
        }
        if let Some(TlsSource::Files { cert, key }) = &self.tls {
            add(cert, Role::Certificate);
            add(key, Role::Key { owner: None });
        }
        let grant = Grant {
            tenant: None,
            dirs: &self.access.dirs,
        };
        check_preopens(&[grant], &files)
    }
}
