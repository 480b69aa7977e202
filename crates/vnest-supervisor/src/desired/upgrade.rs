//! A change of `spec.kubernetesVersion`, carried out in upstream's order
//! (kubeadm's, and the version skew policy's): a snapshot of the tenant's
//! etcd first, then the apiserver replicas (one at a time, as its
//! Deployment rolls), and only once every apiserver runs the new version
//! the controller-manager and scheduler, which may not be newer than the
//! apiserver they talk to. etcd's version does not follow Kubernetes'
//! here: every supported minor runs on the pinned etcd.
//!
//! What each component runs is read from the status the supervisor keeps
//! (`status.componentVersions`, written from the rollouts); what it is
//! given now is decided here, purely.

use k8s_openapi::api::batch::v1::Job;
use vnest_api::host_names::etcd_backup::BEFORE_UPGRADE_JOB_PREFIX;
use vnest_api::{ComponentVersions, VirtualCluster};

use super::datastore;
use super::pods;
use crate::status::{self, Stage};

/// The Kubernetes version each upstream component is given now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    pub apiserver: String,
    /// The controller-manager and the scheduler.
    pub controllers: String,
}

/// What the supervisor does about the version now.
#[derive(Clone, Debug, PartialEq)]
pub struct Upgrade {
    pub versions: Versions,
    /// The name of the Job snapshotting etcd before the apiserver moves,
    /// while it is wanted (an upgrade under way, of an owned etcd).
    pub snapshot_job: Option<String>,
    /// The `Upgrade` condition, while an upgrade is under way.
    pub stage: Option<Stage>,
}

/// The Job snapshotting etcd before the upgrade to `version`.
pub fn snapshot_job_name(version: &str) -> String {
    format!("{BEFORE_UPGRADE_JOB_PREFIX}{}", version.replace('.', "-"))
}

/// What `vc`'s components run, as its status says; a cluster written by
/// an older supervisor has only `status.version`, which all of them ran.
fn running(vc: &VirtualCluster) -> ComponentVersions {
    let status = vc.status.as_ref();
    let recorded = status
        .and_then(|s| s.component_versions.clone())
        .unwrap_or_default();
    let whole = status.and_then(|s| s.version.clone());
    ComponentVersions {
        kube_apiserver: recorded.kube_apiserver.or_else(|| whole.clone()),
        kube_controller_manager: recorded.kube_controller_manager.or(whole),
        ..recorded
    }
}

