//! The tenant config file (`catshost serve --config catshost.toml`): read,
//! checked whole, and turned into settings. Every mistake is reported with
//! the file, line and column it is at; docs/config.md documents each key.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::http::{HttpSettings, HttpVersions};
use crate::routing::{HostPattern, Route};
use crate::wasm::{Origin, Outbound, Preopen, WasiAccess};
use crate::{Builder, TenantLimits, UNROUTED};

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
#[derive(Clone, Debug)]
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
    pub server: Builder,
    /// The most requests of all tenants running at once: the size of the
    /// instance pool.
    pub max_concurrent_requests: NonZeroUsize,
    /// The most worker threads one tenant's guests may use at once; `None`
    /// leaves the choice to the command (cores - 1).
    pub tenant_workers: Option<NonZeroUsize>,
    /// The tenants, in the file's order.
    pub tenants: Vec<TenantConfig>,
}

/// One `[[tenant]]`, checked.
#[derive(Clone, Debug)]
pub struct TenantConfig {
    /// Its name.
    pub name: String,
    /// Its component file.
    pub component: PathBuf,
    /// Where the component is named in the file, for errors found when it
    /// is compiled.
    pub component_at: Location,
    /// Where its requests come from.
    pub routes: Vec<Route>,
    /// What its requests may use.
    pub limits: TenantLimits,
    /// Its own certificate, chosen by SNI for its routes' hosts.
    pub tls: Option<TlsFiles>,
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
        let file = Source { path, text };
        let raw: RawFile = toml::from_str(text).map_err(|error| {
            let span = error.span().unwrap_or(0..0);
            file.error(span, error.message().trim_end())
        })?;
        file.check(raw)
    }

    /// The sum of the tenants' `max_concurrent_requests`, when it is more
    /// than the instance pool (`[server] max_concurrent_requests`): busy
    /// tenants together can then take every slot.
    pub fn overcommitted(&self) -> Option<usize> {
        let sum: usize = self
            .tenants
            .iter()
            .map(|t| t.limits.max_concurrent_requests)
            .sum();
        (sum > self.max_concurrent_requests.get()).then_some(sum)
    }

    /// The instance limits of the largest tenant: what the instance pool
    /// must hold.
    pub fn max_memory(&self) -> usize {
        self.tenants
            .iter()
            .map(|t| t.limits.instance.max_memory)
            .max()
            .unwrap_or(crate::wasm::DEFAULT_MAX_MEMORY)
    }
}

