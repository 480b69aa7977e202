//! `vnest delete`, `vnest pause` and `vnest resume`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

use super::wait::{self, Outcome};
use super::{api, explain};
use crate::exit::TIMED_OUT;
use crate::host::HostArgs;

#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    name: String,
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    #[command(flatten)]
    connection: HostArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  vnest delete team-a -n tenants --wait\n\n\
Exit codes: 0 deleted (gone, with --wait), 1 error, 4 timed out waiting.")]
pub(crate) struct DeleteArgs {
    #[command(flatten)]
    target: NameArgs,
    /// Wait until the control plane and the host namespaces are gone.
    #[arg(long)]
    wait: bool,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    timeout: Duration,
}

/// Deletes `namespace/name`; Ok(false) when it was not there.
pub(crate) async fn delete(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<bool> {
    match api(client, namespace)
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 && !super::crd_missing(&status) => {
            Ok(false)
        }
        Err(e) => Err(explain(
            e,
            &format!("deleting VirtualCluster {namespace}/{name}"),
            namespace,
        )),
    }
}

/// Deletes and waits until it is gone; prints progress.
pub(crate) async fn delete_and_wait(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    delete(client, namespace, name).await?;
    wait::until_deleted(&api(client, namespace), name, timeout).await
}

pub(crate) async fn run_delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let NameArgs {
        name,
        namespace,
        connection,
    } = &args.target;
    let client = connection.client().await?;
    if !delete(&client, namespace, name).await? {
        return Err(super::not_found(namespace, name));
    }
    eprintln!("VirtualCluster {namespace}/{name} deleting");
    if args.wait
        && let Outcome::TimedOut(why) =
            wait::until_deleted(&api(&client, namespace), name, args.timeout).await?
    {
        eprintln!("error: {why}");
        return Ok(ExitCode::from(TIMED_OUT));
    }
    Ok(ExitCode::SUCCESS)
}

/// `pause` (true) or `resume` (false): the control plane scales to zero
/// keeping its data, or comes back.
pub(crate) async fn run_pause(args: NameArgs, paused: bool) -> anyhow::Result<ExitCode> {
    let client = args.connection.client().await?;
    set_paused(&client, &args.namespace, &args.name, paused).await?;
    eprintln!(
        "VirtualCluster {}/{} {}",
        args.namespace,
        args.name,
        if paused {
            "paused (its data is kept)"
        } else {
            "resuming"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Sets `spec.paused` of VirtualCluster `namespace/name`.
pub(crate) async fn set_paused(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    paused: bool,
) -> anyhow::Result<()> {
    let what = if paused { "pausing" } else { "resuming" };
    api(client, namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "paused": paused } })),
        )
        .await
        .map_err(|e| {
            explain(
                e,
                &format!("{what} VirtualCluster {namespace}/{name}"),
                namespace,
            )
        })?;
    Ok(())
}
