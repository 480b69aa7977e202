//! `vnest`: the command line of vnest.

mod host;
mod local;
mod map;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// vnest gives every tenant its own Kubernetes control plane.
///
/// Today the CLI runs throwaway control planes on this machine (`vnest local`),
/// for tests and CI jobs that need a real API server and no host cluster.
#[derive(Debug, Parser)]
#[command(
    name = "vnest",
    version,
    propagate_version = true,
    after_help = "Exit codes: 0 success, 1 error (the message says what to do), 130 interrupted.\n\
                  Docs: docs/local-control-plane.md"
)]
struct Cli {
    /// Log filter for vnest's own diagnostics on stderr (e.g. `debug`).
    #[arg(long, global = true, env = "VNEST_LOG", default_value = "warn")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Throwaway control planes on this machine, for tests and CI (no host cluster needed).
    #[command(subcommand)]
    Local(local::LocalCommand),
    /// Which host object a tenant object became (or, with --host, back).
    Map(map::MapArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Local(command) => local::run(command).await,
            Command::Map(args) => map::run(args).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
