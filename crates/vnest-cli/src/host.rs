//! How the CLI reaches the host cluster: kubectl's conventions
//! (`--kubeconfig`, `$KUBECONFIG`, `--context`).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Debug, Args)]
pub(crate) struct HostArgs {
    /// The host cluster's kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context of the host cluster.
    #[arg(long)]
    context: Option<String>,
}

impl HostArgs {
    pub(crate) async fn client(&self) -> anyhow::Result<kube::Client> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading the host kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None => kube::Config::from_kubeconfig(&options).await,
        }
        .context("no usable host kubeconfig: pass --kubeconfig or set KUBECONFIG")?;
        kube::Client::try_from(config).context("connecting to the host cluster")
    }
}
