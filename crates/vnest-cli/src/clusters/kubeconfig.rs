//! `vnest kubeconfig NAME`: the tenant's admin kubeconfig, which the
//! supervisor keeps in a Secret next to the VirtualCluster.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;

use super::get;
use crate::host::HostArgs;

/// The key of the Secret holding the kubeconfig for use from outside.
const KUBECONFIG_KEY: &str = "kubeconfig";

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    vnest kubeconfig team-a -n tenants --out team-a.kubeconfig\n  \
    vnest kubeconfig team-a -n tenants --server https://127.0.0.1:6443 > a.kubeconfig")]
pub(crate) struct KubeconfigArgs {
    name: String,
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Write it to FILE (mode 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Point it at this URL instead (a port-forward, a load balancer name);
    /// the certificate's name stays the one the apiserver serves.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    #[command(flatten)]
    connection: HostArgs,
}

/// The tenant admin kubeconfig of VirtualCluster `namespace/name`.
pub(crate) async fn fetch(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<String> {
    let vc = get(client, namespace, name).await?;
    let Some(secret_name) = vc.status.and_then(|s| s.kubeconfig_secret_name) else {
        bail!(
            "VirtualCluster {namespace}/{name} has no kubeconfig yet (it is not serving); wait with `vnest create --wait` or see `vnest describe {name} -n {namespace}`"
        );
    };
    super::secret_text(
        client,
        namespace,
        &secret_name,
        KUBECONFIG_KEY,
        "the kubeconfig",
    )
    .await
}

/// `kubeconfig` with every cluster's server replaced by `server`.
fn pointed_at(kubeconfig: &str, server: &str) -> anyhow::Result<String> {
    let mut config: kube::config::Kubeconfig =
        serde_yaml_ng::from_str(kubeconfig).context("parsing the kubeconfig")?;
    for cluster in &mut config.clusters {
        if let Some(cluster) = cluster.cluster.as_mut() {
            cluster.server = Some(server.to_owned());
        }
    }
    serde_yaml_ng::to_string(&config).context("writing the kubeconfig")
}

/// Writes `contents` to `path`, readable by its owner only.
pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

pub(crate) async fn run(args: KubeconfigArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client().await?;
    let mut kubeconfig = fetch(&client, &args.namespace, &args.name).await?;
    if let Some(server) = &args.server {
        kubeconfig = pointed_at(&kubeconfig, server)?;
    }
    match &args.out {
        Some(path) => {
            write_private(path, &kubeconfig)?;
            eprintln!("kubeconfig written to {}", path.display());
        }
        None => print!("{kubeconfig}"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_server_can_be_pointed_elsewhere() {
        let original = "apiVersion: v1\nkind: Config\nclusters:\n- name: a\n  cluster:\n    server: https://10.0.0.1:30443\n    tls-server-name: apiserver.x.svc\ncontexts: []\nusers: []\n";
        let changed = pointed_at(original, "https://127.0.0.1:6443").unwrap();
        assert!(
            changed.contains("server: https://127.0.0.1:6443"),
            "{changed}"
        );
        assert!(
            changed.contains("tls-server-name: apiserver.x.svc"),
            "{changed}"
        );
    }
}
