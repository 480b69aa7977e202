//! `vnest-supervisor`: runs the VirtualCluster controller against the host
//! cluster it finds (in-cluster config, or `KUBECONFIG`).

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use vnest_api::etcd_backup_args::EtcdBackupArgs;
use vnest_api::etcd_volume::RestoreStep;
use vnest_kube::logging::LogFormat;
use vnest_supervisor::controller;
use vnest_supervisor::desired::pods::Settings;

/// Turns VirtualCluster objects into running tenant control planes.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The registry the upstream images (kube-apiserver, etcd, …) come from.
    #[arg(long, env = "VNEST_IMAGE_REGISTRY", default_value = "registry.k8s.io")]
    image_registry: String,
    /// The namespace the supervisor runs in; tenant apiservers accept its
    /// traffic.
    #[arg(long, env = "POD_NAMESPACE", default_value = "vnest-system")]
    namespace: String,
    /// vnest's own image, which tenant syncers run from.
    #[arg(long, env = "VNEST_IMAGE", default_value = concat!("vnest.local/vnest:", env!("CARGO_PKG_VERSION")))]
    vnest_image: String,
    /// Where `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    health_address: std::net::SocketAddr,
    /// Log lines as text or JSON.
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Empty DIR (a deleted tenant's etcd volume): overwrite every file
    /// with zeros, then remove it. Run by the supervisor in a pod of its
    /// own; not for people.
    Wipe { dir: std::path::PathBuf },
    /// One step of restoring an etcd member's volume DIR from a snapshot
    /// (`receive` reads it from stdin; `install` puts etcdutl's restored
    /// member in place). Run in a pod `vnest restore` makes; not for
    /// people.
    RestoreData {
        #[arg(value_enum)]
        step: RestoreStep,
        dir: std::path::PathBuf,
    },
    /// One scheduled snapshot of a tenant's etcd into a directory, keeping
    /// the newest few. Run by the CronJob of `spec.backup`; not for
    /// people.
    EtcdBackup(EtcdBackupArgs),
    /// Once its stdin closes, writes to stdout the snapshots in DIR (a
    /// line each: name and bytes) or, with --send, one of them with its
    /// encryption file. Run in a pod `vnest backups` makes; not for
    /// people.
    EtcdBackups {
        dir: std::path::PathBuf,
        #[arg(long, value_name = "NAME")]
        send: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    vnest_kube::logging::init(args.log_format);
    if let Some(Command::Wipe { dir }) = &args.command {
        let bytes = vnest_supervisor::datastore_wipe::empty_directory(dir)
            .with_context(|| format!("emptying {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), bytes, "emptied");
        return Ok(());
    }
    if let Some(Command::RestoreData { step, dir }) = &args.command {
        use vnest_supervisor::datastore_restore;
        match step {
            RestoreStep::Receive => {
                let verified = datastore_restore::receive(dir, &mut std::io::stdin().lock())?;
                tracing::info!(bytes = verified.database_bytes, sha256 = %verified.sha256, "snapshot received and checked");
            }
            RestoreStep::Install => {
                datastore_restore::install(dir)?;
                tracing::info!(dir = %dir.display(), "restored member in place");
            }
        }
        return Ok(());
    }
    if let Some(Command::EtcdBackup(backup)) = &args.command {
        let outcome =
            vnest_supervisor::etcd_backup::run(backup, vnest_supervisor::etcd_backup::CONNECT_FOR)
                .await
                .with_context(|| format!("backing up {}'s etcd", backup.cluster))?;
        let shown = |paths: &[std::path::PathBuf]| {
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        tracing::info!(
            file = %outcome.file.display(),
            bytes = outcome.bytes,
            sha256 = %outcome.sha256,
            member = %outcome.member,
            removed = %shown(&outcome.removed),
            kept = %shown(&outcome.kept),
            "snapshot written and checked"
        );
        return Ok(());
    }
    if let Some(Command::EtcdBackups { dir, send }) = &args.command {
        use std::io::{Read as _, Write as _};
        use vnest_supervisor::etcd_backup;
        // The caller attaches first, then closes stdin: nothing written
        // before that would reach it.
        std::io::copy(
            &mut std::io::stdin().lock().take(1 << 20),
            &mut std::io::sink(),
        )
        .context("waiting for stdin to close")?;
        let mut out = std::io::stdout().lock();
        match send {
            Some(name) => {
                etcd_backup::send(dir, name, &mut out)?;
            }
            None => {
                for (name, bytes) in
                    etcd_backup::list(dir).with_context(|| format!("listing {}", dir.display()))?
                {
                    writeln!(out, "{name} {bytes}").context("writing the list")?;
                }
            }
        }
        return Ok(());
    }
    let readiness = vnest_kube::health::Readiness::default();
    let metrics = std::sync::Arc::new(vnest_supervisor::metrics::Metrics::default());
    let for_metrics = metrics.clone();
    let health = tokio::spawn(vnest_kube::health::serve(
        args.health_address,
        readiness.clone(),
        Some(std::sync::Arc::new(move || for_metrics.render())),
    ));
    let config = kube::Config::infer()
        .await
        .context("finding the host cluster (in-cluster config or KUBECONFIG)")?;
    let client = kube::Client::try_from(config.clone())
        .context("connecting to the host cluster (in-cluster config or KUBECONFIG)")?;
    client
        .apiserver_version()
        .await
        .context("reaching the host apiserver")?;
    readiness.set(true);
    let settings = Settings {
        registry: args.image_registry,
        supervisor_namespace: args.namespace,
        vnest_image: args.vnest_image,
    };
    tracing::info!(registry = %settings.registry, namespace = %settings.supervisor_namespace, "supervisor starting");
    let kubelets = vnest_supervisor::pool_nodes::KubeletConfigs::new(config);
    controller::run(client, kubelets, settings, metrics).await;
    health.abort();
    tracing::info!("supervisor stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// What a restore pod runs (built by `vnest restore` from
    /// `RestoreStep::command`) is what this binary parses.
    #[test]
    fn restore_steps_round_trip() {
        for step in [RestoreStep::Receive, RestoreStep::Install] {
            let args = Args::try_parse_from(step.command()).unwrap();
            match args.command {
                Some(Command::RestoreData { step: parsed, dir }) => {
                    assert_eq!(parsed, step);
                    assert_eq!(dir, std::path::Path::new(vnest_api::etcd_volume::MOUNT));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
