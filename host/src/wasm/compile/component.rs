//! What a component's bytes are before wasmtime compiles them: binary or
//! text, a component or not, and which `wasi:http` world it is served as.

use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::error::Error;

/// The WASI version of a `wasi:http` component: which handler it exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wasi {
    /// `wasi:http/incoming-handler@0.2.x`.
    P2,
    /// `wasi:http/handler@0.3.x`; served as such when a component exports
    /// both.
    P3,
}

impl Wasi {
    /// `WASI 0.2` or `WASI 0.3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::P2 => "WASI 0.2",
            Self::P3 => "WASI 0.3",
        }
    }
}

/// The interfaces a component may export to be served, without their
/// versions: any `wasi:http/incoming-handler@0.2.x` (WASI 0.2) or
/// `wasi:http/handler@0.3.x` (WASI 0.3, the `wasi:http/service` world).
const P2_HANDLER: &str = "wasi:http/incoming-handler@0.2";
pub(super) const P3_HANDLER: &str = "wasi:http/handler@0.3";

/// Refuses a component that exports no handler catshost serves.
pub(super) fn check_exports(
    engine: &wasmtime::Engine,
    name: &str,
    component: &Component,
) -> Result<(), Error> {
    let ty = component.component_type();
    let mut exports = Vec::new();
    for (export, item) in ty.exports(engine) {
        if (export.starts_with(P2_HANDLER) || export.starts_with(P3_HANDLER))
            && matches!(item.ty, ComponentItem::ComponentInstance(_))
        {
            return Ok(());
        }
        exports.push(export.to_string());
    }
    Err(Error::NoHandlerExport {
        name: name.into(),
        exports: if exports.is_empty() {
            "nothing".into()
        } else {
            exports.join(", ")
        },
    })
}

/// The WASI version a component is served as, read from its top-level
/// exports before it is compiled (it decides the engine): WASI 0.3 when it
/// exports `wasi:http/handler@0.3.x`, else WASI 0.2 (whose engine also
/// reports what is wrong with a component that exports neither).
pub(super) fn wasi_of(binary: &[u8]) -> Wasi {
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(binary) {
        match payload {
            Ok(wasmparser::Payload::ModuleSection { .. })
            | Ok(wasmparser::Payload::ComponentSection { .. }) => depth += 1,
            Ok(wasmparser::Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(wasmparser::Payload::ComponentExportSection(exports)) if depth == 0 => {
                for export in exports.into_iter().flatten() {
                    if export.name.full_name().starts_with(P3_HANDLER) {
                        return Wasi::P3;
                    }
                }
            }
            // Compiling says what is wrong with it.
            Err(_) => return Wasi::P2,
            Ok(_) => {}
        }
    }
    Wasi::P2
}

/// The binary component of `bytes`: as they are, or parsed from the text
/// format; refused when they are not a component.
pub(super) fn to_binary<'a>(
    name: &str,
    bytes: &'a [u8],
) -> Result<std::borrow::Cow<'a, [u8]>, Error> {
    let binary = if bytes.starts_with(b"\0asm") {
        std::borrow::Cow::Borrowed(bytes)
    } else if let Some(text) = as_wat_text(bytes) {
        std::borrow::Cow::Owned(wat::parse_str(text).map_err(|source| Error::Wat {
            name: name.into(),
            source,
        })?)
    } else {
        return Err(Error::NotAComponent {
            name: name.into(),
            what: "not WebAssembly",
        });
    };
    if !wasmparser::Parser::is_component(&binary) {
        return Err(Error::NotAComponent {
            name: name.into(),
            what: if wasmparser::Parser::is_core_wasm(&binary) {
                "a core WebAssembly module"
            } else {
                "not WebAssembly"
            },
        });
    }
    Ok(binary)
}

/// `bytes` as text if they look like WebAssembly text: UTF-8 whose first
/// token opens an s-expression or a comment.
fn as_wat_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    let start = text.trim_start();
    (start.starts_with('(') || start.starts_with(";;")).then_some(text)
}
