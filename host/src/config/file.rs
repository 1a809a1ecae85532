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
        assert_eq!(shop.access.env, [("MODE".to_string(), "prod".to_string())]);
        assert!(!shop.access.outbound.is_empty());
        // Its own limit, and the defaults for the rest.
        assert_eq!(shop.limits.max_concurrent_requests, 20);
        assert_eq!(blog.limits.max_concurrent_requests, 100);
        assert_eq!(blog.limits.max_body_size, 10 << 20);
        assert_eq!(blog.limits.instance.max_memory, 128 << 20);
        assert!(shop.tls.is_some() && blog.tls.is_none());
        assert!(blog.access.outbound.is_empty());
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
            ("[server]\ntrusted_proxies = \"10.0.0.0/8\"\n".into(), "2:19", "an array"),
            ("[server]\ntrusted_proxies = [\"10/8\"]\n".into(), "2:19", "is not a network"),
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
                "[defaults]\nrequest_timeout = \"10000000000000000000s\"\n".into(),
                "2:19",
                "at most a year",
            ),
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

    /// A tenant and `[defaults]` take every limit of `LIMIT_SETTINGS`, and
    /// `[server]` every setting of `SERVER_SETTINGS`, by its key.
    #[test]
    fn every_setting_of_the_tables_is_a_key_of_the_file() {
        let limits: String = LIMIT_SETTINGS
            .iter()
            .map(|s| {
                format!(
                    "{} = {}\n",
                    s.key,
                    s.show(&TenantLimits::default())
                        .map_or("1".into(), |v| format!("\"{v}\""))
                )
            })
            .collect();
        let server: String = SERVER_SETTINGS
            .iter()
            .filter_map(|s| {
                Some(format!(
                    "{} = \"{}\"\n",
                    s.key,
                    s.show(&ServerSettings::default())?
                ))
            })
            .collect();
        let text = format!(
            "[server]\n{server}[defaults]\n{limits}[[tenant]]\nname = \"a\"\ncomponent = \"shop.wasm\"\nroutes = [\"/a\"]\n{limits}"
        );
        let config = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.server, ServerSettings::default());
        // The settings whose default shows nothing were written as 1.
        let mut limits = TenantLimits::default();
        limits.instance.reuse.max_instance_reuse_count = Some(1);
        limits.instance.reuse.max_instance_concurrent_reuse_count = Some(1);
        limits.max_requests_per_second = Some(1);
        assert_eq!(config.tenants[0].limits, limits);
    }

    #[test]
    fn trusted_proxies_are_an_array_of_networks() {
        let tenant = "[[tenant]]\nname = \"a\"\ncomponent = \"shop.wasm\"\nroutes = [\"/a\"]\n";
        let text = format!("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n{tenant}");
        let proxies = parse(&text).unwrap().server.trusted_proxies;
        assert_eq!(proxies.to_string(), "10.0.0.0/8, ::1/128");
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
