//! What the `catshost` binary does besides parsing its flags: one module per
//! command (`serve`, `compile`, `check`), and what serving as a process
//! takes (logging, signals, telling a supervisor, reloading the config).

pub mod announce;
pub mod check;
pub mod compile;
pub mod logging;
pub mod reload;
pub mod serve;
pub mod signals;

/// wasmtime makes an error value each time a store is dropped, and with
/// `RUST_BACKTRACE=1` in the environment every one captures a backtrace:
/// ~6 us per request of a 19 us instance cost (bench/README.md). Library
/// backtraces are off unless `RUST_LIB_BACKTRACE` asks for them; panics
/// still follow `RUST_BACKTRACE`.
pub fn disable_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called first thing in `main`, before any other thread
        // exists that could read the environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

/// Writes a line to stderr. A stderr that is gone (a closed pipe) is no
/// reason to fail: the line is dropped (`eprintln!` would panic).
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
