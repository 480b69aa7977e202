//! The tenant's kube-controller-manager: a Deployment reaching the tenant
//! apiserver through its Service with a kubeconfig of its own. It is the
//! only component that mounts the cluster CA's key (it signs CSRs).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, Secret};
use vnest_api::VirtualCluster;
use vnest_api::host_names::identity;
use vnest_control_plane::flags;
use vnest_pki::ControlPlanePki;

use super::kubeconfig::{component_secret, in_cluster};
use super::pods::{self, Settings};
use super::resources::{self, Component};

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
    let kubeconfig = in_cluster(
        vc,
        pki,
        vnest_pki::identity::CONTROLLER_MANAGER_USER,
        &pki.controller_manager,
    )?;
    Ok(component_secret(
        vc,
        COMPONENT,
        KUBECONFIG_SECRET,
        KUBECONFIG_FILE,
        kubeconfig,
    ))
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

/// The pods roll when a mounted file or the client certificate in the
/// kubeconfig changes.
pub fn deployment(
    vc: &VirtualCluster,
    settings: &Settings,
    pki_data: &BTreeMap<String, Vec<u8>>,
) -> Deployment {
    let replicas = if vc.spec.paused { 0 } else { 1 };
    let probe = |cadence| pods::probe("/healthz", SECURE_PORT, "HTTPS", cadence);
    let hashed = [
        CONTROLLER_MANAGER_FILES,
        &["controller-manager.crt", "controller-manager.key"],
    ]
    .concat();
    let container = Container {
        name: COMPONENT.to_owned(),
        image: Some(pods::kubernetes_image(
            settings,
            "kube-controller-manager",
            vc,
        )),
        command: Some(vec!["kube-controller-manager".to_owned()]),
        args: Some(args(vc)),
        ports: Some(vec![pods::container_port("https", SECURE_PORT)]),
        startup_probe: Some(probe(pods::STARTUP)),
        readiness_probe: Some(probe(pods::READINESS)),
        liveness_probe: Some(probe(pods::LIVENESS)),
        volume_mounts: Some(vec![pods::config_mount()]),
        security_context: Some(pods::container_security_context()),
        resources: Some(resources::requirements(vc, Component::ControllerManager)),
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
                    CONTROLLER_MANAGER_FILES,
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
