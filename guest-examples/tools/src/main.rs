//! The two steps of building a guest that need wasm-tools or wit-bindgen,
//! as library calls (their CLIs take ~12 CPU-minutes each to install here):
//!
//! ```text
//! guest-tools c-bindings WIT_DIR WORLD OUT_DIR
//!     C bindings of WORLD (wit-bindgen c): WORLD.h, WORLD.c and
//!     WORLD_component_type.o
//! guest-tools component CORE.wasm OUT.wasm [proxy|reactor]
//!     a component from a core module with its WIT in a custom section
//!     (wasm-tools component new); WASI preview1 imports, if any, are
//!     adapted with wasmtime 48's adapter for the proxy world (default) or
//!     a reactor (the whole WASI 0.2 command surface)
//! guest-tools adapter proxy|reactor OUT.wasm
//!     writes that adapter (ComponentizeJS takes it as a file)
//! ```

use std::path::Path;

use anyhow::{Context, bail};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["c-bindings", wit, world, out] => c_bindings(Path::new(wit), world, Path::new(out)),
        ["component", core, out] => component(Path::new(core), Path::new(out), "proxy"),
        ["component", core, out, adapter] => component(Path::new(core), Path::new(out), adapter),
        ["adapter", adapter, out] => std::fs::write(out, adapter_bytes(adapter)?)
            .with_context(|| format!("failed to write '{out}'")),
        _ => bail!(
            "usage: guest-tools c-bindings WIT_DIR WORLD OUT_DIR\n       \
             guest-tools component CORE.wasm OUT.wasm [proxy|reactor]\n       \
             guest-tools adapter proxy|reactor OUT.wasm"
        ),
    }
}

fn c_bindings(wit: &Path, world: &str, out: &Path) -> anyhow::Result<()> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(wit)
        .with_context(|| format!("failed to read the WIT in '{}'", wit.display()))?;
    let world = resolve.select_world(&[package], Some(world))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    std::fs::create_dir_all(out)?;
    for (name, contents) in files.iter() {
        let path = out.join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("failed to write '{}'", path.display()))?;
    }
    Ok(())
}

fn component(core: &Path, out: &Path, adapter: &str) -> anyhow::Result<()> {
    let module =
        std::fs::read(core).with_context(|| format!("failed to read '{}'", core.display()))?;
    let adapter = adapter_bytes(adapter)?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)?
        .adapter("wasi_snapshot_preview1", adapter)?
        .validate(true)
        .encode()
        .with_context(|| format!("failed to make a component of '{}'", core.display()))?;
    std::fs::write(out, component).with_context(|| format!("failed to write '{}'", out.display()))
}

/// wasmtime 48's WASI preview1 adapter for the proxy world, or for a reactor.
fn adapter_bytes(name: &str) -> anyhow::Result<&'static [u8]> {
    match name {
        "proxy" => Ok(WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER),
        "reactor" => Ok(WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER),
        other => bail!("unknown adapter '{other}': expected proxy or reactor"),
    }
}
