//! `vnest run [create flags] -- COMMAND ARGS…`: an ephemeral cluster for
//! one command. It is created and waited for, the command runs with
//! `KUBECONFIG` pointing at it (its output streams through), and the
//! cluster is deleted afterwards whatever happens: the command's exit, an
//! error, Ctrl-C or SIGTERM from a CI runner (forwarded to the command
//! first). A TTL is always set, so a runner killed outright leaves nothing
//! behind for long. The exit code is the command's.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::api;
use super::create::{SpecArgs, create};
use super::forward;
use super::kubeconfig::write_private;
use super::lifecycle::delete_and_wait;
use super::wait::{self, Outcome};
use crate::exit::TIMED_OUT;
use crate::host::HostArgs;

/// The TTL of a run's cluster unless `--ttl` says otherwise.
const DEFAULT_TTL: &str = "1h";
/// How long the command gets to exit after a forwarded signal.
const GRACE: Duration = Duration::from_secs(10);
/// How long the cleanup waits for the cluster to be gone.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    vnest run --pool vnest.dev/pool=ci -- kubectl create namespace smoke\n  \
    vnest run --pool vnest.dev/pool=ci --ttl 30m -- ./e2e.sh --fast\n\n\
Exit codes: the command's; 130 after Ctrl-C, 143 after SIGTERM; 4 the cluster did not become ready in time; 1 another error. \
The cluster is deleted in every case; a TTL (1h unless --ttl) removes it even if vnest itself is killed.")]
pub(crate) struct RunArgs {
    /// The cluster's name (default: run-<random>).
    #[arg(long)]
    name: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    #[command(flatten)]
    spec: SpecArgs,
    /// How long to wait for the cluster to be ready.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    timeout: Duration,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
    #[command(flatten)]
    connection: HostArgs,
}

/// SIGINT and SIGTERM, whichever comes first.
struct Interrupts {
    int: Signal,
    term: Signal,
}

impl Interrupts {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("handling SIGINT")?,
            term: signal(SignalKind::terminate()).context("handling SIGTERM")?,
        })
    }

    /// The signal's number when one arrives.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => nix::libc::SIGINT,
            _ = self.term.recv() => nix::libc::SIGTERM,
        }
    }
}

fn random_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{:08x}", nanos ^ std::process::id().rotate_left(16))
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("run-{}", random_suffix()));
    let mut vc = args.spec.virtual_cluster(Some(&name), &args.namespace)?;
    if vc.spec.ttl.is_none() && vc.spec.expires_at.is_none() {
        vc.spec.ttl = Some(DEFAULT_TTL.to_owned());
    }
    let namespace = vc.metadata.namespace.clone().unwrap_or_default();
    let mut interrupts = Interrupts::new()?;
    let client = args.connection.client().await?;
    create(&client, &vc).await?;
    eprintln!(
        "VirtualCluster {namespace}/{name} created for this run (TTL {})",
        vc.spec.ttl.as_deref().unwrap_or("-")
    );
    let outcome = use_cluster(&client, &namespace, &name, &args, &mut interrupts).await;
    eprintln!("deleting VirtualCluster {namespace}/{name}");
    let cleanup = tokio::select! {
        done = delete_and_wait(&client, &namespace, &name, CLEANUP_TIMEOUT) => done,
        _ = interrupts.next() => {
            eprintln!("interrupted again: leaving the rest of the cleanup to the supervisor (deletion was requested; the TTL is the safety net)");
            Ok(Outcome::Done)
        }
    };
    match cleanup {
        Ok(Outcome::Done) => {}
        Ok(Outcome::TimedOut(why)) => eprintln!("warning: {why}"),
        Err(error) => {
            eprintln!("warning: cleaning up: {error:#}; its TTL deletes it at the latest")
        }
    }
    let code = outcome?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Waits for the cluster, runs the command against it; the command's exit
/// code (128 + signal when it was killed or a signal was forwarded).
async fn use_cluster(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    args: &RunArgs,
    interrupts: &mut Interrupts,
) -> anyhow::Result<i32> {
    let clusters = api(client, namespace);
    let ready = tokio::select! {
        ready = wait::until_ready(&clusters, name, args.timeout) => ready?,
        signal = interrupts.next() => return Ok(128 + signal),
    };
    if let Outcome::TimedOut(why) = ready {
        eprintln!("error: {why}");
        return Ok(i32::from(TIMED_OUT));
    }
    let dir = tempfile::tempdir().context("making a directory for the kubeconfig")?;
    let path = dir.path().join("kubeconfig");
    // Kept until the command ends: its connections may go through the host.
    let (kubeconfig, _forward) = forward::tenant_kubeconfig(client, namespace, name).await?;
    write_private(
        &path,
        &serde_yaml_ng::to_string(&kubeconfig).context("writing the kubeconfig")?,
    )?;
    let (program, rest) = args
        .command
        .split_first()
        .context("give the command to run after --")?;
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .env("KUBECONFIG", &path)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let status = tokio::select! {
        status = child.wait() => status.context("waiting for the command")?,
        signal = interrupts.next() => {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::try_from(signal).ok(),
                );
            }
            if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
            return Ok(128 + signal);
        }
    };
    use std::os::unix::process::ExitStatusExt as _;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(1)))
}
