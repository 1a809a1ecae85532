//! Loading a checked config file's tenants, ready for
//! [`super::Builder::build_tenants`] or [`super::Server::replace_tenants`]:
//! the components of `preload` tenants compiled (each distinct one once,
//! several at a time), the others left to load on their first request
//! ([`TenantComponent::OnDemand`]), and the certificates loaded.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Tenant, TenantComponent};
use crate::config::file::{FileConfig, Location, TenantConfig, TlsFiles, is_whole_host};
use crate::error::BoxError;
use crate::net::{CertKey, SniCerts};
use crate::routing::HostPattern;
use crate::wasm::{ComponentFile, Engine, GuestPre, Middleware};

/// Why a config file's tenants could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {what}")]
pub struct LoadError {
    /// Where the file names what failed.
    pub at: Location,
    /// What failed.
    pub what: String,
    /// Why.
    #[source]
    pub source: BoxError,
}

/// The preloaded tenants' compiled components by the SHA-256 of their
/// bytes: what a reload reuses instead of compiling again; and which one
/// each tenant runs, for a reload whose version of a tenant cannot be
/// served.
#[derive(Clone, Default)]
pub struct Components(HashMap<[u8; 32], GuestPre>, HashMap<String, [u8; 32]>);

impl Components {
    /// How many distinct components there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A config file's tenants, ready to serve.
pub struct Loaded {
    /// The tenants, in the file's order.
    pub tenants: Vec<Tenant>,
    /// Every component, for the next reload.
    pub components: Components,
    /// The certificates, when any is given.
    pub certs: Option<Certs>,
    /// Components compiled (or loaded from the compile cache) this time;
    /// the others were reused.
    pub compiled: usize,
    /// The tenants whose new version cannot be served, each with why: they
    /// keep serving the component they ran before.
    pub stale: Vec<(String, LoadError)>,
}

impl Loaded {
    /// Puts the certificates in `sni`.
    pub fn install_certs(&self, sni: &SniCerts) {
        if let Some(certs) = &self.certs {
            sni.replace(certs.default.clone(), certs.names.clone());
        }
    }
}

/// The certificates of a config file.
#[derive(Clone, Debug)]
pub struct Certs {
    /// For names no tenant's certificate covers (`[server] tls`).
    pub default: Option<CertKey>,
    /// The tenants' certificates, by the hosts of their routes.
    pub names: Vec<(HostPattern, CertKey)>,
}

/// Loads the tenants of `file` with `engine`. Those with `preload` are
/// loaded now: components whose bytes are in `previous` are reused, the
/// others compiled on up to `threads` threads at once. The others are
/// loaded on their first request (their files are not even read now).
///
/// A preloaded tenant whose component cannot be read or served fails the
/// load, unless `previous` has it (a reload) and `keep_stale` is set: then
/// it keeps its previous component, and [`Loaded::stale`] says why.
pub fn tenants(
    engine: &Engine,
    file: &FileConfig,
    previous: &Components,
    threads: usize,
    keep_stale: bool,
) -> Result<Loaded, LoadError> {
    // Read every component; group the tenants by what they run.
    let mut bytes_of: Vec<Option<Read>> = Vec::with_capacity(file.tenants.len());
    let mut to_compile: Vec<([u8; 32], usize)> = Vec::new();
    let mut components = Components::default();
    for (i, tenant) in file.tenants.iter().enumerate() {
        if !tenant.limits.preload {
            bytes_of.push(None);
            continue;
        }
        let read = read_component(tenant);
        if let Ok((digest, _)) = &read {
            if let Some(component) = previous.0.get(digest) {
                components.0.insert(*digest, component.clone());
            } else if !to_compile.iter().any(|(d, _)| d == digest) {
                to_compile.push((*digest, i));
            }
        }
        bytes_of.push(Some(read));
    }

    let compiled = to_compile.len();
    let mut failed: HashMap<[u8; 32], std::sync::Arc<crate::Error>> = HashMap::new();
    for (digest, _, loaded) in compile_all(engine, file, &bytes_of, to_compile, threads) {
        match loaded {
            Ok(component) => {
                components.0.insert(digest, component);
            }
            Err(error) => {
                failed.insert(digest, std::sync::Arc::new(error));
            }
        }
    }

    let mut tenants = Vec::with_capacity(file.tenants.len());
    let mut stale = Vec::new();
    // Each middleware file compiled once, whatever the chains it is in.
    let mut middleware = HashMap::new();
    for (tenant, read) in file.tenants.iter().zip(bytes_of) {
        let Some(read) = read else {
            let mut on_demand = ComponentFile::new(&tenant.component, engine);
            on_demand.unsafe_allow_precompiled = tenant.unsafe_allow_precompiled;
            on_demand.requires_websocket_handler = tenant.limits.websockets;
            on_demand.middleware = tenant.middleware.clone();
            tenants.push(Tenant {
                name: tenant.name.clone(),
                component: TenantComponent::OnDemand(on_demand),
                routes: tenant.routes.clone(),
                limits: tenant.limits,
                access: tenant.access.clone(),
            });
            continue;
        };
        let served = read.and_then(|(digest, _)| match failed.get(&digest) {
            None if tenant.limits.websockets && !components.0[&digest].serves_websockets() => {
                Err(LoadError {
                    at: tenant.component_at.clone(),
                    what: format!(
                        "tenant '{}': `websockets = true`, but its component cannot serve them",
                        tenant.name
                    ),
                    source: "it exports no catshost:websocket/handler@0.1.0 (docs/websockets.md)"
                        .into(),
                })
            }
            None => Ok(digest),
            Some(error) => Err(LoadError {
                at: tenant.component_at.clone(),
                what: format!("tenant '{}': the component cannot be served", tenant.name),
                source: Box::new(error.clone()),
            }),
        });
        let digest = match served {
            Ok(digest) => digest,
            Err(error) => match previous.1.get(&tenant.name) {
                Some(&digest) if keep_stale => {
                    components.0.insert(digest, previous.0[&digest].clone());
                    stale.push((tenant.name.clone(), error));
                    digest
                }
                _ => return Err(error),
            },
        };
        components.1.insert(tenant.name.clone(), digest);
        let component = components.0[&digest].with_name(&tenant.component.display().to_string());
        let component = with_middleware(engine, tenant, component, &mut middleware)?;
        tenants.push(Tenant {
            name: tenant.name.clone(),
            component: component.into(),
            routes: tenant.routes.clone(),
            limits: tenant.limits,
            access: tenant.access.clone(),
        });
    }
    // Only what the tenants run is kept for the next reload.
    let used: std::collections::HashSet<_> = components.1.values().copied().collect();
    components.0.retain(|digest, _| used.contains(digest));
    Ok(Loaded {
        tenants,
        components,
        certs: load_certs(file)?,
        compiled,
        stale,
    })
}

/// `handler` with `tenant`'s middleware in front, each file loaded once
/// into `loaded`. A chain that cannot be built fails the load, on a reload
/// too: a tenant never runs without the middleware its entry names.
fn with_middleware(
    engine: &Engine,
    tenant: &TenantConfig,
    handler: GuestPre,
    loaded: &mut HashMap<std::path::PathBuf, Middleware>,
) -> Result<GuestPre, LoadError> {
    if tenant.middleware.is_empty() {
        return Ok(handler);
    }
    let error = |source: crate::Error| LoadError {
        at: tenant.component_at.clone(),
        what: format!(
            "tenant '{}': the middleware chain cannot be built",
            tenant.name
        ),
        source: source.into(),
    };
    let mut chain = Vec::with_capacity(tenant.middleware.len());
    for path in &tenant.middleware {
        let middleware = match loaded.get(path) {
            Some(middleware) => middleware.clone(),
            None => {
                let middleware = engine.load_middleware_file(path).map_err(error)?;
                loaded.insert(path.clone(), middleware.clone());
                middleware
            }
        };
        chain.push(middleware);
    }
    engine.chain(&chain, &handler).map_err(error)
}

/// A tenant's component read: its digest and bytes.
type Read = Result<([u8; 32], Vec<u8>), LoadError>;

/// The digest and bytes of `tenant`'s component, refused when they are
/// precompiled native code the tenant does not allow.
fn read_component(tenant: &TenantConfig) -> Read {
    let bytes = std::fs::read(&tenant.component).map_err(|e| LoadError {
        at: tenant.component_at.clone(),
        what: format!(
            "tenant '{}': failed to read the component '{}'",
            tenant.name,
            tenant.component.display()
        ),
        source: e.into(),
    })?;
    if Engine::is_precompiled(&bytes) && !tenant.unsafe_allow_precompiled {
        return Err(LoadError {
            at: tenant.component_at.clone(),
            what: format!("tenant '{}': the component cannot be served", tenant.name),
            source: crate::Error::PrecompiledRefused {
                name: tenant.component.display().to_string(),
            }
            .into(),
        });
    }
    Ok((sha256(&bytes), bytes))
}

/// Compiles the components of `jobs` (a digest and the first tenant that
/// runs it), a few at a time (wasmtime also compiles the functions of each
/// component in parallel).
#[allow(clippy::type_complexity)]
fn compile_all(
    engine: &Engine,
    file: &FileConfig,
    bytes_of: &[Option<Read>],
    jobs: Vec<([u8; 32], usize)>,
    threads: usize,
) -> Vec<([u8; 32], usize, Result<GuestPre, crate::Error>)> {
    let workers = threads.clamp(1, jobs.len().max(1));
    let next = Mutex::new(jobs.into_iter());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let job = next.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let Some((digest, i)) = job else { break };
                    let name = file.tenants[i].component.display().to_string();
                    let Some(Ok((_, bytes))) = &bytes_of[i] else {
                        unreachable!("only components that were read are compiled")
                    };
                    let loaded = match file.tenants[i].unsafe_allow_precompiled {
                        // SAFETY: the tenant's entry says its component may
                        // be precompiled: the operator vouches for it (and
                        // every tenant running these bytes said so, checked
                        // when they were read).
                        true => unsafe { engine.load_bytes_allowing_precompiled(&name, bytes) },
                        false => engine.load_bytes(&name, bytes),
                    };
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((digest, i, loaded));
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

fn load_certs(file: &FileConfig) -> Result<Option<Certs>, LoadError> {
    let load = |files: &TlsFiles, whose: &str| {
        CertKey::from_pem_files(&files.cert, &files.key).map_err(|e| LoadError {
            at: files.at.clone(),
            what: format!("{whose}: the certificate cannot be used"),
            source: e.into(),
        })
    };
    let default = file
        .tls
        .as_ref()
        .map(|files| load(files, "[server] tls"))
        .transpose()?;
    let mut names = Vec::new();
    for tenant in &file.tenants {
        if let Some(files) = &tenant.tls {
            let cert = load(files, &format!("tenant '{}'", tenant.name))?;
            // No two tenants share a whole-host route (the config check
            // refuses it), so each host has one certificate.
            for route in tenant.routes.iter().filter(|r| is_whole_host(r)) {
                names.push((route.host.clone(), cert.clone()));
            }
        }
    }
    if default.is_none() && names.is_empty() {
        return Ok(None);
    }
    Ok(Some(Certs { default, names }))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest
        .as_ref()
        .try_into()
        .expect("a SHA-256 digest is 32 bytes")
}
