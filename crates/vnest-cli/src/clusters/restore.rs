//! `vnest restore NAME --from FILE`: a tenant's etcd brought back from a
//! snapshot (`vnest snapshot`), over a paused VirtualCluster or into a new
//! one created paused from the spec flags.
//!
//! The snapshot is checked here first (an etcd database with its SHA-256;
//! a corrupt or foreign file is refused with the reason). Then, for each
//! etcd member, a restore pod on the member's volume (built from the
//! member's StatefulSet, so the same image, node and security settings)
//! receives the file on its stdin and checks it again, etcd's own
//! `etcdutl snapshot restore` writes a new member beside the old data, and
//! only then is the old data moved aside (one generation is kept on the
//! volume, `data.before-restore`). See `vnest_api::etcd_volume`.
//!
//! The Secrets in a snapshot are sealed with the keys of the cluster it
//! was taken from, which `vnest snapshot` saved beside it
//! (`FILE.encryption`): those keys are added to the configuration of the
//! cluster restored into, after its own, before it resumes.
//!
//! The restored keyspace has its revision raised and compacted
//! (`--bump-revision`, `--mark-compacted`, as upstream advises for
//! Kubernetes), so every client's watch starts over from the restored
//! state instead of trusting what it cached. On resume the apiserver serves
//! the restored objects, the controllers act on them, and the syncer makes
//! the host match: host copies of objects the snapshot lacks are removed,
//! workloads it has are created.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodSpec,
    PodTemplateSpec, Volume, VolumeMount,
};
use kube::Api;
use kube::api::{
    AttachParams, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
};
use tokio::io::AsyncWriteExt as _;
use vnest_api::etcd_volume::{self, RestoreStep};
use vnest_api::host_names::{self, HostNamespaceRole, host_namespace, labels};

use super::create::{SpecArgs, create};
use super::helper_pods::{delete_and_wait, until_finished, until_running};
use super::wait::{self, Outcome, POLL};
use super::{api, explain, get};
use crate::exit::TIMED_OUT;
use crate::host::HostArgs;

/// The restore pods' component label.
const RESTORE_COMPONENT: &str = "etcd-restore";
/// The name of etcd's volume claim template (its claims are
/// `data-etcd-<i>`).
const CLAIM_TEMPLATE: &str = "data";
/// How much a restore raises the revision (upstream's advice: more than
/// the writes that could have happened since the snapshot was taken).
const REVISION_BUMP: u64 = 1_000_000_000;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    vnest pause team-a -n tenants && vnest restore team-a -n tenants --from team-a.db\n  \
    vnest restore team-a-copy -n tenants --from team-a.db --pool vnest.dev/pool=a\n\n\
Over an existing VirtualCluster it must be paused first (restoring replaces all of its \
state). A VirtualCluster that does not exist is created paused from the flags below \
(as `vnest create` takes them), restored, then resumed.\n\n\
Exit codes: 0 restored (and Ready unless --keep-paused), 1 error, 4 timed out waiting.")]
pub(crate) struct RestoreArgs {
    name: String,
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// The snapshot file (from `vnest snapshot` or `etcdctl snapshot save`).
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// Leave the cluster paused once restored, instead of resuming it and
    /// waiting until it is Ready.
    #[arg(long)]
    keep_paused: bool,
    /// How long each wait may take (the restore pods; Ready after resume).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    timeout: Duration,
    #[command(flatten)]
    spec: SpecArgs,
    #[command(flatten)]
    connection: HostArgs,
}

