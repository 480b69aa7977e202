//! `vnest renew-certificates NAME`: every leaf certificate of a tenant's
//! control plane issued again now, under the same CAs (kubeconfigs and
//! pods that trust the tenant's CA keep working), as after a suspected
//! key leak or before an audit. The supervisor renews on its own 30 days
//! before expiry; this asks it to do so at once, and the control plane's
//! pods roll one at a time.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use vnest_api::certificate_renewal;
use vnest_api::host_names::{HostNamespaceRole, PKI_SECRET, host_namespace};

use super::wait::{self, Outcome, POLL};
use super::{api, explain, get};
use crate::exit::TIMED_OUT;
use crate::host::HostArgs;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    vnest renew-certificates team-a -n tenants --wait\n\n\
Exit codes: 0 asked (renewed and Ready again, with --wait), 1 error, 3 not found, 4 timed out waiting.")]
pub(crate) struct RenewArgs {
    name: String,
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Wait until the certificates are renewed and the cluster is Ready
    /// with them.
    #[arg(long)]
    wait: bool,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    timeout: Duration,
    #[command(flatten)]
    connection: HostArgs,
}

pub(crate) async fn run(args: RenewArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client().await?;
    let (namespace, name) = (args.namespace.as_str(), args.name.as_str());
    let vc = get(&client, namespace, name).await?;
    // The request is named by its time, to the second.
    let asked = Timestamp::from_second(Timestamp::now().as_second())?.to_string();
    api(&client, namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": { "annotations": { certificate_renewal::ASKED: asked } }
            })),
        )
        .await
        .map_err(|e| {
            explain(
                e,
                &format!(
                    "asking for VirtualCluster {namespace}/{name}'s certificates to be renewed"
                ),
                namespace,
            )
        })?;
    eprintln!("asked for every leaf certificate of {namespace}/{name} to be renewed ({asked})");
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    let secrets: Api<Secret> = Api::namespaced(
        client.clone(),
        &host_namespace(namespace, name, HostNamespaceRole::ControlPlane),
    );
    let renewed = || async {
        let secret = secrets.get_opt(PKI_SECRET).await.map_err(|e| {
            explain(
                e,
                &format!("reading the certificates of {namespace}/{name}"),
                namespace,
            )
        })?;
        anyhow::Ok(
            secret
                .and_then(|s| s.metadata.annotations)
                .and_then(|mut a| a.remove(certificate_renewal::DONE))
                .is_some_and(|done| done == asked),
        )
    };
    while !renewed().await? {
        if started.elapsed() > args.timeout {
            eprintln!("error: the supervisor did not renew the certificates in time");
            return Ok(ExitCode::from(TIMED_OUT));
        }
        tokio::time::sleep(POLL).await;
    }
    eprintln!(
        "[{:>6.1}s] renewed; the control plane's pods roll",
        started.elapsed().as_secs_f64()
    );
    if vc.spec.paused {
        eprintln!(
            "{namespace}/{name} is paused: its pods get the new certificates when it resumes"
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Ready again, and the supervisor says so of the control plane on the
    // renewed certificates (not merely Ready, which it may have been since
    // before the roll).
    let outcome = wait::until_ready_and(
        &api(&client, namespace),
        name,
        started,
        args.timeout,
        |status| {
            (status.renewal_rolled_out.as_deref() != Some(asked.as_str())).then(|| {
                "the control plane's pods to roll onto the renewed certificates".to_owned()
            })
        },
    )
    .await?;
    match outcome {
        Outcome::Done => Ok(ExitCode::SUCCESS),
        Outcome::TimedOut(why) => {
            eprintln!("error: {why}");
            Ok(ExitCode::from(TIMED_OUT))
        }
    }
}
