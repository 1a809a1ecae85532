//! What a component exports and imports, set against what catshost serves
//! and provides: `catshost check`, and the error `serve` gives for a
//! component whose imports cannot all be satisfied.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// The interfaces the host's linker defines (WASI 0.2's command surface
/// and `wasi:http`'s imports), at any `0.2.x` version: wasmtime matches
/// semver-compatible versions.
const PROVIDED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stderr",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stderr",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:http/outgoing-handler",
    "wasi:http/types",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:random/random",
    "wasi:sockets/instance-network",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
];

/// The interfaces the host's linker defines for WASI 0.3 components, at any
/// `0.3.x` version, besides [`PROVIDED`] (which they may import too).
const PROVIDED_P3: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stderr",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stderr",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/types",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/system-clock",
    "wasi:clocks/types",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:http/client",
    "wasi:http/types",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:random/random",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/types",
];

/// What the host grants through a provided interface, for the report.
fn grant(interface: &str) -> &'static str {
    match interface {
        "wasi:cli/environment" => "only --env (or the tenant's env) variables",
        "wasi:filesystem/preopens" | "wasi:filesystem/types" => {
            "only --dir (or the tenant's dirs) directories"
        }
        "wasi:sockets/instance-network"
        | "wasi:sockets/tcp"
        | "wasi:sockets/udp"
        | "wasi:sockets/types" => "linked, every socket denied",
        "wasi:sockets/ip-name-lookup" => "linked, every lookup denied",
        "wasi:http/outgoing-handler" | "wasi:http/client" => {
            "only the tenant's outbound origins (none by default)"
        }
        "wasi:cli/stdout" | "wasi:cli/stderr" => "lines go to the log",
        "wasi:cli/stdin" => "empty",
        _ => "",
    }
}

/// What a middleware imports: the next hop of its chain, without its
/// version.
const NEXT_HOP: &str = "wasi:http/handler";

/// The host interface of WebSocket handlers (wit/websocket), without its
/// version.
const WEBSOCKET_SOCKETS: &str = "catshost:websocket/sockets";

/// The world a component is served as, from its exports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Served {
    /// `wasi:http/incoming-handler@0.2.x`: the WASI 0.2 proxy world.
    Proxy(String),
    /// `wasi:http/handler@0.3.x`: WASI 0.3's `wasi:http/service` world.
    Service(String),
    /// `wasi:http/handler@0.3.x`, exported and imported: WASI 0.3's
    /// `wasi:http/middleware` world, served in front of a handler.
    Middleware(String),
    /// Neither.
    Nothing,
}

/// One import and whether the host satisfies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    /// As the component names it (`wasi:io/streams@0.2.6`).
    pub name: String,
    /// `None` when provided, else why not.
    pub missing: Option<String>,
    /// What the host grants through it (`only --env variables`, ...).
    pub grant: &'static str,
}

/// A component's exports and imports, against what catshost serves.
#[derive(Clone, Debug)]
pub struct Report {
    /// Every export's name.
    pub exports: Vec<String>,
    /// The world catshost would serve it as.
    pub served: Served,
    /// Every import, with its status.
    pub imports: Vec<Import>,
    /// Why wasmtime refuses to link the component, when it does.
    pub link_error: Option<String>,
}

impl Report {
    /// Reads the exports and imports of `component`.
    pub fn new(engine: &Engine, component: &Component) -> Self {
        let ty = component.component_type();
        let mut exports = Vec::new();
        let mut served = Served::Nothing;
        for (name, item) in ty.exports(engine) {
            let instance = matches!(item.ty, ComponentItem::ComponentInstance(_));
            if instance && name.starts_with("wasi:http/handler@0.3") {
                served = Served::Service(name.to_string());
            } else if instance
                && name.starts_with("wasi:http/incoming-handler@0.2")
                && served == Served::Nothing
            {
                served = Served::Proxy(name.to_string());
            }
            exports.push(name.to_string());
        }
        if let Served::Service(export) = &served
            && super::chain::imports_handler(engine, component)
        {
            served = Served::Middleware(export.clone());
        }
        let imports = ty
            .imports(engine)
            .map(|(name, _)| {
                let (interface, version) = name.split_once('@').unwrap_or((name, ""));
                let p3 = matches!(served, Served::Service(_) | Served::Middleware(_));
                if interface == NEXT_HOP && matches!(served, Served::Middleware(_)) {
                    let missing = (!version.starts_with("0.3."))
                        .then(|| format!("version {version} is not served (catshost links 0.3.x)"));
                    return Import {
                        name: name.to_string(),
                        grant: if missing.is_none() {
                            "the next hop of its chain"
                        } else {
                            ""
                        },
                        missing,
                    };
                }
                let in_p2 = PROVIDED.contains(&interface);
                let in_p3 = p3 && PROVIDED_P3.contains(&interface);
                let missing = match (in_p2 || in_p3, version) {
                    // WebSocket handlers' host interface (WASI 0.2 only).
                    _ if interface == WEBSOCKET_SOCKETS && !p3 && version.starts_with("0.1.") => {
                        None
                    }
                    (true, v) if in_p2 && v.starts_with("0.2.") => None,
                    (true, v) if in_p3 && v.starts_with("0.3.") => None,
                    (true, _) => Some(format!(
                        "version {} is not served (catshost provides {})",
                        if version.is_empty() {
                            "(none)"
                        } else {
                            version
                        },
                        match (in_p2, in_p3) {
                            (true, true) => "0.2.x and 0.3.x",
                            (true, false) => "0.2.x",
                            _ => "0.3.x",
                        }
                    )),
                    (false, _) => Some("not provided by catshost".to_string()),
                };
                Import {
                    name: name.to_string(),
                    grant: if missing.is_none() && interface == WEBSOCKET_SOCKETS {
                        "the instance's own WebSockets, and its tenant's rooms"
                    } else if missing.is_none() {
                        grant(interface)
                    } else {
                        ""
                    },
                    missing,
                }
            })
            .collect();
        Self {
            exports,
            served,
            imports,
            link_error: None,
        }
    }

