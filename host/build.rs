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

    let wit = catshost_wat::Wit::workspace()?;
    let component = wit.component_from_wat_file(&demo)?;
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("demo.wasm"), component)?;
    Ok(())
}