/// Decides the versions for `vc`, given the pre-upgrade snapshot Job as
/// the host has it (`None`: not made yet).
pub fn plan(vc: &VirtualCluster, snapshot: Option<&Job>) -> Upgrade {
    let wanted = pods::kubernetes_version(vc).to_owned();
    let running = running(vc);
    let Some(apiserver_runs) = running.kube_apiserver.clone() else {
        // Nothing runs yet: a new cluster starts at the wanted version.
        return Upgrade {
            versions: Versions {
                apiserver: wanted.clone(),
                controllers: wanted,
            },
            snapshot_job: None,
            stage: None,
        };
    };
    let controllers_run = running
        .kube_controller_manager
        .clone()
        .unwrap_or_else(|| apiserver_runs.clone());
    if apiserver_runs == wanted {
        // The apiserver is done (or nothing changes): the controllers
        // follow it.
        let stage = (controllers_run != wanted).then(|| {
            Stage::waiting(
                status::UPGRADE,
                "ControllersRolling",
                format!(
                    "every apiserver runs {wanted}; the controller-manager and scheduler move from {controllers_run} to it"
                ),
            )
        });
        return Upgrade {
            versions: Versions {
                apiserver: wanted.clone(),
                controllers: wanted,
            },
            snapshot_job: None,
            stage,
        };
    }
    let hold = |stage: Stage, snapshot_job| Upgrade {
        versions: Versions {
            apiserver: apiserver_runs.clone(),
            controllers: controllers_run.clone(),
        },
        snapshot_job,
        stage: Some(stage),
    };
    let moving = |snapshot_job, taken: &str| Upgrade {
        versions: Versions {
            apiserver: wanted.clone(),
            controllers: controllers_run.clone(),
        },
        snapshot_job,
        stage: Some(Stage::waiting(
            status::UPGRADE,
            "APIServerRolling",
            format!(
                "{taken}; the apiservers move from {apiserver_runs} to {wanted} one at a time, then the controller-manager and scheduler"
            ),
        )),
    };
    if vc.spec.paused {
        // Nothing to look at again until the resume (which is a change).
        return hold(
            Stage::ok(
                status::UPGRADE,
                "Paused",
                format!(
                    "the move from {apiserver_runs} to {wanted} starts when the cluster resumes"
                ),
            ),
            None,
        );
    }
    if datastore::owned_etcd(vc).is_none() {
        return moving(None, "the datastore is external, so no snapshot is taken");
    }
    let job = snapshot_job_name(&wanted);
    let job_status = snapshot.and_then(|j| j.status.as_ref());
    let succeeded = job_status.and_then(|s| s.succeeded).unwrap_or(0) > 0;
    let failed = job_status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Failed" && c.status == "True"));
    if succeeded {
        moving(
            Some(job.clone()),
            &format!("etcd was snapshotted first (Job {job}, into the backups' volume)"),
        )
    } else if failed {
        hold(
            Stage::waiting(
                status::UPGRADE,
                "SnapshotFailed",
                format!(
                    "the snapshot before the move from {apiserver_runs} to {wanted} failed, so nothing was upgraded; `kubectl logs job/{job}` in the control-plane namespace says why, and deleting the Job tries again"
                ),
            ),
            Some(job),
        )
    } else {
        hold(
            Stage::waiting(
                status::UPGRADE,
                "TakingSnapshot",
                format!(
                    "snapshotting etcd (Job {job}) before the move from {apiserver_runs} to {wanted}"
                ),
            ),
            Some(job),
        )
    }
}

