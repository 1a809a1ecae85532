//! Prints the core imports and exports a WAT guest of the catshost world must
//! use (`cargo run -p catshost-wat --bin wat-signatures`).

fn main() -> anyhow::Result<()> {
    print!("{}", catshost_wat::Wit::workspace()?.import_signatures()?);
    Ok(())
}