pub(crate) async fn run(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let verified = vnest_etcd::verify(&args.from).context("refusing to restore")?;
    eprintln!(
        "{}: an etcd snapshot of {}, checksum intact (sha256 {})",
        args.from.display(),
        super::snapshot::mebibytes(verified.database_bytes),
        verified.sha256
    );
    let keys_file = vnest_etcd::saved::encryption_path(&args.from);
    let restored_keys = match std::fs::read_to_string(&keys_file) {
        Ok(config) => {
            vnest_api::apiserver_encryption::keys(&config)
                .with_context(|| format!("refusing to restore: {}", keys_file.display()))?;
            Some(config)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "warning: no {} beside the snapshot: the Secrets it holds can be read only by the cluster it came from (which seals them with the same key); restored over another cluster, that cluster's apiserver would not become ready",
                keys_file.display()
            );
            None
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("reading {}", keys_file.display())));
        }
    };
    let client = args.connection.client().await?;
    let (namespace, name) = (args.namespace.as_str(), args.name.as_str());
    let clusters = api(&client, namespace);
    let vc = match clusters.get_opt(name).await.map_err(|e| {
        explain(
            e,
            &format!("reading VirtualCluster {namespace}/{name}"),
            namespace,
        )
    })? {
        Some(vc) => {
            if args.spec.given() {
                bail!(
                    "VirtualCluster {namespace}/{name} exists; the spec flags (--pool, -f, …) are only for restoring into a new one"
                );
            }
            if !vc.spec.paused {
                bail!(
                    "VirtualCluster {namespace}/{name} is running; a restore replaces all of its state, so pause it first: `vnest pause {name} -n {namespace}`"
                );
            }
            vc
        }
        None => {
            if restored_keys.is_none() {
                bail!(
                    "refusing to restore into a new cluster without {}: the snapshot's Secrets are sealed with its cluster's encryption key, which `vnest snapshot` saves there; without it the new cluster's apiserver could not read them (and would not become ready)",
                    keys_file.display()
                );
            }
            let mut vc = args.spec.virtual_cluster(Some(name), namespace)?;
            vc.spec.paused = true;
            create(&client, &vc).await?;
            eprintln!("VirtualCluster {namespace}/{name} created, paused, to restore into");
            get(&client, namespace, name).await?
        }
    };
    if vc.spec.datastore.external.is_some() {
        bail!(
            "VirtualCluster {namespace}/{name} keeps its data in an external etcd, which vnest does not run: restore it with that etcd's own tools"
        );
    }
    let members = vc.spec.datastore.members();

    let control_plane = host_namespace(namespace, name, HostNamespaceRole::ControlPlane);
    let deadline = Instant::now() + args.timeout;
    let (template, claim_template) = etcd_templates(&client, &control_plane, deadline).await?;
    let vnest_image = vnest_image(&client, &control_plane).await?;
    etcd_stopped(&client, &control_plane, deadline).await?;

    for member in 0..members {
        restore_member(
            &client,
            &control_plane,
            &RestorePod {
                template: &template,
                vnest_image: &vnest_image,
                member,
            },
            &claim_template,
            &args.from,
            deadline,
        )
        .await
        .with_context(|| format!("restoring etcd member {member} of {namespace}/{name}"))?;
    }
    if let Some(restored) = &restored_keys {
        add_restored_keys(&client, &control_plane, restored, deadline).await?;
    }
    eprintln!(
        "{namespace}/{name}: {members} etcd member(s) restored from {}",
        args.from.display()
    );
    if args.keep_paused {
        eprintln!("it stays paused; bring it back with `vnest resume {name} -n {namespace}`");
        return Ok(ExitCode::SUCCESS);
    }
    super::lifecycle::set_paused(&client, namespace, name, false).await?;
    eprintln!("resuming {namespace}/{name}");
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(60));
    if let Outcome::TimedOut(why) = wait::until_ready(&clusters, name, left).await? {
        eprintln!("error: {why}; `vnest describe {name} -n {namespace}` tells more");
        return Ok(ExitCode::from(TIMED_OUT));
    }
    Ok(ExitCode::SUCCESS)
}