/// The version a component runs after this reconcile: the image tag of
/// its template once every pod runs it (`rolled_out`), else what it ran.
pub fn runs(image: Option<&str>, rolled_out: bool, ran: Option<&String>) -> Option<String> {
    match image.and_then(|i| i.rsplit_once(':')) {
        Some((_, tag)) if rolled_out => Some(tag.to_owned()),
        _ => ran.cloned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use vnest_api::VirtualClusterStatus;

    fn cluster(wanted: &str, apiserver: Option<&str>, controllers: Option<&str>) -> VirtualCluster {
        let mut vc = crate::desired::test_cluster();
        vc.spec.kubernetes_version = Some(wanted.to_owned());
        vc.status = Some(VirtualClusterStatus {
            component_versions: Some(ComponentVersions {
                kube_apiserver: apiserver.map(str::to_owned),
                kube_controller_manager: controllers.map(str::to_owned),
                ..ComponentVersions::default()
            }),
            ..VirtualClusterStatus::default()
        });
        vc
    }

    fn job(succeeded: bool, failed: bool) -> Job {
        Job {
            status: Some(JobStatus {
                succeeded: succeeded.then_some(1),
                conditions: failed.then(|| {
                    vec![JobCondition {
                        type_: "Failed".into(),
                        status: "True".into(),
                        ..JobCondition::default()
                    }]
                }),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    fn versions(apiserver: &str, controllers: &str) -> Versions {
        Versions {
            apiserver: apiserver.into(),
            controllers: controllers.into(),
        }
    }

    /// The whole way from v1.36.3 to v1.37.2, step by step.
    #[test]
    fn an_upgrade_snapshots_then_moves_the_apiservers_then_the_controllers() {
        let from = cluster("v1.37.2", Some("v1.36.3"), Some("v1.36.3"));
        let job_name = "etcd-before-upgrade-to-v1-37-2";
        // No snapshot yet: nothing moves, the Job is wanted.
        let waiting = plan(&from, None);
        assert_eq!(waiting.versions, versions("v1.36.3", "v1.36.3"));
        assert_eq!(waiting.snapshot_job.as_deref(), Some(job_name));
        assert_eq!(waiting.stage.unwrap().reason, "TakingSnapshot");
        // Still running.
        assert_eq!(
            plan(&from, Some(&job(false, false))).versions,
            versions("v1.36.3", "v1.36.3")
        );
        // A failed snapshot holds everything back and says so.
        let failed = plan(&from, Some(&job(false, true)));
        assert_eq!(failed.versions, versions("v1.36.3", "v1.36.3"));
        let stage = failed.stage.unwrap();
        assert_eq!(stage.reason, "SnapshotFailed");
        assert!(stage.message.contains("nothing was upgraded"), "{stage:?}");
        // Taken: the apiservers move, the controllers stay.
        let rolling = plan(&from, Some(&job(true, false)));
        assert_eq!(rolling.versions, versions("v1.37.2", "v1.36.3"));
        assert_eq!(rolling.stage.unwrap().reason, "APIServerRolling");
        // Every apiserver on v1.37.2: the controllers follow; the Job is
        // no longer wanted.
        let apiserver_done = cluster("v1.37.2", Some("v1.37.2"), Some("v1.36.3"));
        let following = plan(&apiserver_done, Some(&job(true, false)));
        assert_eq!(following.versions, versions("v1.37.2", "v1.37.2"));
        assert_eq!(following.snapshot_job, None);
        assert_eq!(following.stage.unwrap().reason, "ControllersRolling");
        // Done.
        let done = plan(&cluster("v1.37.2", Some("v1.37.2"), Some("v1.37.2")), None);
        assert_eq!(done.versions, versions("v1.37.2", "v1.37.2"));
        assert_eq!((done.snapshot_job, done.stage), (None, None));
    }

    #[test]
    fn new_paused_and_external_clusters() {
        // Nothing runs: the wanted version at once, no snapshot.
        let new = plan(&cluster("v1.36.3", None, None), None);
        assert_eq!(new.versions, versions("v1.36.3", "v1.36.3"));
        assert_eq!((new.snapshot_job, new.stage), (None, None));
        // A cluster of an older supervisor: status.version alone.
        let mut old = cluster("v1.37.2", None, None);
        if let Some(status) = old.status.as_mut() {
            status.component_versions = None;
            status.version = Some("v1.36.3".into());
        }
        assert_eq!(plan(&old, None).versions, versions("v1.36.3", "v1.36.3"));
        // Paused: waits for the resume.
        let mut paused = cluster("v1.37.2", Some("v1.36.3"), Some("v1.36.3"));
        paused.spec.paused = true;
        let held = plan(&paused, None);
        assert_eq!(held.versions, versions("v1.36.3", "v1.36.3"));
        assert_eq!(held.snapshot_job, None);
        assert_eq!(held.stage.unwrap().reason, "Paused");
        // An external etcd is not ours to snapshot: the apiservers move.
        let mut external = cluster("v1.37.2", Some("v1.36.3"), Some("v1.36.3"));
        external.spec.datastore.external = Some(vnest_api::ExternalEtcd {
            endpoints: vec!["https://etcd.example:2379".into()],
            client_cert_secret_name: "etcd-client".into(),
        });
        let moving = plan(&external, None);
        assert_eq!(moving.versions, versions("v1.37.2", "v1.36.3"));
        assert_eq!(moving.snapshot_job, None);
    }

    #[test]
    fn a_component_runs_its_template_version_once_rolled_out() {
        let ran = Some("v1.36.3".to_owned());
        let image = Some("registry.k8s.io/kube-apiserver:v1.37.2");
        assert_eq!(runs(image, true, ran.as_ref()).as_deref(), Some("v1.37.2"));
        assert_eq!(runs(image, false, ran.as_ref()).as_deref(), Some("v1.36.3"));
        assert_eq!(runs(image, false, None), None);
        assert_eq!(runs(None, true, ran.as_ref()).as_deref(), Some("v1.36.3"));
    }
}
