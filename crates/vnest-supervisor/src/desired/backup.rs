//! Scheduled snapshots of the tenant's own etcd (`spec.backup`): a claim
//! for the backups' volume and a CronJob in the control-plane namespace
//! whose pods run `vnest-supervisor etcd-backup` from vnest's image
//! ([`crate::etcd_backup`]), with the etcd CA and the apiserver's etcd
//! client pair (etcd's NetworkPolicy admits these pods on its client port)
//! and the apiserver's encryption configuration.
//!
//! The claim is made once and kept: switching backups off deletes the
//! CronJob, not the snapshots. It goes with the control-plane namespace
//! when the VirtualCluster is deleted.
//!
//! An upgrade snapshots etcd first with one more run of the same pod, as a
//! Job of its own ([`one_snapshot`]), into the same volume (made then with
//! the default size when `spec.backup` is unset).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use vnest_api::etcd_backup_args::EtcdBackupArgs;
use vnest_api::host_names::etcd_backup::{CLAIM, COMPONENT, CRON_JOB};
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};
use vnest_api::{Backup, VirtualCluster};

use super::datastore;
use super::pods::{self, Settings};

/// Where the pods mount the backups' volume.
pub const BACKUPS_DIR: &str = "/var/lib/vnest/backups";
/// The PKI files a backup pod mounts: etcd's CA and a client pair it takes.
const PKI_FILES: &[&str] = &[
    "etcd/ca.crt",
    "apiserver-etcd-client.crt",
    "apiserver-etcd-client.key",
];
/// How long one run may take before it is stopped and counted failed.
const RUN_DEADLINE_SECONDS: i64 = 30 * 60;

/// `vc`'s `spec.backup`, or the defaults' size and count for the volume an
/// upgrade's snapshot needs when it is unset.
pub fn plan(vc: &VirtualCluster) -> Backup {
    vc.spec.backup.clone().unwrap_or_else(|| Backup {
        schedule: String::new(),
        keep: vnest_api::DEFAULT_BACKUP_KEEP,
        storage: Quantity(vnest_api::DEFAULT_BACKUP_STORAGE.to_owned()),
        storage_class_name: None,
    })
}

/// The backups' volume of `vc`: made when `spec.backup` is first set (or
/// an upgrade first snapshots etcd).
pub fn claim(vc: &VirtualCluster, backup: &Backup) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: pods::control_plane_meta(vc, CLAIM, COMPONENT),
        spec: Some(pods::volume_claim_spec(
            &backup.storage,
            backup.storage_class_name.as_deref(),
        )),
        status: None,
    }
}

/// What each run is told.
pub fn args(vc: &VirtualCluster, backup: &Backup) -> EtcdBackupArgs {
    let cp = host_namespace_of(vc, HostNamespaceRole::ControlPlane);
    let layout = pods::layout();
    EtcdBackupArgs {
        cluster: vc.metadata.name.clone().unwrap_or_default(),
        endpoints: datastore::client_urls(vc),
        server_name: format!("{}.{cp}.svc", vnest_api::host_names::etcd::SERVICE),
        pki: layout.pki(""),
        encryption: layout.dir.join(vnest_api::apiserver_encryption::FILE),
        dir: BACKUPS_DIR.into(),
        keep: u32::try_from(backup.keep.max(1)).unwrap_or(1),
    }
}

