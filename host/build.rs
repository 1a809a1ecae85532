//! Builds the demo component embedded in the binary (`catshost serve` with
//! no file) from `demo/demo.wat` and the WIT in the workspace's `wit/`.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let demo = PathBuf::from("demo/demo.wat");
    println!("cargo::rerun-if-changed={}", demo.display());
    println!(
        "cargo::rerun-if-changed={}",
        catshost_wat::wit_dir().display()
    );
    println!(
        "cargo::rerun-if-changed={}",
        catshost_wat::prelude_path().display()
    );

    versions()?;
    let wit = catshost_wat::Wit::workspace()?;
    let component = wit.component_from_wat_file(&demo)?;
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("demo.wasm"), component)?;
    Ok(())
}

/// The wasmtime version this build links (from the workspace's Cargo.lock)
/// and the WASI version of the WIT it serves, for `catshost --version`.
fn versions() -> anyhow::Result<()> {
    println!("cargo::rerun-if-changed=../Cargo.lock");
    let lock = std::fs::read_to_string("../Cargo.lock").unwrap_or_default();
    let wasmtime = lock
        .split("[[package]]")
        .find(|package| package.contains("\nname = \"wasmtime\"\n"))
        .and_then(|package| package.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "48".to_string());
    let http = std::fs::read_to_string(catshost_wat::wit_dir().join("deps/http.wit"))?;
    let wasi = http
        .lines()
        .find_map(|l| l.strip_prefix("package wasi:http@"))
        .map(|v| v.trim_end_matches(';').to_string())
        .unwrap_or_else(|| "0.2".to_string());
    println!("cargo::rustc-env=CATSHOST_WASMTIME_VERSION={wasmtime}");
    println!("cargo::rustc-env=CATSHOST_WASI_VERSION={wasi}");
    Ok(())
}