/// The file being checked: turns spans into locations.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn location(&self, span: Range<usize>) -> Location {
        let start = span.start.min(self.text.len());
        let start = (0..=start)
            .rev()
            .find(|&i| self.text.is_char_boundary(i))
            .unwrap_or(0);
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
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

    fn check(&self, raw: RawFile) -> Result<FileConfig, ConfigError> {
        let RawFile {
            server,
            defaults,
            tenants: raw_tenants,
        } = raw;
        let (builder, addr, tls, max_concurrent_requests, tenant_workers) =
            self.check_server(server)?;
        let base = TenantLimits {
            max_concurrent_requests: DEFAULT_TENANT_CONCURRENT_REQUESTS,
            ..TenantLimits::default()
        };
        let defaults = self.limits(&defaults, &base)?;

        let mut tenants = Vec::with_capacity(raw_tenants.len());
        let mut names: HashMap<String, Range<usize>> = HashMap::new();
        let mut routes: HashMap<Route, (String, Location)> = HashMap::new();
        for raw in raw_tenants {
            let span = raw.name.span();
            let name = raw.name.get_ref().clone();
            if name.is_empty() || name == UNROUTED || name.chars().any(char::is_control) {
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
            let tenant = self.check_tenant(raw, &defaults)?;
            for (route, span) in &tenant.1 {
                let here = self.location(span.clone());
                if let Some((other, at)) = routes.insert(route.clone(), (name.clone(), here)) {
                    return Err(self.error(
                        span.clone(),
                        format!(
                            "tenant '{name}': the route '{route}' is also tenant '{other}''s \
                             (at {at}): a request could not choose between them"
                        ),
                    ));
                }
            }
            tenants.push(tenant.0);
        }
        if tenants.is_empty() {
            return Err(self.error(
                self.text.len()..self.text.len(),
                "no [[tenant]] is defined: a config file serves at least one tenant",
            ));
        }
        Ok(FileConfig {
            path: self.path.into(),
            addr,
            tls,
            server: builder,
            max_concurrent_requests,
            tenant_workers,
            tenants,
        })
    }

    #[allow(clippy::type_complexity)]
    fn check_server(
        &self,
        raw: RawServer,
    ) -> Result<
        (
            Builder,
            SocketAddr,
            Option<TlsFiles>,
            NonZeroUsize,
            Option<NonZeroUsize>,
        ),
        ConfigError,
    > {
        let defaults = HttpSettings::default();
        let checked = |value: Option<Spanned<Size>>,
                       name: &str,
                       check: fn(u64, &str) -> Result<u32, String>| {
            value
                .map(|v| check(v.get_ref().0, name).map_err(|e| self.error(v.span(), e)))
                .transpose()
        };
        let to_u32 = |value, name| checked(value, name, super::size_u32);
        let frame_size = checked(
            raw.http2_max_frame_size,
            "http2_max_frame_size",
            super::http2_frame_size,
        )?;
        let max_header_size = match raw.max_header_size {
            Some(v) => usize::try_from(v.get_ref().0)
                .map_err(|_| self.error(v.span(), "max_header_size is too large"))?,
            None => defaults.max_header_size,
        };
        let http = HttpSettings {
            versions: raw.http.map_or(defaults.versions, |v| v.0),
            header_read_timeout: raw
                .header_read_timeout
                .map_or(defaults.header_read_timeout, |d| d.0),
            max_header_size,
            http1_keep_alive: raw.http1_keep_alive.unwrap_or(defaults.http1_keep_alive),
            http1_max_headers: raw.http1_max_headers,
            http2_max_concurrent_streams: raw.http2_max_concurrent_streams,
            http2_initial_stream_window: to_u32(
                raw.http2_initial_stream_window,
                "http2_initial_stream_window",
            )?,
            http2_initial_connection_window: to_u32(
                raw.http2_initial_connection_window,
                "http2_initial_connection_window",
            )?,
            http2_max_frame_size: frame_size,
            http2_keep_alive_interval: raw.http2_keep_alive_interval.map(|d| d.0),
            http2_keep_alive_timeout: raw.http2_keep_alive_timeout.map(|d| d.0),
            http2_max_pending_accept_reset_streams: raw.http2_max_pending_accept_reset_streams,
            http2_max_local_error_reset_streams: raw.http2_max_local_error_reset_streams,
        };
        let mut builder = Builder::new();
        builder
            .http(http)
            .shutdown_timeout(
                raw.shutdown_timeout
                    .map_or(crate::DEFAULT_SHUTDOWN_TIMEOUT, |d| d.0),
            )
            .tls_handshake_timeout(
                raw.tls_handshake_timeout
                    .map_or(crate::DEFAULT_TLS_HANDSHAKE_TIMEOUT, |d| d.0),
            )
            .backlog(raw.backlog.unwrap_or(crate::DEFAULT_BACKLOG))
            .max_connections(
                raw.max_connections
                    .map_or(crate::DEFAULT_MAX_CONNECTIONS, NonZeroUsize::get),
            );
        let addr = raw.addr.map_or_else(super::default_addr, |a| a.0);
        let tls = raw.tls.map(|tls| self.check_tls(tls)).transpose()?;
        let max_concurrent_requests = raw.max_concurrent_requests.unwrap_or(
            NonZeroUsize::new(crate::DEFAULT_MAX_CONCURRENT_REQUESTS)
                .expect("the default is not zero"),
        );
        Ok((
            builder,
            addr,
            tls,
            max_concurrent_requests,
            raw.tenant_workers,
        ))
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

    /// The tenant, and its routes with where each is written.
    #[allow(clippy::type_complexity)]
    fn check_tenant(
        &self,
        raw: RawTenant,
        defaults: &TenantLimits,
    ) -> Result<(TenantConfig, Vec<(Route, Range<usize>)>), ConfigError> {
        let name_span = raw.name.span();
        let name = raw.name.into_inner();
        let in_tenant =
            |span: Range<usize>, what: String| self.error(span, format!("tenant '{name}': {what}"));
        let component_at = self.location(raw.component.span());
        let component = self.resolve(raw.component.get_ref());
        if !component.is_file() {
            return Err(in_tenant(
                raw.component.span(),
                format!("the component '{}' is not a file", component.display()),
            ));
        }
        if raw.routes.is_empty() {
            return Err(in_tenant(
                name_span,
                "no routes: give it at least one (HOST, HOST/PREFIX or /PREFIX)".into(),
            ));
        }
        let mut routes = Vec::with_capacity(raw.routes.len());
        for text in &raw.routes {
            let route = Route::parse(text.get_ref())
                .map_err(|error| in_tenant(text.span(), error.to_string()))?;
            if let Some((_, first)) = routes.iter().find(|(r, _)| *r == route) {
                let first = self.location(Range::clone(first));
                return Err(in_tenant(
                    text.span(),
                    format!("the route '{route}' is given twice (also at {first})"),
                ));
            }
            routes.push((route, text.span()));
        }

        let mut access = WasiAccess::default();
        for (key, value) in raw.env {
            let (key_text, value) = (key.get_ref(), value.into_inner());
            if key_text.is_empty() || key_text.contains(['=', '\0']) || value.contains('\0') {
                return Err(in_tenant(
                    key.span(),
                    format!("'{key_text}' cannot be an environment variable"),
                ));
            }
            access.env.push((key.into_inner(), value));
        }
        for (list, writable) in [(&raw.dirs, false), (&raw.dirs_rw, true)] {
            for text in list {
                let (host, guest) = text
                    .get_ref()
                    .split_once("::")
                    .unwrap_or((text.get_ref(), text.get_ref()));
                let host = self.resolve(host);
                let spec = format!("{}::{guest}", host.display());
                let dir =
                    Preopen::parse(&spec, writable).map_err(|why| in_tenant(text.span(), why))?;
                access.dirs.push(dir);
            }
        }
        let mut origins = Vec::with_capacity(raw.outbound.len());
        for text in &raw.outbound {
            origins.push(
                Origin::parse(text.get_ref())
                    .map_err(|error| in_tenant(text.span(), error.to_string()))?,
            );
        }
        access.outbound = Outbound::new(origins);

        let own = RawLimits {
            request_timeout: raw.request_timeout,
            max_memory: raw.max_memory,
            max_concurrent_requests: raw.max_concurrent_requests,
            max_body_size: raw.max_body_size,
        };
        let mut limits = self.limits(&own, defaults)?;
        limits.access = access;
        let tls = match raw.tls {
            Some(tls) if !routes.iter().any(|(r, _)| is_whole_host(r)) => {
                return Err(in_tenant(
                    tls.span(),
                    "it has a certificate but no route of a whole host (HOST or *.DOMAIN, \
                     without a path) to choose it by (SNI)"
                        .into(),
                ));
            }
            tls => tls.map(|tls| self.check_tls(tls)).transpose()?,
        };
        let (routes, spans): (Vec<Route>, Vec<Range<usize>>) = routes.into_iter().unzip();
        let tenant = TenantConfig {
            name,
            component,
            component_at,
            routes: routes.clone(),
            limits,
            tls,
        };
        Ok((tenant, routes.into_iter().zip(spans).collect()))
    }
}

/// Whether `route` covers a whole host: a tenant's certificate is chosen
/// by the hosts of such routes.
pub fn is_whole_host(route: &Route) -> bool {
    route.host != HostPattern::Any && route.prefix == "/"
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFile {
    server: RawServer,
    defaults: RawLimits,
    #[serde(rename = "tenant")]
    tenants: Vec<RawTenant>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    addr: Option<Addr>,
    http: Option<Versions>,
    shutdown_timeout: Option<Dur>,
    tls: Option<Spanned<RawTls>>,
    backlog: Option<u32>,
    max_connections: Option<NonZeroUsize>,
    max_concurrent_requests: Option<NonZeroUsize>,
    tenant_workers: Option<NonZeroUsize>,
    tls_handshake_timeout: Option<Dur>,
    header_read_timeout: Option<Dur>,
    max_header_size: Option<Spanned<Size>>,
    http1_keep_alive: Option<bool>,
    http1_max_headers: Option<usize>,
    http2_max_concurrent_streams: Option<u32>,
    http2_initial_stream_window: Option<Spanned<Size>>,
    http2_initial_connection_window: Option<Spanned<Size>>,
    http2_max_frame_size: Option<Spanned<Size>>,
    http2_keep_alive_interval: Option<Dur>,
    http2_keep_alive_timeout: Option<Dur>,
    http2_max_pending_accept_reset_streams: Option<usize>,
    http2_max_local_error_reset_streams: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<String>,
    key: Spanned<String>,
}

/// The limits a tenant may set, and `[defaults]` gives every tenant.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    request_timeout: Option<Dur>,
    max_memory: Option<Spanned<Size>>,
    max_concurrent_requests: Option<NonZeroUsize>,
    max_body_size: Option<Size>,
}

impl Source<'_> {
    /// `defaults` with what `raw` sets.
    fn limits(
        &self,
        raw: &RawLimits,
        defaults: &TenantLimits,
    ) -> Result<TenantLimits, ConfigError> {
        let mut limits = defaults.clone();
        if let Some(timeout) = &raw.request_timeout {
            limits.instance.request_timeout = timeout.0;
        }
        if let Some(size) = &raw.max_memory {
            // A 32-bit linear memory holds at most 4 GiB.
            if size.get_ref().0 > MAX_MEMORY_LIMIT {
                return Err(self.error(
                    size.span(),
                    "max_memory is too large: a WebAssembly memory holds at most 4GiB",
                ));
            }
            limits.instance.max_memory = usize::try_from(size.get_ref().0).unwrap_or(usize::MAX);
        }
        if let Some(max) = raw.max_concurrent_requests {
            limits.max_concurrent_requests = max.get();
        }
        if let Some(size) = &raw.max_body_size {
            limits.max_body_size = size.0;
        }
        Ok(limits)
    }
}

