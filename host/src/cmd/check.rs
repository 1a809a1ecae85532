//! `catshost check`: what a component exports and imports, against what
//! catshost serves and provides; or whether each tenant of a config file
//! can be served.

use std::path::{Path, PathBuf};

use anyhow::Context;
use catshost::Engine;
use catshost::config::file::FileConfig;

use super::logging::with_spinner;

/// Prints the report of `component` and of each of `middleware`, then
/// whether the chain of `middleware` in front of `component` can be built;
/// `Ok(false)` when something cannot be served.
pub fn run(component: &Path, middleware: &[PathBuf]) -> anyhow::Result<bool> {
    let engine = Engine::new()?;
    let mut servable = true;
    for path in middleware.iter().map(PathBuf::as_path).chain([component]) {
        let bytes =
            std::fs::read(path).with_context(|| format!("failed to read '{}'", path.display()))?;
        let name = path.display().to_string();
        let report = with_spinner(path, || engine.check(&name, &bytes))?;
        println!("{name}: a component of {} bytes", bytes.len());
        println!("{report}");
        servable &= report.is_servable();
        if !middleware.is_empty() {
            println!();
        }
    }
    if middleware.is_empty() {
        return Ok(servable);
    }
    let hops: Vec<String> = middleware
        .iter()
        .map(|p| p.display().to_string())
        .chain([component.display().to_string()])
        .collect();
    match chain(&engine, component, middleware) {
        Ok(()) => println!("chain: {}: can be served", hops.join(" -> ")),
        Err(error) => {
            servable = false;
            println!("chain: {}: cannot be served: {error:#}", hops.join(" -> "));
        }
    }
    Ok(servable)
}

/// Loads `middleware` and `component` and links the chain, as a tenant's
/// load does.
fn chain(engine: &Engine, component: &Path, middleware: &[PathBuf]) -> anyhow::Result<()> {
    let handler = engine.load_file(component)?;
    let middleware = middleware
        .iter()
        .map(|path| engine.load_middleware_file(path))
        .collect::<Result<Vec<_>, _>>()?;
    engine.chain(&middleware, &handler)?;
    Ok(())
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
                if report.is_servable() && !tenant.middleware.is_empty() {
                    chain(&engine, &tenant.component, &tenant.middleware)
                        .context("its middleware chain cannot be built")?;
                }
                Ok(Some(report))
            });
        let why_not = match &verdict {
            Err(error) => Some(format!("{error:#}")),
            Ok(Some(report)) if !report.is_servable() => Some(format!("\n{report}")),
            Ok(Some(report)) if report.is_middleware() => Some(
                "it is a middleware (it imports wasi:http/handler@0.3.x): list it in \
                 `middleware`, in front of a handler"
                    .into(),
            ),
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