/// etcd's pod template and volume claim template, from the StatefulSet the
/// supervisor made (waited for when the cluster was just created).
async fn etcd_templates(
    client: &kube::Client,
    control_plane: &str,
    deadline: Instant,
) -> anyhow::Result<(PodTemplateSpec, PersistentVolumeClaim)> {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), control_plane);
    loop {
        let found = sets
            .get_opt(host_names::etcd::SERVICE)
            .await
            .map_err(|e| explain(e, "reading etcd's StatefulSet", control_plane))?;
        if let Some(spec) = found.map(|s| s.spec) {
            let claim = spec
                .volume_claim_templates
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.metadata.name.as_deref() == Some(CLAIM_TEMPLATE))
                .context("etcd's StatefulSet has no data volume claim template")?;
            return Ok((spec.template, claim));
        }
        if Instant::now() > deadline {
            bail!(
                "the supervisor has not made etcd's StatefulSet in {control_plane} (is it running? `vnest describe` tells)"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Adds the keys that sealed the snapshot's Secrets to the cluster's
/// encryption configuration (the supervisor makes it once and never
/// rewrites it), after the cluster's own key.
async fn add_restored_keys(
    client: &kube::Client,
    control_plane: &str,
    restored: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    use vnest_api::apiserver_encryption::{FILE, SECRET, after_restore};
    let secrets: Api<Secret> = Api::namespaced(client.clone(), control_plane);
    let secret = loop {
        let found = secrets
            .get_opt(SECRET)
            .await
            .map_err(|e| explain(e, "reading the cluster's encryption keys", control_plane))?;
        if let Some(secret) = found {
            break secret;
        }
        if Instant::now() > deadline {
            bail!("the supervisor has not made Secret {control_plane}/{SECRET}");
        }
        tokio::time::sleep(POLL).await;
    };
    let current = secret
        .data
        .as_ref()
        .and_then(|d| d.get(FILE))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .with_context(|| format!("Secret {control_plane}/{SECRET} has no {FILE}"))?;
    let Some(merged) = after_restore(&current, restored)
        .with_context(|| format!("Secret {control_plane}/{SECRET}"))?
    else {
        return Ok(());
    };
    let patch = serde_json::json!({ "data": { FILE: ByteString(merged.into_bytes()) } });
    secrets
        .patch(SECRET, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            explain(
                e,
                "adding the snapshot's keys to the cluster's encryption configuration",
                control_plane,
            )
        })?;
    eprintln!("  the snapshot's encryption keys added to the cluster's (its Secrets can be read)");
    Ok(())
}

/// vnest's own image, as the tenant's syncer runs it.
async fn vnest_image(client: &kube::Client, control_plane: &str) -> anyhow::Result<String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), control_plane);
    let syncer = deployments
        .get(host_names::syncer::DEPLOYMENT)
        .await
        .map_err(|e| explain(e, "reading the syncer's Deployment", control_plane))?;
    syncer
        .spec
        .template
        .spec
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.image)
        .context("the syncer's Deployment names no image")
}

/// Waits until no etcd member pod is left (a paused cluster's are
/// stopping).
async fn etcd_stopped(
    client: &kube::Client,
    control_plane: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), control_plane);
    let members = ListParams::default().labels(&format!(
        "{}={}",
        labels::COMPONENT,
        host_names::etcd::COMPONENT
    ));
    loop {
        let left = pods
            .list(&members)
            .await
            .map_err(|e| explain(e, "listing etcd's pods", control_plane))?
            .items
            .len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{left} etcd member pod(s) in {control_plane} did not stop");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One member's restore: its claim (made from the template if the member
/// never ran), the restore pod, the snapshot on its stdin, its outcome.
async fn restore_member(
    client: &kube::Client,
    control_plane: &str,
    pod: &RestorePod<'_>,
    claim_template: &PersistentVolumeClaim,
    from: &std::path::Path,
    deadline: Instant,
) -> anyhow::Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), control_plane);
    let claim_name = pod.claim();
    if claims
        .get_opt(&claim_name)
        .await
        .map_err(|e| explain(e, "reading etcd's volume claim", control_plane))?
        .is_none()
    {
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(claim_name.clone()),
                // As the StatefulSet names and labels the claims it makes
                // from its template, so that it adopts this one.
                labels: claim_template.metadata.labels.clone(),
                ..ObjectMeta::default()
            },
            spec: claim_template.spec.clone(),
            status: None,
        };
        claims
            .create(&PostParams::default(), &claim)
            .await
            .map_err(|e| explain(e, "creating etcd's volume claim", control_plane))?;
    }

    let pods: Api<Pod> = Api::namespaced(client.clone(), control_plane);
    let spec = pod.build()?;
    let pod_name = spec.metadata.name.clone().unwrap_or_default();
    delete_and_wait(&pods, &pod_name, deadline).await?;
    pods.create(&PostParams::default(), &spec)
        .await
        .map_err(|e| explain(e, "creating the restore pod", control_plane))?;
    let outcome = feed_and_finish(&pods, &pod_name, from, deadline).await;
    if outcome.is_ok() {
        pods.delete(&pod_name, &DeleteParams::default()).await.ok();
    } else {
        eprintln!(
            "the restore pod {control_plane}/{pod_name} is kept for a look (`kubectl logs --all-containers`); the member's data was left as it was"
        );
    }
    outcome
}

