//! The tenant's kube-controller-manager: a Deployment reaching the tenant
//! apiserver through its Service with a kubeconfig of its own. It is the
//! only component that mounts the cluster CA's key (it signs CSRs).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use vnest_api::VirtualCluster;
use vnest_api::host_names::identity;
use vnest_control_plane::flags;
use vnest_pki::ControlPlanePki;

use super::kube_component::{self, KubeComponent};
use super::pods::{self, Settings};
use super::resources::Component;

pub const COMPONENT: &str = "controller-manager";
pub const SECURE_PORT: i32 = 10257;
/// The Secret holding the controller-manager's kubeconfig.
pub const KUBECONFIG_SECRET: &str = "controller-manager-kubeconfig";
const KUBECONFIG_FILE: &str = "controller-manager.kubeconfig";

pub const CONTROLLER_MANAGER_FILES: &[&str] = &["ca.crt", "ca.key", "front-proxy-ca.crt", "sa.key"];

/// The controller-manager's kubeconfig, to the apiserver's Service.
pub fn kubeconfig_secret(
    vc: &VirtualCluster,
    pki: &ControlPlanePki,
) -> Result<Secret, vnest_pki::Error> {
    kube_component::kubeconfig_secret(
        vc,
        pki,
        COMPONENT,
        (KUBECONFIG_SECRET, KUBECONFIG_FILE),
        (
            vnest_pki::identity::CONTROLLER_MANAGER_USER,
            &pki.controller_manager,
        ),
    )
}

pub fn args(vc: &VirtualCluster) -> Vec<String> {
    let (_, name) = identity(vc);
    let mut args = vec![
        "--bind-address=0.0.0.0".to_owned(),
        format!("--secure-port={SECURE_PORT}"),
    ];
    // Two instances overlap during a rolling update; the lease keeps one
    // active.
    args.extend(flags::leader_election());
    args.extend(flags::controller_manager_security(&pods::layout(), name));
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
        binary: "kube-controller-manager",
        secure_port: SECURE_PORT,
        args: args(vc),
        pki_files: CONTROLLER_MANAGER_FILES,
        client_pair: ["controller-manager.crt", "controller-manager.key"],
        kubeconfig: (KUBECONFIG_SECRET, KUBECONFIG_FILE),
        resources: Component::ControllerManager,
        replicas: if vc.spec.paused { 0 } else { 1 },
        version,
    };
    kube_component::deployment(vc, settings, pki_data, component)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_kubeconfig_flag_names_the_mounted_file() {
        let args = args(&VirtualCluster::new("a", Default::default()));
        assert!(args.contains(&format!(
            "--kubeconfig={}/{KUBECONFIG_FILE}",
            pods::CONFIG_DIR
        )));
        assert!(args.contains(&"--cluster-signing-key-file=/etc/kubernetes/pki/ca.key".to_owned()));
    }
}