/// The most memory a tenant may be given: all a 32-bit memory can address.
const MAX_MEMORY_LIMIT: u64 = 4 << 30;

/// A tenant's `max_concurrent_requests` when neither it nor `[defaults]`
/// sets one: a tenth of the instance pool's default, so that one tenant
/// cannot take every slot.
pub const DEFAULT_TENANT_CONCURRENT_REQUESTS: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: Spanned<String>,
    component: Spanned<String>,
    #[serde(default)]
    routes: Vec<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    dirs: Vec<Spanned<String>>,
    #[serde(default)]
    dirs_rw: Vec<Spanned<String>>,
    #[serde(default)]
    outbound: Vec<Spanned<String>>,
    #[serde(default)]
    tls: Option<Spanned<RawTls>>,
    // The limits of `RawLimits`, written out: serde's `flatten` would lose
    // the spans and the check for unknown keys.
    request_timeout: Option<Dur>,
    max_memory: Option<Spanned<Size>>,
    max_concurrent_requests: Option<NonZeroUsize>,
    max_body_size: Option<Size>,
}

/// A duration written as text: `30s`, `500ms`, `2m`.
#[derive(Debug)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        super::parse_duration(&text)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// A size: a whole number of bytes, or text with a unit (`10MiB`).
#[derive(Debug)]
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Size;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: bytes, or text like \"10MiB\"")
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                super::parse_size(v).map(Size).map_err(E::custom)
            }
        }
        de.deserialize_any(Visitor)
    }
}

