//! `vnest connect NAME`: a context for the virtual cluster in the admin's
//! kubeconfig. When the tenant apiserver's endpoint cannot be reached from
//! this machine (a ClusterIP endpoint, a private network), the context
//! points at a local port that vnest forwards to a tenant apiserver pod
//! through the host apiserver, until Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kube::config::Kubeconfig;

use super::forward::{self, Forward, Target};
use super::kubeconfig::{fetch, write_private};
use crate::host::HostArgs;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    vnest connect team-a -n tenants && kubectl --context vnest-tenants-team-a get ns\n  \
    vnest connect team-a -n tenants --switch\n  \
    vnest connect team-a -n tenants --port-forward --local-port 16443   # keeps running\n\n\
The context is merged into --merge-into, else the --kubeconfig file, else the first file of $KUBECONFIG, \
else ~/.kube/config. When vnest forwards, the context works while `vnest connect` runs.")]
pub(crate) struct ConnectArgs {
    name: String,
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// The kubeconfig file the context is merged into.
    #[arg(long, value_name = "FILE")]
    merge_into: Option<PathBuf>,
    /// The context's name (default: vnest-NAMESPACE-NAME).
    #[arg(long)]
    context_name: Option<String>,
    /// Make it the current context.
    #[arg(long)]
    switch: bool,
    /// Forward through the host even when the endpoint is reachable.
    #[arg(long)]
    port_forward: bool,
    /// The local port to forward from (default: a free one).
    #[arg(long, default_value_t = 0)]
    local_port: u16,
    #[command(flatten)]
    connection: HostArgs,
}

/// `tenant`'s single cluster/user/context renamed to `name` and merged into
/// `target` (entries of that name replaced).
fn merge(
    target: &mut Kubeconfig,
    mut tenant: Kubeconfig,
    name: &str,
    switch: bool,
) -> anyhow::Result<()> {
    let (Some(mut cluster), Some(mut user), Some(mut context)) = (
        tenant.clusters.pop(),
        tenant.auth_infos.pop(),
        tenant.contexts.pop(),
    ) else {
        bail!("the tenant kubeconfig lacks a cluster, user or context");
    };
    cluster.name = name.to_owned();
    user.name = name.to_owned();
    context.name = name.to_owned();
    if let Some(c) = context.context.as_mut() {
        c.cluster = name.to_owned();
        c.user = Some(name.to_owned());
    }
    target.clusters.retain(|c| c.name != name);
    target.auth_infos.retain(|u| u.name != name);
    target.contexts.retain(|c| c.name != name);
    target.clusters.push(cluster);
    target.auth_infos.push(user);
    target.contexts.push(context);
    if switch || target.current_context.is_none() {
        target.current_context = Some(name.to_owned());
    }
    Ok(())
}

fn merge_target(args: &ConnectArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = args
        .merge_into
        .clone()
        .or_else(|| args.connection.kubeconfig_path())
    {
        return Ok(path);
    }
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME").context("no --merge-into, $KUBECONFIG or $HOME")?;
    Ok(PathBuf::from(home).join(".kube").join("config"))
}

fn write_merged(path: &Path, tenant: Kubeconfig, name: &str, switch: bool) -> anyhow::Result<()> {
    let mut target = if path.exists() {
        Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?
    } else {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Kubeconfig {
            api_version: Some("v1".to_owned()),
            kind: Some("Config".to_owned()),
            ..Kubeconfig::default()
        }
    };
    merge(&mut target, tenant, name, switch)?;
    let yaml = serde_yaml_ng::to_string(&target).context("writing the kubeconfig")?;
    write_private(path, &yaml)
}

pub(crate) async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client().await?;
    let yaml = fetch(&client, &args.namespace, &args.name).await?;
    let mut tenant = Kubeconfig::from_yaml(&yaml).context("parsing the tenant kubeconfig")?;
    let name = args
        .context_name
        .clone()
        .unwrap_or_else(|| format!("vnest-{}-{}", args.namespace, args.name));
    let target = merge_target(&args)?;
    let server = forward::server_of(&tenant);
    if !args.port_forward && forward::reachable(&server).await {
        write_merged(&target, tenant, &name, args.switch)?;
        eprintln!(
            "context {name} added to {} (server {server})",
            target.display()
        );
        eprintln!("use it: kubectl --context {name} get namespaces");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.port_forward {
        eprintln!(
            "{server} is not reachable from here; forwarding through the host apiserver instead"
        );
    }
    let forward = Forward::start(
        client,
        &args.namespace,
        &args.name,
        Target::APISERVER,
        args.local_port,
    )
    .await?;
    forward.point(&mut tenant, &args.namespace, &args.name);
    write_merged(&target, tenant, &name, args.switch)?;
    eprintln!(
        "context {name} added to {}; forwarding {} to the tenant apiserver",
        target.display(),
        forward.local
    );
    eprintln!("use it: kubectl --context {name} get namespaces   (Ctrl-C stops the forward)");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("handling SIGTERM")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    drop(forward);
    eprintln!("forward stopped; context {name} needs `vnest connect` running to work");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TENANT: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: a\n  cluster:\n    server: https://10.0.0.1:30443\n    certificate-authority-data: Q0E=\ncontexts:\n- name: a\n  context:\n    cluster: a\n    user: a\ncurrent-context: a\nusers:\n- name: a\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n";

    #[test]
    fn merging_renames_and_replaces_only_its_own_entries() {
        let mut target = Kubeconfig::from_yaml(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: host\n  cluster:\n    server: https://h\ncontexts:\n- name: host\n  context:\n    cluster: host\n    user: host\ncurrent-context: host\nusers:\n- name: host\n  user:\n    token: t\n",
        )
        .unwrap();
        for _ in 0..2 {
            merge(
                &mut target,
                Kubeconfig::from_yaml(TENANT).unwrap(),
                "vnest-t-a",
                false,
            )
            .unwrap();
        }
        assert_eq!(target.clusters.len(), 2, "merged once, however often");
        assert_eq!(
            target.current_context.as_deref(),
            Some("host"),
            "not switched unless asked"
        );
        let context = target
            .contexts
            .iter()
            .find(|c| c.name == "vnest-t-a")
            .unwrap();
        assert_eq!(context.context.as_ref().unwrap().cluster, "vnest-t-a");
        let yaml = serde_yaml_ng::to_string(&target).unwrap();
        assert!(
            yaml.contains("client-key-data: S0VZ"),
            "credentials survive: {yaml}"
        );
        merge(
            &mut target,
            Kubeconfig::from_yaml(TENANT).unwrap(),
            "vnest-t-a",
            true,
        )
        .unwrap();
        assert_eq!(target.current_context.as_deref(), Some("vnest-t-a"));
    }
}
