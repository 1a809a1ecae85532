//! The tenant config file (`catshost serve --config catshost.toml`): read,
//! checked whole, and turned into settings. Every mistake is reported with
//! the file, line and column it is at. docs/config.md lists each key; a
//! setting's meaning is the doc of the field it sets (`config/settings.rs`).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::WasiAccess;
use super::{DEFAULT_ADDR, DEFAULT_MAX_CONCURRENT_REQUESTS, LIMIT_SETTINGS, SERVER_SETTINGS};
use super::{ServerSettings, Setting, TenantLimits, units};
use crate::routing::{HostPattern, Route, UNROUTED};

mod raw;
mod tenant;

use raw::{RawFile, RawTls, ServerTls, Table};

/// A place in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("failed to read the config file '{}'", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Something in it is wrong.
    #[error("{location}: {message}")]
    At {
        /// Where.
        location: Location,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// Where the mistake is, when it is in the file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::At { location, .. } => Some(location),
        }
    }
}

/// A config file, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// Where to listen.
    pub addr: SocketAddr,
    /// The certificate for names no tenant's certificate covers; HTTPS is
    /// served when it or any tenant's certificate is given.
    pub tls: Option<TlsFiles>,
    /// The server's settings (HTTP, timeouts, connections), without the
    /// tenants.
    pub server: ServerSettings,
    /// The most requests of all tenants running at once: the size of the
    /// instance pool. Default is [`DEFAULT_MAX_CONCURRENT_REQUESTS`].
    pub max_concurrent_requests: NonZeroUsize,
    /// The most worker threads one tenant's guests may use at once
    /// ([`ServerSettings::max_tenant_workers`]); `None` leaves the choice to
    /// the command (`catshost serve`: its workers - 1, at least 1).
    pub tenant_workers: Option<NonZeroUsize>,
    /// The tenants, in the file's order.
    pub tenants: Vec<TenantConfig>,
}

/// One `[[tenant]]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantConfig {
    /// Its name.
    pub name: String,
    /// Its component file.
    pub component: PathBuf,
    /// Where the component is named in the file, for errors found when it
    /// is compiled.
    pub component_at: Location,
    /// Middleware components in front of its component, in order (the
    /// first sees each request first): `middleware = ["cors.wasm", ...]`.
    pub middleware: Vec<PathBuf>,
    /// Where its requests come from.
    pub routes: Vec<Route>,
    /// What its requests may use.
    pub limits: TenantLimits,
    /// What its guests may reach.
    pub access: WasiAccess,
    /// Its own certificate, chosen by SNI for its routes' hosts.
    pub tls: Option<TlsFiles>,
    /// Whether its component may be precompiled native code (a `.cwasm`),
    /// which runs outside the sandbox. Default is no.
    pub unsafe_allow_precompiled: bool,
}

/// A PEM certificate chain and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Where they are named in the file.
    pub at: Location,
}

/// A tenant's [`max_concurrent_requests`](TenantLimits::max_concurrent_requests)
/// when neither it nor `[defaults]` sets one: a tenth of the instance pool's default, so that one tenant
/// cannot take every slot.
pub const DEFAULT_TENANT_CONCURRENT_REQUESTS: usize = 100;

/// The keys of `[server]` besides [`SERVER_SETTINGS`]: they are settings of
/// the file only, or mean something else than the flag of the same name.
const SERVER_KEYS: [&str; 4] = ["addr", "tls", "max_concurrent_requests", "tenant_workers"];

