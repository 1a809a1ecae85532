//! `catshost compile`: a component compiled to native code for the engine
//! `serve` uses with default settings.

use std::path::Path;

use anyhow::Context;
use catshost::Engine;
use catshost::config::TenantLimits;

use super::logging::with_spinner;
use super::say;

/// Compiles `component` and writes the result to `output`.
pub fn run(component: &Path, output: &Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let bytes = std::fs::read(component)
        .with_context(|| format!("failed to read '{}'", component.display()))?;
    let engine = Engine::with_pool(TenantLimits::default().pool())?;
    let name = component.display().to_string();
    let compiled = with_spinner(component, || engine.precompile(&name, &bytes))?;
    std::fs::write(output, &compiled)
        .with_context(|| format!("failed to write '{}'", output.display()))?;
    say(format_args!(
        "catshost: compiled {} ({} bytes) to {} ({} bytes) in {} ms",
        component.display(),
        bytes.len(),
        output.display(),
        compiled.len(),
        started.elapsed().as_millis()
    ));
    Ok(())
}
