//! `vnest backups NAME`: the scheduled snapshots (`spec.backup`) and the
//! one taken before the last upgrade, on a tenant's backups volume, oldest
//! first; `--fetch SNAPSHOT` copies one
//! here with its encryption file, checked, ready for `vnest restore
//! --from`.
//!
//! The volume is read by a pod made from the backup CronJob's own pod
//! template (vnest's image, the control plane's node and security
//! settings), with the volume mounted read-only and no certificates. It
//! runs `vnest-supervisor etcd-backups`, which waits until its stdin
//! closes (the CLI has attached to its output by then) and writes the list
//! or the snapshot to its stdout. The file appears under its name only
//! once complete and verified, as with `vnest snapshot`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::Api;
use kube::api::{AttachParams, DeleteParams, ListParams, ObjectMeta, PostParams};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use vnest_api::host_names::etcd_backup::{CLAIM, CRON_JOB};
use vnest_api::host_names::{HostNamespaceRole, host_namespace};

use super::helper_pods::{delete_and_wait, until_finished, until_running};
use super::snapshot::mebibytes;
use super::{explain, get};
use crate::host::HostArgs;

/// Where the reader pod mounts the backups' volume.
const MOUNT: &str = "/var/lib/vnest/backups";
/// The reader pod, for people.
const WHAT: &str = "the pod reading the backups";
/// The reader pod's one container.
const READER: &str = "read";
/// The most an encryption file may be (a few keys of YAML).
const MAX_KEYS_BYTES: u64 = 1 << 20;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    vnest backups team-a -n tenants\n  \
    vnest backups team-a -n tenants --fetch team-a-20261205T030000Z.db\n  \
    vnest restore team-a-copy -n tenants --from team-a-20261205T030000Z.db --pool vnest.dev/pool=a")]
pub(crate) struct BackupsArgs {
    name: String,
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Copy this snapshot (a name the list shows) here, with its
    /// encryption file beside it.
    #[arg(long, value_name = "SNAPSHOT")]
    fetch: Option<String>,
    /// Where to write the fetched snapshot (default: its name, here). An
    /// existing file is never overwritten.
    #[arg(long, value_name = "FILE", requires = "fetch")]
    out: Option<PathBuf>,
    /// How long the reader pod may take to start and finish.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    timeout: Duration,
    #[command(flatten)]
    connection: HostArgs,
}

pub(crate) async fn run(args: BackupsArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client().await?;
    let (namespace, name) = (args.namespace.as_str(), args.name.as_str());
    get(&client, namespace, name).await?;
    let out = args
        .fetch
        .as_ref()
        .map(|snapshot| args.out.clone().unwrap_or_else(|| PathBuf::from(snapshot)));
    if let Some(out) = &out {
        for file in [out.clone(), vnest_etcd::saved::encryption_path(out)] {
            if file.exists() {
                bail!(
                    "{} exists; choose another --out or move it away (a fetch never overwrites a file)",
                    file.display()
                );
            }
        }
    }
    let control_plane = host_namespace(namespace, name, HostNamespaceRole::ControlPlane);
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), &control_plane);
    let cron_job = cron_jobs
        .get_opt(CRON_JOB)
        .await
        .map_err(|e| explain(e, "reading the backup CronJob", &control_plane))?;
    let template = match cron_job {
        Some(cron_job) => cron_job
            .spec
            .job_template
            .spec
            .map(|job| job.template)
            .context("the backup CronJob has no pod template")?,
        // No schedule, but an upgrade snapshotted etcd into the volume:
        // its Job's pod is the same run.
        None => upgrade_snapshot_template(&client, &control_plane)
            .await?
            .with_context(|| {
                format!(
                    "VirtualCluster {namespace}/{name} takes no scheduled snapshots and has not been upgraded: set spec.backup (docs/operations.md#scheduled-snapshots), or take one now with `vnest snapshot {name} -n {namespace}`"
                )
            })?,
    };
    let pod = reader_pod(&template, args.fetch.as_deref())?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &control_plane);
    let deadline = Instant::now() + args.timeout;
    delete_and_wait(&pods, &pod_name, deadline).await?;
    pods.create(&PostParams::default(), &pod)
        .await
        .map_err(|e| explain(e, "creating the pod that reads the backups", &control_plane))?;
    let outcome = read(&pods, &pod_name, out.as_deref(), deadline).await;
    pods.delete(&pod_name, &DeleteParams::default()).await.ok();
    outcome?;
    Ok(ExitCode::SUCCESS)
}

