//! The tenant's own kube-scheduler, for `nodePool.scheduler: Tenant`: a
//! Deployment reaching the tenant apiserver through its Service as
//! `system:kube-scheduler` (whose rights the tenant apiserver bootstraps).
//! It binds the tenant's pods to the tenant's Node copies of the pool; the
//! syncer then runs each on the host node it was bound to. With the host's
//! scheduler (the default) the Deployment is there with no replicas, so
//! that switching back and forth changes a number, not a set of objects.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, Secret};
use vnest_api::{PodScheduler, VirtualCluster};
use vnest_control_plane::flags;
use vnest_pki::ControlPlanePki;

use super::kubeconfig::{component_secret, in_cluster};
use super::pods::{self, Settings};
use super::resources::{self, Component};

pub const COMPONENT: &str = "scheduler";
pub const SECURE_PORT: i32 = 10259;
/// The Secret holding the scheduler's kubeconfig.
pub const KUBECONFIG_SECRET: &str = "scheduler-kubeconfig";
const KUBECONFIG_FILE: &str = "scheduler.kubeconfig";
/// The CAs its clients' certificates are checked against (its own client
/// certificate is in its kubeconfig).
const SCHEDULER_FILES: &[&str] = &["ca.crt", "front-proxy-ca.crt"];

/// Whether `vc` wants a scheduler of its own running.
pub fn runs(vc: &VirtualCluster) -> bool {
    vc.spec.node_pool.scheduler == PodScheduler::Tenant && !vc.spec.paused
}

/// The scheduler's kubeconfig, to the apiserver's Service.
pub fn kubeconfig_secret(
    vc: &VirtualCluster,
    pki: &ControlPlanePki,
) -> Result<Secret, vnest_pki::Error> {
    let kubeconfig = in_cluster(vc, pki, vnest_pki::identity::SCHEDULER_USER, &pki.scheduler)?;
    Ok(component_secret(
        vc,
        COMPONENT,
        KUBECONFIG_SECRET,
        KUBECONFIG_FILE,
        kubeconfig,
    ))
}

pub fn args() -> Vec<String> {
    let mut args = vec![
        "--bind-address=0.0.0.0".to_owned(),
        format!("--secure-port={SECURE_PORT}"),
    ];
    // Two instances overlap during a rolling update; the lease keeps one
    // binding.
    args.extend(flags::leader_election());
    args.extend(flags::scheduler_security(&pods::layout()));
    args
}

/// The pods roll when the client certificate in the kubeconfig changes.
pub fn deployment(
    vc: &VirtualCluster,
    settings: &Settings,
    pki_data: &BTreeMap<String, Vec<u8>>,
) -> Deployment {
    let replicas = i32::from(runs(vc));
    let probe = |cadence| pods::probe("/healthz", SECURE_PORT, "HTTPS", cadence);
    let hashed = [SCHEDULER_FILES, &["scheduler.crt", "scheduler.key"]].concat();
    let container = Container {
        name: COMPONENT.to_owned(),
        image: Some(pods::kubernetes_image(settings, "kube-scheduler", vc)),
        command: Some(vec!["kube-scheduler".to_owned()]),
        args: Some(args()),
        ports: Some(vec![pods::container_port("https", SECURE_PORT)]),
        startup_probe: Some(probe(pods::STARTUP)),
        readiness_probe: Some(probe(pods::READINESS)),
        liveness_probe: Some(probe(pods::LIVENESS)),
        volume_mounts: Some(vec![pods::config_mount()]),
        security_context: Some(pods::container_security_context()),
        resources: Some(resources::requirements(vc, Component::Scheduler)),
        ..Container::default()
    };
    Deployment {
        metadata: pods::control_plane_meta(vc, COMPONENT, COMPONENT),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: pods::label_selector(COMPONENT),
            template: pods::pod_template(
                vc,
                COMPONENT,
                pods::template_annotations(pki_data, &hashed),
                container,
                vec![pods::config_volume(
                    SCHEDULER_FILES,
                    &[(KUBECONFIG_SECRET, KUBECONFIG_FILE)],
                )],
            ),
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::desired::test_cluster;

    #[test]
    fn it_runs_only_for_a_tenant_scheduler_and_not_while_paused() {
        let mut vc = test_cluster();
        let settings = Settings::default();
        let replicas =
            |vc: &VirtualCluster| deployment(vc, &settings, &BTreeMap::new()).spec.replicas;
        assert_eq!(replicas(&vc), Some(0));
        vc.spec.node_pool.scheduler = PodScheduler::Tenant;
        assert_eq!(replicas(&vc), Some(1));
        vc.spec.paused = true;
        assert_eq!(replicas(&vc), Some(0));
    }

    #[test]
    fn the_kubeconfig_flag_names_the_mounted_file() {
        let args = args();
        assert!(args.contains(&format!(
            "--kubeconfig={}/{KUBECONFIG_FILE}",
            pods::CONFIG_DIR
        )));
        assert!(args.contains(&"--leader-elect=true".to_owned()));
        // Both CAs given: nothing is looked up in the tenant at start.
        assert!(args.contains(&"--client-ca-file=/etc/kubernetes/pki/ca.crt".to_owned()));
        assert!(
            args.iter()
                .any(|a| a.starts_with("--requestheader-client-ca-file="))
        );
    }
}