/// An address: `HOST:PORT`.
#[derive(Debug)]
struct Addr(SocketAddr);

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        text.parse().map(Addr).map_err(|_| {
            serde::de::Error::custom(format!(
                "'{text}' is not an address: expected IP:PORT, like 127.0.0.1:8080"
            ))
        })
    }
}

/// `both`, `http1` or `h2`.
#[derive(Debug)]
struct Versions(HttpVersions);

impl<'de> Deserialize<'de> for Versions {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        text.parse().map(Versions).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of ../shared/DESIGN.md, word for word.
    const DESIGN_EXAMPLE: &str = r#"[server]
addr = "127.0.0.1:8080"
http = "both"                 # both | http1 | h2 (ALPN over TLS; h2c by prior knowledge in cleartext)
shutdown_timeout = "30s"
tls = { cert = "certs/default.pem", key = "certs/default.key" }   # optional default certificate

[defaults]                    # every tenant inherits these unless it sets its own
request_timeout = "30s"
max_memory = "128MiB"
max_concurrent_requests = 100
max_body_size = "10MiB"

[[tenant]]
name = "shop"
component = "shop.wasm"       # relative to this file
routes = ["shop.example.com", "*.shop.example.com", "example.com/shop"]  # HOST, HOST/PREFIX, or /PREFIX (any host)
env = { MODE = "prod" }
outbound = ["https://api.example.net", "http://127.0.0.1:9000"]          # deny everything else
max_concurrent_requests = 20
tls = { cert = "certs/shop.pem", key = "certs/shop.key" }                # chosen by SNI

[[tenant]]
name = "blog"
component = "blog.wasm"
routes = ["blog.example.com", "/blog"]
"#;

