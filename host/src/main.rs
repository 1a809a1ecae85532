//! The `catshost` command: parse the command line, run, exit with a status.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use catshost::config::ServeConfig;
use catshost::{Runtime, Server, Stop};
use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging();
    let result = match cli.command {
        cli::Command::Serve(serve) => serve_command(serve.into_config()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("catshost: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,catshost=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn serve_command(config: ServeConfig) -> anyhow::Result<()> {
    let stop = Stop::new();
    let mut builder = Server::builder();
    config.apply(&mut builder).map_err(anyhow::Error::msg)?;
    builder.stop(stop.clone());
    // Compile before building the runtime or binding anything: a bad
    // component is reported with nothing started.
    let runtime = Runtime::new()?;
    let handler = match &config.component {
        Some(path) => runtime.load_file(path)?,
        None => runtime.load_bytes("built-in demo", catshost::DEMO_COMPONENT)?,
    };
    let server = builder.build(handler);

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers.get())
        .thread_name("catshost-worker")
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    tokio.block_on(async {
        let signals = tokio::spawn(catshost::lifecycle::stop_on_signals(stop));
        let ready = server.ready();
        tokio::spawn(async move {
            if let Some(addr) = ready.await {
                eprintln!("catshost: serving http://{addr}");
            }
        });
        let served = server.serve_clear(config.addr).await;
        signals.abort();
        served
    })?;
    Ok(())
}
