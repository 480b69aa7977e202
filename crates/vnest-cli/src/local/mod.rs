//! `vnest local`: throwaway control planes on this machine.
//!
//! `up` starts a background `vnest local serve NAME` process that owns the
//! control plane's processes (they die with it) and records its progress in a
//! state file; `up` follows that file, `list` reads it, `down` signals the
//! serving process and waits until everything is gone.

mod down;
mod list;
mod serve;
mod state;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Subcommand)]
pub(crate) enum LocalCommand {
    /// Start a local control plane and print the path of its kubeconfig.
    ///
    /// Runs etcd, kube-apiserver and kube-controller-manager (and with
    /// --with-scheduler kube-scheduler) as processes on free loopback ports,
    /// with certificates vnest issues. Progress goes to stderr; stdout gets
    /// only the kubeconfig's path, so scripts can do
    /// `export KUBECONFIG="$(vnest local up ci)"`.
    ///
    /// The upstream binaries come from $VNEST_UPSTREAM_BIN_DIR (what
    /// tools/upstream/build.sh prints) or from PATH.
    #[command(after_help = "Examples:\n  \
        vnest local up\n  \
        vnest local up ci-42 --kubeconfig-out ./kubeconfig\n  \
        kubectl --kubeconfig \"$(vnest local up dev)\" get namespaces")]
    Up(UpArgs),

    /// List the local control planes of this user.
    List(ListArgs),

    /// Stop a local control plane and remove everything it left on disk.
    #[command(after_help = "Examples:\n  vnest local down ci-42\n  vnest local down --all")]
    Down(DownArgs),

    /// Run a control plane in the foreground until SIGTERM (what `up` starts
    /// in the background).
    #[command(hide = true)]
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// The control plane's name: lower-case letters, digits and '-', at most 40.
    #[arg(default_value = "default")]
    pub name: String,
    /// Also copy the admin kubeconfig to this file.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig_out: Option<PathBuf>,
    #[command(flatten)]
    pub plane: PlaneArgs,
}

/// What `up` passes on to `serve`.
#[derive(Debug, Args, Clone)]
pub(crate) struct PlaneArgs {
    /// Also run kube-scheduler, so that pods get scheduled (to nodes that
    /// join later).
    #[arg(long)]
    pub with_scheduler: bool,
    /// How long each component may take to become ready.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2m")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct DownArgs {
    /// The control plane to stop.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Stop every local control plane.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    pub name: String,
    #[command(flatten)]
    pub plane: PlaneArgs,
}

pub(crate) async fn run(command: LocalCommand) -> anyhow::Result<ExitCode> {
    match command {
        LocalCommand::Up(args) => up::run(args).await,
        LocalCommand::List(args) => list::run(args),
        LocalCommand::Down(args) => down::run(args).await,
        LocalCommand::Serve(args) => serve::run(args).await,
    }
}