    /// A folder with the files the example names (their contents do not
    /// matter to the checks).
    fn folder() -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("catshost-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(dir.join("certs")).unwrap();
        std::fs::create_dir_all(dir.join("static")).unwrap();
        for file in [
            "shop.wasm",
            "blog.wasm",
            "certs/default.pem",
            "certs/default.key",
            "certs/shop.pem",
            "certs/shop.key",
        ] {
            std::fs::write(dir.join(file), "").unwrap();
        }
        dir
    }

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(&folder().join("catshost.toml"), text)
    }

    #[test]
    fn the_design_example_is_valid() {
        let config = parse(DESIGN_EXAMPLE).unwrap();
        assert_eq!(config.addr.to_string(), "127.0.0.1:8080");
        assert!(
            config
                .tls
                .as_ref()
                .unwrap()
                .cert
                .ends_with("certs/default.pem")
        );
        let [shop, blog] = &config.tenants[..] else {
            panic!("two tenants")
        };
        assert_eq!(shop.name, "shop");
        assert!(shop.component.ends_with("shop.wasm"));
        assert_eq!(shop.component_at.line, 15);
        let routes: Vec<String> = shop.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            ["shop.example.com", "*.shop.example.com", "example.com/shop"]
        );
        assert_eq!(
            shop.limits.access.env,
            [("MODE".to_string(), "prod".to_string())]
        );
        assert!(!shop.limits.access.outbound.is_empty());
        // Its own limit, and the defaults for the rest.
        assert_eq!(shop.limits.max_concurrent_requests, 20);
        assert_eq!(blog.limits.max_concurrent_requests, 100);
        assert_eq!(blog.limits.max_body_size, 10 << 20);
        assert_eq!(blog.limits.instance.max_memory, 128 << 20);
        assert!(shop.tls.is_some() && blog.tls.is_none());
        assert!(blog.limits.access.outbound.is_empty());
    }

    #[test]
    fn mistakes_are_reported_at_their_line_and_column() {
        let tenant = "[[tenant]]\nname = \"a\"\ncomponent = \"shop.wasm\"\nroutes = [\"/a\"]\n";
        let cases: &[(String, &str, &str)] = &[
            ("[server]\nadr = \"x\"\n".into(), "2:1", "unknown field `adr`"),
            ("[server]\naddr = 8080\n".into(), "2:8", "invalid type"),
            ("[server]\naddr = \"localhost\"\n".into(), "2:8", "expected IP:PORT"),
            ("[server]\nshutdown_timeout = \"30\"\n".into(), "2:20", "invalid duration"),
            ("[server]\nhttp = \"h3\"\n".into(), "2:8", "unknown HTTP version"),
            ("[server]\nmax_connections = 0\n".into(), "2:19", "nonzero"),
            ("[server]\nhttp2_max_frame_size = \"1KiB\"\n".into(), "2:24", "out of range"),
            ("[defaults]\nmax_memory = \"1 TB\"\n".into(), "2:14", "invalid size"),
            ("[defaults]\nmax_body_size = -1\n".into(), "2:17", "negative"),
            ("[server\n".into(), "1:8", ""),
            (format!("{tenant}colour = \"red\"\n"), "5:1", "unknown field `colour`"),
            (format!("{tenant}env = {{ A = 1 }}\n"), "5:13", "invalid type"),
            (
                "[[tenant]]\nname = \"a\"\ncomponent = \"missing.wasm\"\nroutes = [\"/a\"]\n".into(),
                "3:13",
                "is not a file",
            ),
            (
                "[[tenant]]\nname = \"a\"\ncomponent = \"shop.wasm\"\n".into(),
                "2:8",
                "no routes",
            ),
            (
                "[[tenant]]\nname = \"a\"\ncomponent = \"shop.wasm\"\nroutes = [\"/a\", \"a.*.com\"]\n"
                    .into(),
                "4:17",
                "wildcard",
            ),
            (
                format!("{tenant}[[tenant]]\nname = \"b\"\ncomponent = \"blog.wasm\"\nroutes = [\"/b\", \"/a/\"]\n"),
                "8:17",
                "the route '/a' is also tenant 'a''s (at ",
            ),
            (
                format!("{tenant}[[tenant]]\nname = \"a\"\ncomponent = \"blog.wasm\"\nroutes = [\"/b\"]\n"),
                "6:8",
                "already defined at",
            ),
            (
                format!("{tenant}outbound = [\"ftp://x.org\"]\n"),
                "5:13",
                "http:// or https://",
            ),
            (
                format!("{tenant}dirs = [\"nowhere::/data\"]\n"),
                "5:9",
                "is not a directory",
            ),
            (
                format!("{tenant}tls = {{ cert = \"certs/shop.pem\", key = \"certs/shop.key\" }}\n"),
                "5:7",
                "no route of a whole host",
            ),
            (
                "[[tenant]]\nname = \"-\"\ncomponent = \"shop.wasm\"\nroutes = [\"/a\"]\n".into(),
                "2:8",
                "cannot name a tenant",
            ),
            ("[server]\n".into(), "2:1", "no [[tenant]]"),
            ("[defaults]\nmax_memory = \"5GiB\"\n".into(), "2:14", "at most 4GiB"),
            (
                "[[tenant]]\nname = \"a\"\ncomponent = \"shop.wasm\"\nroutes = [\"a.test/x\"]\n\
                 tls = { cert = \"certs/shop.pem\", key = \"certs/shop.key\" }\n"
                    .into(),
                "5:7",
                "no route of a whole host",
            ),
        ];
        for (text, at, message) in cases {
            let error = parse(text).unwrap_err();
            let location = error
                .location()
                .unwrap_or_else(|| panic!("{text}: {error}"));
            assert_eq!(
                format!("{}:{}", location.line, location.column),
                *at,
                "{text}\n{error}"
            );
            assert!(error.to_string().contains(message), "{text}\n{error}");
            assert!(error.to_string().contains("catshost.toml:"), "{error}");
        }
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let error = FileConfig::load(Path::new("/nonexistent/catshost.toml")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/catshost.toml"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]

        /// Any text: a config or an error that points into the text; never
        /// a panic.
        #[test]
        fn any_text_is_checked_without_panicking(text in "\\PC{0,200}") {
            check_no_panic(&text);
        }

        /// The example with a stretch of it replaced: near misses of a
        /// valid file, where the interesting mistakes are.
        #[test]
        fn mangled_examples_are_checked_without_panicking(
            start in 0..DESIGN_EXAMPLE.len(),
            len in 0usize..40,
            with in "[\\[\\]=\"{},.a-z0-9*/ \n#-]{0,12}",
        ) {
            let mut text = DESIGN_EXAMPLE.to_string();
            let start = (0..=start).rev().find(|&i| text.is_char_boundary(i)).unwrap();
            let end = (start + len).min(text.len());
            let end = (end..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap();
            text.replace_range(start..end, &with);
            check_no_panic(&text);
        }
    }

    fn check_no_panic(text: &str) {
        match parse(text) {
            Ok(config) => assert!(!config.tenants.is_empty()),
            Err(error) => {
                let location = error.location().expect("a parse error has a location");
                assert!(location.line >= 1 && location.line <= text.lines().count() + 1);
                assert!(location.column >= 1);
            }
        }
    }
}
