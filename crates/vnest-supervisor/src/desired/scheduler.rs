//! The tenant's own kube-scheduler, for `nodePool.scheduler: Tenant`: a
//! Deployment reaching the tenant apiserver through its Service as
//! `system:kube-scheduler` (whose rights the tenant apiserver bootstraps).
//! It binds the tenant's pods to the tenant's Node copies of the pool; the
//! syncer then runs each on the host node it was bound to. With the host's
//! scheduler (the default) the Deployment is there with no replicas, so
//! that switching back and forth changes a number, not a set of objects.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use vnest_api::{PodScheduler, VirtualCluster};
use vnest_control_plane::flags;
use vnest_pki::ControlPlanePki;

use super::kube_component::{self, KubeComponent};
use super::pods::{self, Settings};
use super::resources::Component;

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
    kube_component::kubeconfig_secret(
        vc,
        pki,
        COMPONENT,
        (KUBECONFIG_SECRET, KUBECONFIG_FILE),
        (vnest_pki::identity::SCHEDULER_USER, &pki.scheduler),
    )
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

pub fn deployment(
    vc: &VirtualCluster,
    settings: &Settings,
    pki_data: &BTreeMap<String, Vec<u8>>,
    version: &str,
) -> Deployment {
    let component = KubeComponent {
        name: COMPONENT,
        binary: "kube-scheduler",
        secure_port: SECURE_PORT,
        args: args(),
        pki_files: SCHEDULER_FILES,
        client_pair: ["scheduler.crt", "scheduler.key"],
        kubeconfig: (KUBECONFIG_SECRET, KUBECONFIG_FILE),
        resources: Component::Scheduler,
        replicas: i32::from(runs(vc)),
        version,
    };
    kube_component::deployment(vc, settings, pki_data, component)
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
        let replicas = |vc: &VirtualCluster| {
            deployment(vc, &settings, &BTreeMap::new(), "v1.37.2")
                .spec
                .replicas
        };
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
