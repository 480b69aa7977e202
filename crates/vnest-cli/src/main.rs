//! `vnest`: the command line of vnest.

mod clusters;
mod exit;
mod host;
mod install;
mod local;
mod map;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

/// vnest gives every tenant its own Kubernetes control plane.
///
/// On a host cluster, vnest turns VirtualCluster objects into tenant control
/// planes (`vnest install` puts vnest on the host; `vnest create` makes one;
/// `vnest run` makes one for a single command). Everything it does is a
/// VirtualCluster object, so GitOps can do the same. `vnest local` runs a
/// throwaway control plane on this machine, with no host cluster.
///
/// The host is reached as kubectl reaches it: --kubeconfig, $KUBECONFIG,
/// ~/.kube/config, and --context. Installed as `kubectl-vnest` on the PATH,
/// vnest is also a kubectl plugin: `kubectl vnest list`.
#[derive(Debug, Parser)]
#[command(
    name = "vnest",
    version,
    propagate_version = true,
    after_help = exit::HELP
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
    /// Install or upgrade vnest (CRD, supervisor, RBAC) on the host cluster.
    Install(install::InstallArgs),
    /// Remove vnest from the host cluster (refused while VirtualClusters exist).
    Uninstall(install::UninstallArgs),
    /// Create a virtual cluster.
    Create(clusters::create::CreateArgs),
    /// List virtual clusters.
    #[command(visible_alias = "ls")]
    List(clusters::list::ListArgs),
    /// Show a virtual cluster: spec, conditions, endpoint, events, isolation.
    Describe(clusters::describe::DescribeArgs),
    /// Print or write a virtual cluster's admin kubeconfig.
    Kubeconfig(clusters::kubeconfig::KubeconfigArgs),
    /// Add a context for a virtual cluster to your kubeconfig (port-forwarding
    /// when its endpoint is not reachable from here).
    Connect(clusters::connect::ConnectArgs),
    /// Delete a virtual cluster and everything of it on the host.
    #[command(visible_alias = "rm")]
    Delete(clusters::lifecycle::DeleteArgs),
    /// Scale a virtual cluster's control plane to zero, keeping its data.
    Pause(clusters::lifecycle::NameArgs),
    /// Bring a paused virtual cluster back.
    Resume(clusters::lifecycle::NameArgs),
    /// Renew every leaf certificate of a virtual cluster's control plane now
    /// (same CAs; its pods roll).
    RenewCertificates(clusters::renew::RenewArgs),
    /// Take a consistent snapshot of a virtual cluster's etcd into a local file.
    Snapshot(clusters::snapshot::SnapshotArgs),
    /// Bring a virtual cluster's etcd back from a snapshot file (over a
    /// paused cluster, or into a new one).
    Restore(clusters::restore::RestoreArgs),
    /// List a virtual cluster's scheduled snapshots (spec.backup), or fetch
    /// one into a local file.
    Backups(clusters::backups::BackupsArgs),
    /// Run a command against an ephemeral virtual cluster, deleted afterwards.
    Run(clusters::run::RunArgs),
    /// Prove a virtual cluster's isolation: its layers on the host, and a
    /// probe pod inside it trying every way out.
    Verify(clusters::verify::VerifyArgs),
    /// Which host object a tenant object became (or, with --host, back).
    Map(map::MapArgs),
    /// Throwaway control planes on this machine, for tests and CI (no host cluster needed).
    #[command(subcommand)]
    Local(local::LocalCommand),
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
        vnest completion bash > /etc/bash_completion.d/vnest\n  \
        vnest completion zsh > \"${fpath[1]}/_vnest\"\n  \
        vnest completion fish > ~/.config/fish/completions/vnest.fish")]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
    if let Command::Completion { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "vnest", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Install(args) => install::run_install(args).await,
            Command::Uninstall(args) => install::run_uninstall(args).await,
            Command::Create(args) => clusters::create::run(args).await,
            Command::List(args) => clusters::list::run(args).await,
            Command::Describe(args) => clusters::describe::run(args).await,
            Command::Kubeconfig(args) => clusters::kubeconfig::run(args).await,
            Command::Connect(args) => clusters::connect::run(args).await,
            Command::Delete(args) => clusters::lifecycle::run_delete(args).await,
            Command::Pause(args) => clusters::lifecycle::run_pause(args, true).await,
            Command::Resume(args) => clusters::lifecycle::run_pause(args, false).await,
            Command::Run(args) => clusters::run::run(args).await,
            Command::RenewCertificates(args) => clusters::renew::run(args).await,
            Command::Snapshot(args) => clusters::snapshot::run(args).await,
            Command::Restore(args) => clusters::restore::run(args).await,
            Command::Backups(args) => clusters::backups::run(args).await,
            Command::Verify(args) => clusters::verify::run(args).await,
            Command::Map(args) => map::run(args).await,
            Command::Local(command) => local::run(command).await,
            Command::Completion { .. } => Ok(ExitCode::SUCCESS),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::code_of(&e))
        }
    }
}
