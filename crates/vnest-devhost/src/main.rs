//! `vnest-devhost`: development and test tooling, kept apart from vnest's
//! product code. Builds the images a local host cluster needs.

mod images;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "vnest-devhost", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Assemble the development images as OCI archives (no daemon, no registry).
    Images {
        /// Where to write `<image>.tar`.
        #[arg(long, default_value = "target/devhost-images")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Images { out } => images::build_all(&out).map(|written| {
            for path in written {
                println!("{}", path.display());
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
