//! `vnest snapshot NAME`: a consistent snapshot of a tenant's etcd, taken
//! through etcd's own snapshot call while the tenant keeps serving, and
//! written to a local file in the format `etcdutl snapshot restore` reads
//! (the database followed by its SHA-256).
//!
//! The CLI reaches a ready etcd member through the host apiserver's
//! `pods/portforward` and authenticates with a client certificate it issues
//! itself from the tenant's etcd CA, valid for an hour (etcd's logs then
//! name `vnest-snapshot`, not the apiserver). The file appears under its
//! name only once complete and verified; a failed or interrupted snapshot
//! leaves no file behind.
//!
//! Beside it goes `FILE.encryption` (mode 0600): the tenant apiserver's
//! encryption configuration, whose keys sealed the Secrets in the
//! snapshot; `vnest restore` reads it from there.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use vnest_api::host_names::{self, HostNamespaceRole, host_namespace};
use vnest_pki::{CertificateAuthority, LeafSpec, Validity};

use super::forward::{Forward, Target};
use super::{explain, get};
use crate::host::HostArgs;

/// The identity etcd sees for the snapshot's connection.
const SNAPSHOT_USER: &str = "vnest-snapshot";
/// How often progress is reported on a long snapshot.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    vnest snapshot team-a -n tenants\n  \
    vnest snapshot team-a -n tenants --out /backups/team-a.db")]
pub(crate) struct SnapshotArgs {
    name: String,
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Where to write the snapshot (default: NAME-<UTC time>.db here).
    /// An existing file is never overwritten.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    connection: HostArgs,
}

pub(crate) async fn run(args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client().await?;
    let (namespace, name) = (args.namespace.as_str(), args.name.as_str());
    let vc = get(&client, namespace, name).await?;
    if vc.spec.datastore.external.is_some() {
        bail!(
            "VirtualCluster {namespace}/{name} keeps its data in an external etcd, which vnest does not run: back it up with that etcd's own tools (`etcdctl snapshot save`)"
        );
    }
    if vc.spec.paused {
        bail!(
            "VirtualCluster {namespace}/{name} is paused, so its etcd is not running; its data is safe on its volumes. `vnest resume {name} -n {namespace}` first to snapshot it"
        );
    }
    let out = args.out.clone().unwrap_or_else(|| default_file(name));
    let keys_file = vnest_etcd::saved::encryption_path(&out);
    for file in [&out, &keys_file] {
        if file.exists() {
            bail!(
                "{} exists; choose another --out or move it away (a snapshot never overwrites a file)",
                file.display()
            );
        }
    }

    let control_plane = host_namespace(namespace, name, HostNamespaceRole::ControlPlane);
    let encryption = encryption_config(&client, &control_plane).await?;
    let tls = client_tls(&client, &control_plane).await?;
    let forward = Forward::start(client, namespace, name, Target::ETCD, 0).await?;
    let member = vnest_etcd::Member::connect(&format!("https://{}", forward.local), &tls)
        .await
        .context("connecting to the tenant's etcd through the host")?;
    let status = member
        .status()
        .await
        .context("asking the tenant's etcd for its status")?;
    eprintln!(
        "taking a snapshot of {namespace}/{name}: etcd {}, database {}, revision {}",
        status.version,
        mebibytes(u64::try_from(status.db_size).unwrap_or(0)),
        status.header.as_ref().map_or(0, |h| h.revision)
    );

    let mut last_report = Instant::now();
    let (snapshot, verified) = vnest_etcd::save(&member, &out, |progress| {
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            eprintln!(
                "  {} received, {} to go",
                mebibytes(progress.received),
                mebibytes(progress.remaining)
            );
        }
    })
    .await?;
    super::kubeconfig::write_private(&keys_file, &encryption)?;
    println!(
        "{}: {} (sha256 {}, storage version {})",
        out.display(),
        mebibytes(snapshot.bytes),
        verified.sha256,
        if snapshot.storage_version.is_empty() {
            "unknown"
        } else {
            &snapshot.storage_version
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// A client certificate for the tenant's etcd, issued from its etcd CA
/// (read from the PKI Secret of the control-plane namespace).
async fn client_tls(client: &kube::Client, control_plane: &str) -> anyhow::Result<vnest_etcd::Tls> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), control_plane);
    let secret = secrets.get(host_names::PKI_SECRET).await.map_err(|e| {
        explain(
            e,
            &format!(
                "reading the tenant's certificates (Secret {control_plane}/{})",
                host_names::PKI_SECRET
            ),
            control_plane,
        )
    })?;
    let data = secret.data.unwrap_or_default();
    let file = |key: &str| -> anyhow::Result<String> {
        let bytes = data
            .get(&host_names::pki_secret_key(key))
            .with_context(|| {
                format!(
                    "Secret {control_plane}/{} has no {key}",
                    host_names::PKI_SECRET
                )
            })?;
        String::from_utf8(bytes.0.clone()).with_context(|| format!("{key} is not PEM text"))
    };
    let ca_pem = file("etcd/ca.crt")?;
    let authority = CertificateAuthority::from_pem(&ca_pem, &file("etcd/ca.key")?)
        .context("loading the tenant's etcd CA")?;
    let leaf = authority
        .issue(&LeafSpec {
            validity: Validity::starting_now(time::Duration::hours(1)),
            ..LeafSpec::client(SNAPSHOT_USER, None)
        })
        .context("issuing a client certificate for the tenant's etcd")?;
    Ok(vnest_etcd::Tls {
        ca_pem,
        client_cert_pem: leaf.cert_pem,
        client_key_pem: leaf.key_pem,
        server_name: format!("{}.{control_plane}.svc", host_names::etcd::SERVICE),
    })
}

/// The tenant apiserver's encryption configuration (its keys sealed the
/// Secrets the snapshot holds).
async fn encryption_config(client: &kube::Client, control_plane: &str) -> anyhow::Result<String> {
    use vnest_api::apiserver_encryption::{FILE, SECRET};
    super::secret_text(
        client,
        control_plane,
        SECRET,
        FILE,
        "the tenant's encryption keys",
    )
    .await
}

/// `NAME-20261205T120000Z.db` here.
fn default_file(name: &str) -> PathBuf {
    PathBuf::from(vnest_etcd::saved::file_name(name, SystemTime::now()))
}

pub(crate) fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_files_are_named_by_cluster_and_utc_time() {
        let file = default_file("team-a").display().to_string();
        assert!(file.starts_with("team-a-2"), "{file}");
        assert!(file.ends_with("Z.db"), "{file}");
        assert!(!file.contains(':'), "{file}");
    }
}
