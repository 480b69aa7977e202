//! `vnest create NAME`: a VirtualCluster from flags (or `-f file.yaml`,
//! flags winning), optionally waited for with progress, ending with how
//! to connect.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use kube::api::PostParams;
use vnest_api::{ExposeType, PodScheduler, PodSecurityLevel, VirtualCluster};

use super::kubeconfig::{fetch, write_private};
use super::wait::{self, Outcome};
use super::{DEFAULT_TIMEOUT, api, explain};
use crate::exit::TIMED_OUT;
use crate::host::HostArgs;

/// The spec flags `create` and `run` share.
#[derive(Debug, Args)]
pub(crate) struct SpecArgs {
    /// A VirtualCluster manifest to start from; the flags below override it.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: Option<PathBuf>,
    /// The node pool: a label of the pool's nodes, KEY=VALUE (repeat for
    /// each). Required unless the file sets it.
    #[arg(long = "pool", value_name = "KEY=VALUE")]
    pool: Vec<String>,
    /// The tenant's Kubernetes version, like v1.37.2.
    #[arg(long)]
    kubernetes_version: Option<String>,
    /// How the tenant apiserver is exposed on the host.
    #[arg(long, value_enum)]
    expose: Option<Expose>,
    /// The tenant's Pod Security level: privileged, baseline or restricted.
    #[arg(long)]
    pod_security: Option<PodSecurityLevel>,
    /// A RuntimeClass forced on every tenant pod (a sandbox, e.g. gVisor).
    #[arg(long)]
    runtime_class: Option<String>,
    /// Who picks each tenant pod's node: host (the host's scheduler) or
    /// tenant (a scheduler of the tenant's own, honouring its
    /// PriorityClasses; needs a Dedicated pool).
    #[arg(long)]
    scheduler: Option<PodScheduler>,
    /// Delete the cluster this long after creation (30m, 2h, 1h30m).
    #[arg(long)]
    ttl: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Expose {
    ClusterIp,
    NodePort,
    LoadBalancer,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    vnest create team-a -n tenants --pool vnest.dev/pool=a --wait\n  \
    vnest create ci-42 --pool vnest.dev/pool=ci --ttl 2h --wait --kubeconfig-out ./ci.kubeconfig\n  \
    vnest create -f team-b.yaml --wait\n\n\
Exit codes: 0 created (and ready with --wait), 1 error, 4 timed out waiting (the cluster is kept).")]
pub(crate) struct CreateArgs {
    /// The VirtualCluster's name (a DNS label); optional with -f.
    name: Option<String>,
    /// The host namespace of the VirtualCluster object.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    #[command(flatten)]
    spec: SpecArgs,
    /// Wait until the cluster is ready, showing each stage.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits (e.g. 10m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    timeout: Duration,
    /// Write the tenant's admin kubeconfig here once ready (implies --wait).
    #[arg(long, value_name = "FILE")]
    kubeconfig_out: Option<PathBuf>,
    #[command(flatten)]
    connection: HostArgs,
}

impl SpecArgs {
    /// Whether any spec flag (or a file) was given.
    pub(crate) fn given(&self) -> bool {
        let SpecArgs {
            file,
            pool,
            kubernetes_version,
            expose,
            pod_security,
            runtime_class,
            scheduler,
            ttl,
        } = self;
        file.is_some()
            || !pool.is_empty()
            || kubernetes_version.is_some()
            || expose.is_some()
            || pod_security.is_some()
            || runtime_class.is_some()
            || scheduler.is_some()
            || ttl.is_some()
    }

    /// The VirtualCluster these flags describe, named `name` (or as the
    /// file names it) in `namespace`.
    pub(crate) fn virtual_cluster(
        &self,
        name: Option<&str>,
        namespace: &str,
    ) -> anyhow::Result<VirtualCluster> {
        let mut vc: VirtualCluster = match &self.file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_yaml_ng::from_str(&text).with_context(|| {
                    format!("{} is not a VirtualCluster manifest", path.display())
                })?
            }
            None => VirtualCluster::new("", Default::default()),
        };
        if let Some(name) = name {
            vc.metadata.name = Some(name.to_owned());
        }
        let Some(name) = vc.metadata.name.clone().filter(|n| !n.is_empty()) else {
            bail!("name the cluster: vnest create NAME (or metadata.name in -f)");
        };
        if vnest_local::validate_name(&name).is_err() || name.len() > 40 {
            bail!(
                "{name:?} cannot name a cluster: lower-case letters, digits and '-', at most 40 characters, starting with a letter"
            );
        }
        if vc.metadata.namespace.is_none() || namespace != "default" {
            vc.metadata.namespace = Some(namespace.to_owned());
        }
        let spec = &mut vc.spec;
        if !self.pool.is_empty() {
            spec.node_pool.node_selector = vnest_api::label_pairs::parse(&self.pool)
                .map_err(|e| anyhow::anyhow!("--pool {e}"))?;
        }
        if spec.node_pool.node_selector.is_empty() {
            bail!(
                "which nodes run the tenant's workloads? give --pool KEY=VALUE (a label of the pool's nodes)"
            );
        }
        if let Some(version) = &self.kubernetes_version {
            spec.kubernetes_version = Some(version.clone());
        }
        if let Some(expose) = self.expose {
            spec.control_plane.expose.type_ = match expose {
                Expose::ClusterIp => ExposeType::ClusterIP,
                Expose::NodePort => ExposeType::NodePort,
                Expose::LoadBalancer => ExposeType::LoadBalancer,
            };
        }
        if let Some(level) = self.pod_security {
            spec.isolation.pod_security = level;
        }
        if let Some(class) = &self.runtime_class {
            spec.isolation.runtime_class_name = Some(class.clone());
        }
        if let Some(scheduler) = self.scheduler {
            spec.node_pool.scheduler = scheduler;
        }
        if let Some(ttl) = &self.ttl {
            vnest_api::ttl::parse(ttl).with_context(|| format!("--ttl {ttl:?}"))?;
            spec.ttl = Some(ttl.clone());
            spec.expires_at = None;
        }
        Ok(vc)
    }
}

