//! `vnest connect NAME`: a context for the virtual cluster in the admin's
//! kubeconfig. When the tenant apiserver's endpoint cannot be reached from
//! this machine (a ClusterIP endpoint, a private network), the context
//! points at a local port that vnest forwards to a tenant apiserver pod
//! through the host apiserver, until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use kube::config::Kubeconfig;
use tokio::net::{TcpListener, TcpStream};
use vnest_api::host_names::{self, HostNamespaceRole, host_namespace};

use super::kubeconfig::{fetch, write_private};
use crate::host::HostArgs;

/// How long the endpoint gets to accept a connection before vnest forwards.
const REACH_TIMEOUT: Duration = Duration::from_secs(3);

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

/// `host:port` of an `https://` URL.
fn authority(server: &str) -> Option<String> {
    let rest = server.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    Some(
        if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:443")
        },
    )
}

async fn reachable(server: &str) -> bool {
    let Some(authority) = authority(server) else {
        return false;
    };
    matches!(
        tokio::time::timeout(REACH_TIMEOUT, TcpStream::connect(authority)).await,
        Ok(Ok(_))
    )
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
    let server = tenant
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .unwrap_or_default();
    if !args.port_forward && reachable(&server).await {
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
    let listener = TcpListener::bind(("127.0.0.1", args.local_port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{}", args.local_port))?;
    let local: SocketAddr = listener
        .local_addr()
        .context("the forward's local address")?;
    let control_plane =
        host_namespace(&args.namespace, &args.name, HostNamespaceRole::ControlPlane);
    for cluster in tenant
        .clusters
        .iter_mut()
        .filter_map(|c| c.cluster.as_mut())
    {
        cluster.server = Some(format!("https://{local}"));
        // The apiserver's certificate names its Service.
        cluster.tls_server_name = Some(format!(
            "{}.{control_plane}.svc",
            host_names::apiserver::SERVICE
        ));
    }
    write_merged(&target, tenant, &name, args.switch)?;
    let pods: Api<Pod> = Api::namespaced(client, &control_plane);
    ready_apiserver(&pods).await?;
    eprintln!(
        "context {name} added to {}; forwarding {local} to the tenant apiserver",
        target.display()
    );
    eprintln!("use it: kubectl --context {name} get namespaces   (Ctrl-C stops the forward)");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("handling SIGTERM")?;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        };
        let (connection, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                continue;
            }
        };
        let pods = pods.clone();
        tokio::spawn(async move {
            if let Err(error) = forward(&pods, connection).await {
                eprintln!("warning: forwarding a connection from {peer}: {error:#}");
            }
        });
    }
    eprintln!("forward stopped; context {name} needs `vnest connect` running to work");
    Ok(ExitCode::SUCCESS)
}

/// A running, ready apiserver pod of the tenant.
async fn ready_apiserver(pods: &Api<Pod>) -> anyhow::Result<String> {
    let selector = format!(
        "{}={}",
        host_names::labels::COMPONENT,
        host_names::apiserver::COMPONENT
    );
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .context("listing the tenant's apiserver pods on the host (port-forwarding needs get/list pods and create pods/portforward in its control-plane namespace)")?;
    list.items
        .into_iter()
        .find(|pod| {
            pod.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .and_then(|pod| pod.metadata.name)
        .context("no tenant apiserver pod is ready (is the cluster paused? `vnest describe` tells)")
}

/// One local connection, carried to a ready apiserver pod.
async fn forward(pods: &Api<Pod>, mut connection: TcpStream) -> anyhow::Result<()> {
    let pod = ready_apiserver(pods).await?;
    let port = host_names::apiserver::SECURE_PORT;
    let mut forwarder = pods
        .portforward(&pod, &[port])
        .await
        .with_context(|| format!("port-forwarding to pod {pod}"))?;
    let mut upstream = forwarder
        .take_stream(port)
        .context("the port-forward gave no stream")?;
    tokio::io::copy_bidirectional(&mut connection, &mut upstream)
        .await
        .ok();
    drop(upstream);
    forwarder.join().await.ok();
    Ok(())
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

    #[test]
    fn authorities_default_to_443() {
        assert_eq!(
            authority("https://10.0.0.1:30443").as_deref(),
            Some("10.0.0.1:30443")
        );
        assert_eq!(
            authority("https://a.example/x").as_deref(),
            Some("a.example:443")
        );
        assert_eq!(authority("http://a"), None);
    }
}