/// Streams the snapshot into the receive step, then waits for the pod.
async fn feed_and_finish(
    pods: &Api<Pod>,
    pod_name: &str,
    from: &std::path::Path,
    deadline: Instant,
) -> anyhow::Result<()> {
    until_running(pods, pod_name, RECEIVE, "the restore pod", deadline).await?;
    let mut attached = pods
        .attach(
            pod_name,
            &AttachParams::default()
                .container(RECEIVE)
                .stdin(true)
                .stdout(false)
                .stderr(false),
        )
        .await
        .context("attaching to the restore pod")?;
    let mut stdin = attached
        .stdin()
        .context("the restore pod's attach gave no stdin")?;
    let mut file = tokio::fs::File::open(from)
        .await
        .with_context(|| format!("opening {}", from.display()))?;
    let sent = tokio::io::copy(&mut file, &mut stdin)
        .await
        .context("sending the snapshot")?;
    stdin.shutdown().await.ok();
    drop(stdin);
    attached.join().await.ok();
    eprintln!("  sent {sent} bytes to {pod_name}");
    until_finished(pods, pod_name, "the restore pod", deadline).await
}

/// The container names of a restore pod's steps.
const RECEIVE: &str = "receive";
const ETCDUTL: &str = "etcdutl";
const INSTALL: &str = "install";

/// The restore pod of one member, derived from etcd's pod template.
struct RestorePod<'a> {
    template: &'a PodTemplateSpec,
    vnest_image: &'a str,
    member: i32,
}

