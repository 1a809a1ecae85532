//! The `catshost` command: parse the command line, turn it into settings,
//! run the command, exit with a status. What each command does is in
//! `cmd/`; the flags are in `cli.rs`.

mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: wasmtime allocates and frees a great deal per instance; about
/// 4% less CPU per request than glibc's malloc (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cmd::disable_library_backtraces();
    let cli = cli::Cli::parse();
    // Kept to the end: dropping it writes out the queued log lines.
    let _log = cmd::logging::init(cli.log_format);
    let result = match cli.command {
        cli::Command::Serve(serve) => cmd::serve::run(serve.settings()),
        cli::Command::Compile(args) => match (args.config, args.component, args.output) {
            (Some(config), _, _) => cmd::compile::run_config(&config, args.cache_dir),
            (None, Some(component), Some(output)) => cmd::compile::run(&component, &output),
            (None, _, _) => {
                unreachable!("clap requires a component and an output without --config")
            }
        },
        cli::Command::Check(args) => match match (args.config, args.component) {
            (Some(config), _) => cmd::check::run_config(&config),
            (None, Some(component)) => cmd::check::run(&component, &args.middleware),
            (None, None) => unreachable!("clap requires a component without --config"),
        } {
            Ok(true) => return ExitCode::SUCCESS,
            Ok(false) => return ExitCode::FAILURE,
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            cmd::say(format_args!("catshost: error: {error:#}"));
            ExitCode::FAILURE
        }
    }
}
