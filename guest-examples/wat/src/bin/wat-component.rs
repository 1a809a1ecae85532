//! Builds a component from a WAT guest (a module body written after the
//! shared prelude): `wat-component GUEST.wat OUT.wasm`.

use std::path::PathBuf;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [guest, out] = args.as_slice() else {
        bail!("usage: wat-component GUEST.wat OUT.wasm");
    };
    let component = catshost_wat::Wit::workspace()?.component_from_wat_file(guest)?;
    std::fs::write(out, component)
        .with_context(|| format!("failed to write '{}'", out.display()))?;
    Ok(())
}