/// The pod template of the Job that snapshotted etcd before the last
/// upgrade, if it is there.
async fn upgrade_snapshot_template(
    client: &kube::Client,
    control_plane: &str,
) -> anyhow::Result<Option<PodTemplateSpec>> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), control_plane);
    let selector = format!(
        "{}={}",
        vnest_api::host_names::labels::COMPONENT,
        vnest_api::host_names::etcd_backup::COMPONENT
    );
    let listed = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| explain(e, "listing the snapshot Jobs", control_plane))?;
    Ok(listed
        .items
        .into_iter()
        .find_map(|job| job.spec.map(|s| s.template)))
}

/// The pod reading the backups' volume: the CronJob's pod, with the volume
/// read-only, no other volume, and the reader's command.
fn reader_pod(template: &PodTemplateSpec, fetch: Option<&str>) -> anyhow::Result<Pod> {
    let mut spec = template
        .spec
        .clone()
        .context("the backup CronJob's pod template has no spec")?;
    let mut container = spec
        .containers
        .first()
        .cloned()
        .context("the backup CronJob's pod has no container")?;
    let mut command = vec![
        "vnest-supervisor".to_owned(),
        "etcd-backups".to_owned(),
        MOUNT.to_owned(),
    ];
    if let Some(snapshot) = fetch {
        command.push(format!("--send={snapshot}"));
    }
    container.name = READER.to_owned();
    container.command = Some(command);
    container.args = None;
    container.stdin = Some(true);
    container.stdin_once = Some(true);
    container.termination_message_policy = Some("FallbackToLogsOnError".to_owned());
    container.volume_mounts = Some(vec![k8s_openapi::api::core::v1::VolumeMount {
        name: "backups".to_owned(),
        mount_path: MOUNT.to_owned(),
        read_only: Some(true),
        ..Default::default()
    }]);
    spec.containers = vec![container];
    spec.restart_policy = Some("Never".to_owned());
    spec.volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
        name: "backups".to_owned(),
        persistent_volume_claim: Some(
            k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                claim_name: CLAIM.to_owned(),
                read_only: Some(true),
            },
        ),
        ..Default::default()
    }]);
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(
        vnest_api::host_names::labels::COMPONENT.to_owned(),
        "etcd-backups-reader".to_owned(),
    );
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(format!("etcd-backups-reader-{}", std::process::id())),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// Attaches to the reader, lets it go, and prints the list or writes the
/// snapshot to `out`; then waits for the pod to finish.
async fn read(
    pods: &Api<Pod>,
    pod_name: &str,
    out: Option<&std::path::Path>,
    deadline: Instant,
) -> anyhow::Result<()> {
    until_running(pods, pod_name, READER, WHAT, deadline).await?;
    let mut attached = pods
        .attach(
            pod_name,
            &AttachParams::default()
                .container(READER)
                .stdin(true)
                .stdout(true)
                .stderr(false),
        )
        .await
        .context("attaching to the pod reading the backups")?;
    let stdout = attached
        .stdout()
        .context("the attach gave no standard output")?;
    let mut stdin = attached
        .stdin()
        .context("the attach gave no standard input")?;
    stdin.shutdown().await.ok();
    drop(stdin);
    let mut stdout = tokio::io::BufReader::new(stdout);
    let received = match out {
        None => {
            let mut text = String::new();
            stdout
                .read_to_string(&mut text)
                .await
                .context("reading the list")?;
            Received::List(text)
        }
        Some(out) => Received::Snapshot(receive(&mut stdout, out).await),
    };
    attached.join().await.ok();
    until_finished(pods, pod_name, WHAT, deadline).await?;
    match received {
        Received::List(text) => print_list(&text),
        Received::Snapshot(outcome) => outcome?,
    }
    Ok(())
}