impl FileConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Checks `text`, the contents of the file at `path` (relative paths in
    /// it are relative to the file's folder).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file = Source {
            path,
            text,
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        };
        let toml_error = |error: toml::de::Error| {
            let span = error.span().unwrap_or(0..0);
            file.error(span, error.message().trim_end())
        };
        let raw: RawFile = toml::from_str(text).map_err(toml_error)?;
        let tls: ServerTls = toml::from_str(text).map_err(toml_error)?;
        file.check(raw, tls)
    }

    /// The most components one instance of a tenant holds: 1, or its
    /// middleware chain's hops.
    pub fn longest_chain(&self) -> usize {
        self.tenants
            .iter()
            .map(|t| 1 + t.middleware.len())
            .max()
            .unwrap_or(1)
    }

    /// The sum of the tenants' instance caps
    /// ([`TenantLimits::instances`](super::TenantLimits::instances): their
    /// `max_concurrent_requests` and their WebSocket handlers' instances),
    /// when it is more than the instance pool (`[server]
    /// max_concurrent_requests`): busy tenants together can then take every
    /// slot.
    pub fn overcommitted(&self) -> Option<usize> {
        let sum: usize = self.tenants.iter().map(|t| t.limits.instances()).sum();
        (sum > self.max_concurrent_requests.get()).then_some(sum)
    }

    /// The largest tenant's `max_memory`: what the instance pool's slots
    /// must hold.
    pub fn max_memory(&self) -> usize {
        self.tenants
            .iter()
            .map(|t| t.limits.instance.max_memory)
            .max()
            .unwrap_or(super::DEFAULT_MAX_MEMORY)
    }

    /// Whether HTTPS is served: the file gives a certificate somewhere.
    pub fn has_tls(&self) -> bool {
        self.tls.is_some() || self.tenants.iter().any(|t| t.tls.is_some())
    }
}

/// Whether `route` covers a whole host: a tenant's certificate is chosen
/// by the hosts of such routes.
pub fn is_whole_host(route: &Route) -> bool {
    route.host != HostPattern::Any && route.prefix == "/"
}

/// The file being checked: turns spans into locations.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    /// Where each line starts: a location is found in log time, so a file
    /// of 10,000 tenants is checked in linear time.
    line_starts: Vec<usize>,
}

