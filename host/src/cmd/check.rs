//! `catshost check`: what a component exports and imports, against what
//! catshost serves and provides.

use std::path::Path;

use anyhow::Context;
use catshost::Engine;

use super::logging::with_spinner;

/// Prints the report of `component`; `Ok(false)` when it cannot be served.
pub fn run(component: &Path) -> anyhow::Result<bool> {
    let bytes = std::fs::read(component)
        .with_context(|| format!("failed to read '{}'", component.display()))?;
    let engine = Engine::new()?;
    let name = component.display().to_string();
    let report = with_spinner(component, || engine.check(&name, &bytes))?;
    println!("{name}: a component of {} bytes", bytes.len());
    println!("{report}");
    Ok(report.is_servable())
}
