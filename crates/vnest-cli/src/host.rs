//! How the CLI reaches the host cluster: kubectl's conventions
//! (`--kubeconfig`, `$KUBECONFIG` — a list of files, merged —,
//! `~/.kube/config`, `--context`).

use std::path::PathBuf;

use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::exit::Failure;

#[derive(Debug, Args)]
pub(crate) struct HostArgs {
    /// The host cluster's kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context of the host cluster.
    #[arg(long)]
    context: Option<String>,
}

impl HostArgs {
    /// The file given with --kubeconfig, if one was.
    pub(crate) fn kubeconfig_path(&self) -> Option<PathBuf> {
        self.kubeconfig.clone()
    }

    pub(crate) async fn client(&self) -> anyhow::Result<kube::Client> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                    Failure::Unreachable(format!(
                        "reading the host kubeconfig {}: {e}",
                        path.display()
                    ))
                })?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None => kube::Config::from_kubeconfig(&options).await,
        }
        .map_err(|e| {
            Failure::Unreachable(format!(
                "no usable host kubeconfig ({e}); pass --kubeconfig FILE (and --context) or set KUBECONFIG"
            ))
        })?;
        kube::Client::try_from(config).map_err(|e| {
            Failure::Unreachable(format!("connecting to the host cluster: {e}")).into()
        })
    }
}