impl Source<'_> {
    fn location(&self, span: Range<usize>) -> Location {
        let start = span.start.min(self.text.len());
        let start = (0..=start)
            .rev()
            .find(|&i| self.text.is_char_boundary(i))
            .unwrap_or(0);
        let line = self.line_starts.partition_point(|&s| s <= start);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..start].chars().count() + 1;
        Location {
            file: self.path.into(),
            line,
            column,
        }
    }

    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::At {
            location: self.location(span),
            message: message.into(),
        }
    }

    /// A path of the file, relative to the file's folder.
    fn resolve(&self, path: &str) -> PathBuf {
        let dir = self.path.parent().unwrap_or(Path::new(""));
        dir.join(path)
    }

    fn check(&self, raw: RawFile, tls: ServerTls) -> Result<FileConfig, ConfigError> {
        let mut file = self.check_server(&raw.server)?;
        file.tls = tls.server.tls.map(|tls| self.check_tls(tls)).transpose()?;
        let base = TenantLimits {
            max_concurrent_requests: DEFAULT_TENANT_CONCURRENT_REQUESTS,
            // A tenant accepts WebSockets only when its entry says so.
            websockets: false,
            ..TenantLimits::default()
        };
        let mut defaults = base;
        self.set_all(&raw.defaults, LIMIT_SETTINGS, &[], &mut defaults)?;
        let mut names: HashMap<String, Range<usize>> = HashMap::new();
        let mut routes: HashMap<Route, (String, Location)> = HashMap::new();
        for raw in raw.tenants {
            let span = raw.name.span();
            let name = raw.name.get_ref().clone();
            if name.is_empty()
                || name == UNROUTED
                || name == super::OTHER_TENANTS
                || name.chars().any(char::is_control)
            {
                return Err(self.error(
                    span,
                    format!(
                        "'{name}' cannot name a tenant: give it a name of printable characters"
                    ),
                ));
            }
            if let Some(first) = names.insert(name.clone(), span.clone()) {
                let first = self.location(first);
                return Err(self.error(
                    span,
                    format!("a tenant named '{name}' is already defined at {first}"),
                ));
            }
            let (tenant, spans) = self.check_tenant(raw, &defaults)?;
            for (route, span) in tenant.routes.iter().zip(spans) {
                let here = self.location(span.clone());
                if let Some((other, at)) = routes.insert(route.clone(), (name.clone(), here)) {
                    return Err(self.error(
                        span,
                        format!(
                            "tenant '{name}': the route '{route}' is also tenant '{other}''s \
                             (at {at}): a request could not choose between them"
                        ),
                    ));
                }
            }
            file.tenants.push(tenant);
        }
        if file.tenants.is_empty() {
            return Err(self.error(
                self.text.len()..self.text.len(),
                "no [[tenant]] is defined: a config file serves at least one tenant",
            ));
        }
        Ok(file)
    }

    /// Reads `value` into `settings` through `setting`.
    fn set<T>(
        &self,
        setting: &Setting<T>,
        settings: &mut T,
        value: &Spanned<toml::Value>,
    ) -> Result<(), ConfigError> {
        raw::texts(value.get_ref(), setting.is_list())
            .map_err(String::from)
            .and_then(|texts| {
                texts
                    .iter()
                    .try_for_each(|text| setting.set(settings, text))
            })
            .map_err(|why| self.error(value.span(), why))
    }

    /// Reads the keys of `table` into `settings` through the settings of
    /// `known`; `other` keys are the caller's. Unknown keys are mistakes.
    fn set_all<T>(
        &self,
        table: &Table,
        known: &[Setting<T>],
        other: &[&str],
        settings: &mut T,
    ) -> Result<(), ConfigError> {
        // In the file's order, so the first mistake is the one reported.
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        for (key, value) in entries {
            let key_text = key.get_ref().as_str();
            match known.iter().find(|s| s.key == key_text) {
                Some(setting) => self.set(setting, settings, value)?,
                None if other.contains(&key_text) => {}
                None => {
                    let expected: Vec<&str> = known
                        .iter()
                        .map(|s| s.key)
                        .chain(other.iter().copied())
                        .collect();
                    return Err(self.error(
                        key.span(),
                        format!(
                            "unknown field `{key_text}`, expected one of {}",
                            expected.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `[server]`: the settings of [`SERVER_SETTINGS`] and the file's own
    /// keys (`tls` is read apart, with the places of its paths).
    fn check_server(&self, table: &Table) -> Result<FileConfig, ConfigError> {
        let mut file = FileConfig {
            path: self.path.into(),
            addr: DEFAULT_ADDR,
            tls: None,
            server: ServerSettings::default(),
            max_concurrent_requests: NonZeroUsize::new(DEFAULT_MAX_CONCURRENT_REQUESTS)
                .expect("the default is not zero"),
            tenant_workers: None,
            tenants: Vec::new(),
        };
        self.set_all(table, SERVER_SETTINGS, &SERVER_KEYS, &mut file.server)?;
        let get = |key: &str| {
            table
                .iter()
                .find(|(k, _)| k.get_ref() == key)
                .map(|(_, v)| v)
        };
        if let Some(value) = get("addr") {
            file.addr = self.addr(value)?;
        }
        let nonzero = |value: &Spanned<toml::Value>| {
            raw::text(value.get_ref())
                .map_err(String::from)
                .and_then(|text| units::parse_nonzero(&text))
                .map(|n| NonZeroUsize::new(n).expect("parse_nonzero is never 0"))
                .map_err(|why| self.error(value.span(), why))
        };
        if let Some(value) = get("max_concurrent_requests") {
            file.max_concurrent_requests = nonzero(value)?;
        }
        if let Some(value) = get("tenant_workers") {
            file.tenant_workers = Some(nonzero(value)?);
        }
        Ok(file)
    }

    fn addr(&self, value: &Spanned<toml::Value>) -> Result<SocketAddr, ConfigError> {
        let error = |why: String| self.error(value.span(), why);
        let toml::Value::String(text) = value.get_ref() else {
            return Err(error(
                "invalid type: expected a string like \"127.0.0.1:8080\"".into(),
            ));
        };
        text.parse().map_err(|_| {
            error(format!(
                "'{text}' is not an address: expected IP:PORT, like 127.0.0.1:8080"
            ))
        })
    }

    fn check_tls(&self, raw: Spanned<RawTls>) -> Result<TlsFiles, ConfigError> {
        let at = self.location(raw.span());
        let raw = raw.into_inner();
        let file = |path: Spanned<String>| {
            let resolved = self.resolve(path.get_ref());
            if !resolved.is_file() {
                return Err(self.error(
                    path.span(),
                    format!("'{}' is not a file", resolved.display()),
                ));
            }
            Ok(resolved)
        };
        Ok(TlsFiles {
            cert: file(raw.cert)?,
            key: file(raw.key)?,
            at,
        })
    }
}

#[cfg(test)]
mod tests;