    /// Whether `catshost serve` would serve the component: as a handler,
    /// or (a middleware) in front of one.
    pub fn is_servable(&self) -> bool {
        matches!(
            self.served,
            Served::Proxy(_) | Served::Service(_) | Served::Middleware(_)
        ) && self.link_error.is_none()
    }

    /// Whether it is a middleware: served only in front of a handler.
    pub fn is_middleware(&self) -> bool {
        matches!(self.served, Served::Middleware(_))
    }

    /// Whether it exports a WebSocket handler (`catshost:websocket/handler`).
    pub fn serves_websockets(&self) -> bool {
        self.exports
            .iter()
            .any(|e| e.starts_with("catshost:websocket/handler@"))
    }

    /// The imports the host cannot satisfy.
    pub fn missing(&self) -> impl Iterator<Item = &Import> {
        self.imports.iter().filter(|i| i.missing.is_some())
    }
}

/// The report as `catshost check` prints it: the world, the exports, every
/// import with its status, and the verdict on the last line.
impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.served {
            Served::Proxy(export) => {
                writeln!(f, "world: wasi:http/proxy (WASI 0.2), exporting {export}")?
            }
            Served::Service(export) => {
                writeln!(f, "world: wasi:http/service (WASI 0.3), exporting {export}")?
            }
            Served::Middleware(export) => writeln!(
                f,
                "world: wasi:http/middleware (WASI 0.3), exporting and importing {export}: \
                 a middleware, served in front of a WASI 0.3 handler (--middleware, or a \
                 tenant's `middleware`)"
            )?,
            Served::Nothing => writeln!(
                f,
                "world: none catshost serves (no wasi:http/incoming-handler@0.2.x or \
                 wasi:http/handler@0.3.x export)"
            )?,
        }
        if let Some(handler) = self
            .exports
            .iter()
            .find(|e| e.starts_with("catshost:websocket/handler@"))
        {
            writeln!(f, "websockets: served by {handler} (docs/websockets.md)")?;
        }
        let exports = match self.exports.is_empty() {
            true => "nothing".to_string(),
            false => self.exports.join(", "),
        };
        writeln!(f, "exports: {exports}")?;
        let missing = self.missing().count();
        let provided = match missing {
            0 => "all provided".to_string(),
            n => format!("{n} not provided"),
        };
        writeln!(f, "imports: {}, {provided}", self.imports.len())?;
        let width = self.imports.iter().map(|i| i.name.len()).max().unwrap_or(0);
        for import in &self.imports {
            let status = match (&import.missing, import.grant) {
                (Some(why), _) => format!("MISSING: {why}"),
                (None, "") => "provided".to_string(),
                (None, grant) => format!("provided: {grant}"),
            };
            writeln!(f, "  {:width$}  {status}", import.name)?;
        }
        if let Some(error) = &self.link_error
            && missing == 0
            && self.served != Served::Nothing
        {
            writeln!(f, "link: {error}")?;
        }
        match (self.is_servable(), self.is_middleware()) {
            (true, true) => write!(f, "catshost can serve it in front of a handler"),
            (true, false) => write!(f, "catshost can serve it"),
            (false, _) => write!(f, "catshost cannot serve it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provided_list_is_sorted_and_every_grant_names_a_provided_interface() {
        assert!(PROVIDED.windows(2).all(|w| w[0] < w[1]));
        assert!(PROVIDED_P3.windows(2).all(|w| w[0] < w[1]));
        for interface in [
            "wasi:cli/environment",
            "wasi:filesystem/types",
            "wasi:sockets/tcp",
            "wasi:http/outgoing-handler",
        ] {
            assert!(PROVIDED.contains(&interface));
            assert!(!grant(interface).is_empty());
        }
    }
}
