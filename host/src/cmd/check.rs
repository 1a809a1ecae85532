//! `catshost check`: what a component exports and imports, against what
//! catshost serves and provides; or whether each tenant of a config file
//! can be served.

use std::path::Path;

use anyhow::Context;
use catshost::Engine;
use catshost::config::file::FileConfig;

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

/// Checks the config file at `config` and each tenant's component (as a
/// tenant's first request would load it); `Ok(false)` when any cannot be
/// served.
pub fn run_config(config: &Path) -> anyhow::Result<bool> {
    let file = FileConfig::load(config)?;
    let engine = Engine::new()?;
    let mut servable = 0;
    for tenant in &file.tenants {
        let name = tenant.component.display().to_string();
        let verdict = std::fs::read(&tenant.component)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| {
                if tenant.unsafe_allow_precompiled && Engine::is_precompiled(&bytes) {
                    // SAFETY: its tenant's entry allows precompiled code:
                    // the operator vouches for the file.
                    unsafe { engine.load_bytes_allowing_precompiled(&name, &bytes) }?;
                    return Ok(None);
                }
                let report = engine.check(&name, &bytes)?;
                Ok(Some(report))
            });
        let why_not = match &verdict {
            Err(error) => Some(format!("{error:#}")),
            Ok(Some(report)) if !report.is_servable() => Some(format!("\n{report}")),
            Ok(Some(report)) if tenant.limits.websockets && !report.serves_websockets() => Some(
                "`websockets = true`, but it exports no catshost:websocket/handler@0.1.0 \
                 (docs/websockets.md)"
                    .into(),
            ),
            Ok(_) => None,
        };
        match why_not {
            None => {
                servable += 1;
                println!("tenant '{}': {name}: can be served", tenant.name);
            }
            Some(why) => println!("tenant '{}': {name}: cannot be served: {why}", tenant.name),
        }
    }
    println!(
        "{}: {servable} of {} tenants can be served",
        config.display(),
        file.tenants.len()
    );
    Ok(servable == file.tenants.len())
}