/// One run: a pod that snapshots `vc`'s etcd into the backups' volume,
/// tried up to three times, within [`RUN_DEADLINE_SECONDS`].
fn run_spec(vc: &VirtualCluster, backup: &Backup, settings: &Settings) -> JobSpec {
    let mut command = vec!["vnest-supervisor".to_owned(), "etcd-backup".to_owned()];
    command.extend(args(vc, backup).to_args());
    let container = Container {
        name: COMPONENT.to_owned(),
        image: Some(settings.vnest_image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(command),
        volume_mounts: Some(vec![
            pods::config_mount(),
            VolumeMount {
                name: "backups".to_owned(),
                mount_path: BACKUPS_DIR.to_owned(),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(pods::container_security_context()),
        ..Container::default()
    };
    let mut template = pods::pod_template(
        vc,
        COMPONENT,
        BTreeMap::new(),
        container,
        vec![
            pods::config_volume(
                PKI_FILES,
                &[(
                    vnest_api::apiserver_encryption::SECRET,
                    vnest_api::apiserver_encryption::FILE,
                )],
            ),
            Volume {
                name: "backups".to_owned(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: CLAIM.to_owned(),
                    read_only: None,
                }),
                ..Volume::default()
            },
        ],
    );
    if let Some(spec) = template.spec.as_mut() {
        spec.restart_policy = Some("Never".to_owned());
    }
    JobSpec {
        backoff_limit: Some(2),
        active_deadline_seconds: Some(RUN_DEADLINE_SECONDS),
        template,
        ..JobSpec::default()
    }
}

/// The CronJob taking `vc`'s snapshots on `backup.schedule` (UTC), one run
/// at a time; a paused cluster's is suspended (its etcd is not running).
pub fn cron_job(vc: &VirtualCluster, backup: &Backup, settings: &Settings) -> CronJob {
    CronJob {
        metadata: pods::control_plane_meta(vc, CRON_JOB, COMPONENT),
        spec: CronJobSpec {
            schedule: backup.schedule.clone(),
            time_zone: Some("Etc/UTC".to_owned()),
            suspend: Some(vc.spec.paused),
            concurrency_policy: Some("Forbid".to_owned()),
            // A run missed by more than this (the host's controller was
            // down) is skipped, not made up in a burst.
            starting_deadline_seconds: Some(300),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: None,
                spec: Some(run_spec(vc, backup, settings)),
            },
        },
        status: None,
    }
}

/// One snapshot now, as Job `name` (an upgrade's, before the apiserver
/// moves): counted among the `keep` newest like the scheduled ones.
pub fn one_snapshot(vc: &VirtualCluster, backup: &Backup, settings: &Settings, name: &str) -> Job {
    Job {
        metadata: pods::control_plane_meta(vc, name, COMPONENT),
        spec: Some(run_spec(vc, backup, settings)),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    fn backup() -> Backup {
        Backup {
            schedule: "0 3 * * *".to_owned(),
            keep: 4,
            storage: k8s_openapi::apimachinery::pkg::api::resource::Quantity("3Gi".to_owned()),
            storage_class_name: Some("fast".to_owned()),
        }
    }

    #[derive(Parser)]
    struct Line {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(clap::Subcommand)]
    enum Sub {
        EtcdBackup(EtcdBackupArgs),
    }

    #[test]
    fn each_run_snapshots_every_member_it_can_reach_into_the_claim() {
        let mut vc = super::super::test_cluster();
        vc.spec.datastore.etcd = Some(vnest_api::OwnedEtcd {
            replicas: 3,
            ..vnest_api::OwnedEtcd::default()
        });
        let job = cron_job(&vc, &backup(), &Settings::default());
        let spec = job.spec;
        assert_eq!(spec.schedule, "0 3 * * *");
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        assert_eq!(spec.suspend, Some(false));
        let pod = spec.job_template.spec.unwrap().template.spec.unwrap();
        let container = &pod.containers[0];
        let command = container.command.clone().unwrap();
        assert_eq!(command[..2], ["vnest-supervisor", "etcd-backup"]);
        let Sub::EtcdBackup(read) = Line::try_parse_from(
            std::iter::once("x").chain(command[1..].iter().map(String::as_str)),
        )
        .unwrap()
        .command;
        assert_eq!(read, args(&vc, &backup()));
        assert_eq!(read.endpoints.len(), 3);
        assert_eq!(read.keep, 4);
        let volumes = pod.volumes.unwrap();
        assert!(volumes.iter().any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == CLAIM)
        }));
        assert_eq!(
            pod.security_context.unwrap().run_as_non_root,
            Some(true),
            "restricted, as every control-plane pod"
        );
        let claim = claim(&vc, &backup()).spec.unwrap();
        assert_eq!(claim.storage_class_name.as_deref(), Some("fast"));
    }

    #[test]
    fn a_paused_cluster_takes_no_snapshots() {
        let mut vc = super::super::test_cluster();
        vc.spec.paused = true;
        let job = cron_job(&vc, &backup(), &Settings::default());
        assert_eq!(job.spec.suspend, Some(true));
    }
}
