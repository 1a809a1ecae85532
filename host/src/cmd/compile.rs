//! `catshost compile`: a component compiled to native code for the engine
//! `serve` uses with default settings; or a config file's components
//! compiled into the compile cache, with the engine `serve --config` uses.

use std::path::Path;

use anyhow::Context;
use catshost::Engine;
use catshost::config::TenantLimits;
use catshost::config::file::FileConfig;

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

/// Compiles every tenant's component of the config file at `config` into
/// the compile cache `cache_dir` (serve's default without it), with the
/// engine settings `serve --config` uses, so their cache entries are the
/// ones it looks up.
pub fn run_config(config: &Path, cache_dir: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let started = std::time::Instant::now();
    let file = FileConfig::load(config)?;
    let cache = cache_dir
        .or_else(catshost::config::default_cache_dir)
        .context(
            "no compile cache folder: give --cache-dir (neither XDG_CACHE_HOME nor HOME is set)",
        )?;
    // As `serve` checks it: no guest may reach the cache.
    file.check_preopens(Some(&cache))?;
    let pool = catshost::config::pool(file.max_concurrent_requests.get(), file.max_memory());
    let engine = Engine::with_pool(pool)?.with_compile_cache(cache.clone());
    // Each file once; precompiled ones are loaded as they are, not cached.
    let mut paths: Vec<(&Path, bool)> = Vec::new();
    for tenant in &file.tenants {
        if !tenant.unsafe_allow_precompiled && !paths.iter().any(|(p, _)| *p == tenant.component) {
            paths.push((&tenant.component, false));
        }
        for middleware in &tenant.middleware {
            if !paths.iter().any(|(p, _)| p == middleware) {
                paths.push((middleware, true));
            }
        }
    }
    let bar = indicatif::ProgressBar::new(paths.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("compiling {pos}/{len} {wide_bar} {elapsed} {msg}")
            .expect("the template is valid"),
    );
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut failed = Vec::new();
    for &(path, middleware) in &paths {
        bar.set_message(path.display().to_string());
        let loaded = match middleware {
            true => engine.load_middleware_file(path).map(drop),
            false => engine.load_file(path).map(drop),
        };
        if let Err(error) = loaded {
            failed.push(format!(
                "{}: {:#}",
                path.display(),
                anyhow::Error::from(error)
            ));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    say(format_args!(
        "catshost: {} of {} components of {} in the compile cache {} ({} ms)",
        paths.len() - failed.len(),
        paths.len(),
        config.display(),
        cache.display(),
        started.elapsed().as_millis()
    ));
    if failed.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{} components cannot be compiled:\n  {}",
        failed.len(),
        failed.join("\n  ")
    )
}