/// Creates `vc` on the host; the error says what to do.
pub(crate) async fn create(client: &kube::Client, vc: &VirtualCluster) -> anyhow::Result<()> {
    let namespace = vc.metadata.namespace.clone().unwrap_or_default();
    let name = vc.metadata.name.clone().unwrap_or_default();
    api(client, &namespace)
        .create(&PostParams::default(), vc)
        .await
        .map_err(|e| {
            explain(
                e,
                &format!("creating VirtualCluster {namespace}/{name}"),
                &namespace,
            )
        })?;
    Ok(())
}

pub(crate) async fn run(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let vc = args
        .spec
        .virtual_cluster(args.name.as_deref(), &args.namespace)?;
    let client = args.connection.client().await?;
    create(&client, &vc).await?;
    let namespace = vc.metadata.namespace.clone().unwrap_or_default();
    let name = vc.metadata.name.clone().unwrap_or_default();
    eprintln!("VirtualCluster {namespace}/{name} created");
    if !args.wait && args.kubeconfig_out.is_none() {
        eprintln!("follow it with: kubectl get virtualcluster {name} -n {namespace} -w");
        return Ok(ExitCode::SUCCESS);
    }
    let timeout = if args.timeout.is_zero() {
        DEFAULT_TIMEOUT
    } else {
        args.timeout
    };
    if let Outcome::TimedOut(why) =
        wait::until_ready(&api(&client, &namespace), &name, timeout).await?
    {
        eprintln!(
            "error: {why}; the cluster is kept: `vnest describe {name} -n {namespace}` tells more"
        );
        return Ok(ExitCode::from(TIMED_OUT));
    }
    match &args.kubeconfig_out {
        Some(path) => {
            let kubeconfig = fetch(&client, &namespace, &name).await?;
            write_private(path, &kubeconfig)?;
            eprintln!("kubeconfig written to {}", path.display());
            let server = kube::config::Kubeconfig::from_yaml(&kubeconfig)
                .map(|k| super::forward::server_of(&k))
                .unwrap_or_default();
            if super::forward::reachable(&server).await {
                eprintln!(
                    "use it: kubectl --kubeconfig {} get namespaces",
                    path.display()
                );
            } else {
                eprintln!(
                    "its endpoint {server} is reachable only inside the host (pods can use this kubeconfig as it is); from here: vnest connect {name} -n {namespace}"
                );
            }
        }
        None if vc.spec.control_plane.expose.type_ == ExposeType::ClusterIP => eprintln!(
            "use it: vnest connect {name} -n {namespace}   (its endpoint is inside the host; connect forwards to it)"
        ),
        None => eprintln!(
            "use it: vnest kubeconfig {name} -n {namespace} --out {name}.kubeconfig && kubectl --kubeconfig {name}.kubeconfig get namespaces"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        spec: SpecArgs,
    }

    fn spec(args: &[&str]) -> anyhow::Result<VirtualCluster> {
        let probe = Probe::try_parse_from(std::iter::once("probe").chain(args.iter().copied()))?;
        probe.spec.virtual_cluster(Some("a"), "tenants")
    }

    #[test]
    fn flags_fill_the_spec() {
        let vc = spec(&[
            "--pool",
            "vnest.dev/pool=a",
            "--ttl",
            "2h",
            "--expose",
            "node-port",
            "--pod-security",
            "baseline",
            "--scheduler",
            "tenant",
        ])
        .unwrap();
        assert_eq!(vc.metadata.namespace.as_deref(), Some("tenants"));
        assert_eq!(vc.spec.node_pool.node_selector["vnest.dev/pool"], "a");
        assert_eq!(vc.spec.ttl.as_deref(), Some("2h"));
        assert_eq!(vc.spec.control_plane.expose.type_, ExposeType::NodePort);
        assert_eq!(vc.spec.isolation.pod_security, PodSecurityLevel::Baseline);
        assert_eq!(vc.spec.node_pool.scheduler, PodScheduler::Tenant);
    }

    #[test]
    fn bad_input_says_what_to_give() {
        let no_pool = spec(&[]).err().unwrap().to_string();
        assert!(no_pool.contains("--pool"), "{no_pool}");
        let bad_pool = spec(&["--pool", "a"]).err().unwrap().to_string();
        assert!(bad_pool.contains("KEY=VALUE"), "{bad_pool}");
        for ttl in ["soon", "2 hours"] {
            let bad_ttl = format!(
                "{:#}",
                spec(&["--pool", "p=a", "--ttl", ttl]).err().unwrap()
            );
            assert!(
                bad_ttl.contains(vnest_api::ttl::MESSAGE),
                "refused as the CRD refuses it: {bad_ttl}"
            );
        }
    }
}