enum Received {
    List(String),
    Snapshot(anyhow::Result<()>),
}

/// The list as the reader writes it (`NAME BYTES` lines), for people.
fn print_list(text: &str) {
    if text.trim().is_empty() {
        eprintln!("no snapshots on the backups' volume yet");
        return;
    }
    println!("{:<40} SIZE", "SNAPSHOT");
    for line in text.lines() {
        let (name, bytes) = line.split_once(' ').unwrap_or((line, "0"));
        println!("{name:<40} {}", mebibytes(bytes.parse().unwrap_or(0)));
    }
}

/// Reads a sent snapshot: its encryption file's length on a line, the
/// file, then the snapshot, which goes to `out` only once verified.
async fn receive(
    stream: &mut (impl tokio::io::AsyncBufRead + Unpin),
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let mut header = String::new();
    stream
        .read_line(&mut header)
        .await
        .context("reading the snapshot's header")?;
    let keys_len: u64 = header
        .trim()
        .parse()
        .with_context(|| format!("the reader sent no snapshot (it said {header:?})"))?;
    if keys_len > MAX_KEYS_BYTES {
        bail!("the reader sent an encryption file of {keys_len} bytes; refusing");
    }
    let mut keys = vec![0; usize::try_from(keys_len).unwrap_or(0)];
    stream
        .read_exact(&mut keys)
        .await
        .context("reading the snapshot's encryption file")?;
    let (bytes, verified) = vnest_etcd::saved::save_copy(stream, out)
        .await
        .context("receiving the fetched snapshot")?;
    if keys.is_empty() {
        eprintln!(
            "warning: the snapshot has no encryption file beside it on the volume; its Secrets can be read only by the cluster it came from"
        );
    } else {
        let text = String::from_utf8(keys).context("the encryption file is not text")?;
        super::kubeconfig::write_private(&vnest_etcd::saved::encryption_path(out), &text)?;
    }
    println!(
        "{}: {} (sha256 {})",
        out.display(),
        mebibytes(bytes),
        verified.sha256
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, Volume, VolumeMount};

    fn template() -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("vnest.dev/virtualcluster".to_owned(), "a".to_owned())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "etcd-backup".to_owned(),
                    image: Some("vnest.local/vnest:1".to_owned()),
                    command: Some(vec![
                        "vnest-supervisor".to_owned(),
                        "etcd-backup".to_owned(),
                    ]),
                    volume_mounts: Some(vec![VolumeMount {
                        name: "config".to_owned(),
                        mount_path: "/etc/kubernetes".to_owned(),
                        ..VolumeMount::default()
                    }]),
                    ..Container::default()
                }],
                volumes: Some(vec![Volume {
                    name: "config".to_owned(),
                    ..Volume::default()
                }]),
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn the_reader_mounts_only_the_backups_read_only() {
        let pod = reader_pod(&template(), Some("a-20261205T030000Z.db")).unwrap();
        let spec = pod.spec.unwrap();
        let container = &spec.containers[0];
        assert_eq!(container.image.as_deref(), Some("vnest.local/vnest:1"));
        assert_eq!(
            container.command.clone().unwrap(),
            [
                "vnest-supervisor",
                "etcd-backups",
                MOUNT,
                "--send=a-20261205T030000Z.db"
            ]
        );
        assert_eq!(container.stdin, Some(true));
        let volumes = spec.volumes.unwrap();
        assert_eq!(volumes.len(), 1, "no certificates: {volumes:?}");
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .read_only,
            Some(true)
        );
        assert_eq!(
            container.volume_mounts.as_ref().unwrap()[0].read_only,
            Some(true)
        );
        assert_eq!(
            pod.metadata.labels.unwrap()["vnest.dev/virtualcluster"],
            "a",
            "the cluster's labels stay"
        );
    }
}