impl RestorePod<'_> {
    fn member_name(&self) -> String {
        format!("{}-{}", host_names::etcd::SERVICE, self.member)
    }

    fn claim(&self) -> String {
        format!("{CLAIM_TEMPLATE}-{}", self.member_name())
    }

    fn build(&self) -> anyhow::Result<Pod> {
        let template_spec = self
            .template
            .spec
            .clone()
            .context("etcd's pod template has no spec")?;
        let etcd = template_spec
            .containers
            .iter()
            .find(|c| c.name == host_names::etcd::COMPONENT)
            .context("etcd's pod template has no etcd container")?;
        let flag = |name: &str| -> anyhow::Result<String> {
            let prefix = format!("--{name}=");
            etcd.args
                .iter()
                .flatten()
                .find(|a| a.starts_with(&prefix))
                .cloned()
                .with_context(|| format!("etcd's pod template has no --{name}"))
        };
        let data = VolumeMount {
            name: "data".to_owned(),
            mount_path: etcd_volume::MOUNT.to_owned(),
            ..VolumeMount::default()
        };
        let step = |name: &str, image: &str, command: Vec<String>| Container {
            name: name.to_owned(),
            image: Some(image.to_owned()),
            image_pull_policy: etcd.image_pull_policy.clone(),
            command: Some(command),
            volume_mounts: Some(vec![data.clone()]),
            security_context: etcd.security_context.clone(),
            resources: etcd.resources.clone(),
            termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
            ..Container::default()
        };
        let receive = Container {
            stdin: Some(true),
            stdin_once: Some(true),
            ..step(RECEIVE, self.vnest_image, RestoreStep::Receive.command())
        };
        let mut restore = vec![
            "etcdutl".to_owned(),
            "snapshot".to_owned(),
            "restore".to_owned(),
            etcd_volume::under_mount(etcd_volume::SNAPSHOT),
            format!(
                "--data-dir={}",
                etcd_volume::under_mount(etcd_volume::RESTORING)
            ),
            format!("--name={}", self.member_name()),
            format!("--bump-revision={REVISION_BUMP}"),
            "--mark-compacted".to_owned(),
        ];
        for name in [
            "initial-cluster",
            "initial-cluster-token",
            "initial-advertise-peer-urls",
        ] {
            restore.push(flag(name)?);
        }
        let etcdutl = Container {
            // The peer URL names the member as `$(POD_NAME)`, as in the
            // member's own pod.
            env: Some(vec![EnvVar {
                name: "POD_NAME".to_owned(),
                value: Some(self.member_name()),
                ..EnvVar::default()
            }]),
            ..step(ETCDUTL, etcd.image.as_deref().unwrap_or_default(), restore)
        };
        let install = step(INSTALL, self.vnest_image, RestoreStep::Install.command());
        let mut pod_labels = self
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        pod_labels.insert(labels::COMPONENT.to_owned(), RESTORE_COMPONENT.to_owned());
        pod_labels.remove(labels::MANAGED_BY);
        Ok(Pod {
            metadata: ObjectMeta {
                name: Some(format!("{RESTORE_COMPONENT}-{}", self.member)),
                labels: Some(pod_labels),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                init_containers: Some(vec![receive, etcdutl]),
                containers: vec![install],
                volumes: Some(vec![Volume {
                    name: "data".to_owned(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: self.claim(),
                        read_only: None,
                    }),
                    ..Volume::default()
                }]),
                restart_policy: Some("Never".to_owned()),
                ..template_spec
            }),
            status: None,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn template() -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {
                "vnest.dev/component": "etcd",
                "app.kubernetes.io/managed-by": "vnest-supervisor",
                "vnest.dev/virtualcluster": "a"
            }},
            "spec": {
                "nodeSelector": {"cp": "yes"},
                "automountServiceAccountToken": false,
                "securityContext": {"runAsNonRoot": true},
                "containers": [{
                    "name": "etcd",
                    "image": "registry.k8s.io/etcd:3.7.3-0",
                    "args": [
                        "--name=$(POD_NAME)",
                        "--initial-cluster=etcd-0=https://etcd-0.etcd.x.svc:2380",
                        "--initial-cluster-token=x",
                        "--initial-advertise-peer-urls=https://$(POD_NAME).etcd.x.svc:2380"
                    ],
                    "securityContext": {"allowPrivilegeEscalation": false},
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/etcd"}]
                }],
                "volumes": [{"name": "config", "secret": {"secretName": "vnest-pki"}}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_restore_pod_runs_the_steps_on_the_members_volume() {
        let template = template();
        let pod = RestorePod {
            template: &template,
            vnest_image: "vnest.local/vnest:0.1.0",
            member: 0,
        }
        .build()
        .unwrap();
        let spec = pod.spec.unwrap();
        let init = spec.init_containers.unwrap();
        assert_eq!(
            init.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            [RECEIVE, ETCDUTL]
        );
        assert_eq!(init[0].stdin_once, Some(true));
        assert_eq!(init[0].command, Some(RestoreStep::Receive.command()));
        let etcdutl = init[1].command.clone().unwrap();
        assert!(etcdutl.contains(&"--name=etcd-0".to_owned()), "{etcdutl:?}");
        assert!(etcdutl.contains(&"--initial-cluster-token=x".to_owned()));
        assert!(etcdutl.contains(&"--mark-compacted".to_owned()));
        assert_eq!(
            init[1].image.as_deref(),
            Some("registry.k8s.io/etcd:3.7.3-0")
        );
        assert_eq!(
            spec.containers[0].command,
            Some(RestoreStep::Install.command())
        );
        // The member's placement and security, its volume and nothing else.
        assert_eq!(spec.node_selector.unwrap()["cp"], "yes");
        assert_eq!(spec.security_context.unwrap().run_as_non_root, Some(true));
        let volumes = spec.volumes.unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "data-etcd-0"
        );
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(labels[labels::COMPONENT], RESTORE_COMPONENT);
        assert!(
            !labels.contains_key(labels::MANAGED_BY),
            "the supervisor does not prune it"
        );
    }

    #[test]
    fn a_template_without_the_cluster_flags_is_refused() {
        let mut template = template();
        template.spec.as_mut().unwrap().containers[0].args = Some(vec![]);
        let error = RestorePod {
            template: &template,
            vnest_image: "v",
            member: 0,
        }
        .build()
        .unwrap_err();
        assert!(error.to_string().contains("--initial-cluster"), "{error}");
    }
}
