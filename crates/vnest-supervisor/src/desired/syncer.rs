//! The tenant's syncer: a Deployment in the control-plane namespace running
//! `vnest-syncer` from vnest's image, with the host identity of
//! [`super::syncer_rbac`] and a kubeconfig of the tenant cluster.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{Container, PodSpec, Secret, VolumeMount};
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};
use vnest_api::{PodSecurityLevel, VirtualCluster};
use vnest_pki::ControlPlanePki;

use super::kubeconfig::in_cluster_admin;
use super::pods::{self, Settings};
use super::syncer_rbac::SYNCER;

pub const COMPONENT: &str = "syncer";
pub const KUBECONFIG_SECRET: &str = "syncer-kubeconfig";
const KUBECONFIG_DIR: &str = "/etc/vnest/tenant";
const HEALTH_PORT: i32 = 8080;

/// The tenant kubeconfig the syncer uses: the tenant's admin (the syncer
/// manages pods, nodes and bindings across the whole tenant cluster).
pub fn kubeconfig_secret(
    vc: &VirtualCluster,
    pki: &ControlPlanePki,
) -> Result<Secret, vnest_pki::Error> {
    let kubeconfig = in_cluster_admin(vc, pki)?;
    Ok(Secret {
        metadata: pods::control_plane_meta(vc, KUBECONFIG_SECRET, COMPONENT),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            "kubeconfig".to_owned(),
            ByteString(kubeconfig.into_bytes()),
        )])),
        ..Secret::default()
    })
}

/// The syncer's command line; `apiserver_address` is the tenant apiserver
/// Service's host ClusterIP and port.
pub fn args(vc: &VirtualCluster, apiserver_address: &str) -> Vec<String> {
    let mut args = vec![
        format!("--tenant-kubeconfig={KUBECONFIG_DIR}/kubeconfig"),
        format!(
            "--host-namespace={}",
            host_namespace_of(vc, HostNamespaceRole::Workloads)
        ),
        format!("--apiserver-address={apiserver_address}"),
        format!(
            "--pod-security={}",
            match vc.spec.isolation.pod_security {
                PodSecurityLevel::Privileged => "privileged",
                PodSecurityLevel::Baseline => "baseline",
                PodSecurityLevel::Restricted => "restricted",
            }
        ),
        "--log-format=json".to_owned(),
    ];
    for (key, value) in &vc.spec.node_pool.node_selector {
        args.push(format!("--pool-selector={key}={value}"));
    }
    if let Some(class) = &vc.spec.isolation.runtime_class_name {
        args.push(format!("--runtime-class={class}"));
    }
    args
}

pub fn deployment(
    vc: &VirtualCluster,
    settings: &Settings,
    apiserver_address: &str,
    kubeconfig_hash: String,
) -> Deployment {
    let replicas = if vc.spec.paused { 0 } else { 1 };
    let container = Container {
        name: COMPONENT.to_owned(),
        image: Some(settings.vnest_image.clone()),
        command: Some(vec!["/usr/local/bin/vnest-syncer".to_owned()]),
        args: Some(args(vc, apiserver_address)),
        env: Some(vec![pods::field_env("POD_NAME", "metadata.name")]),
        ports: Some(vec![pods::container_port("health", HEALTH_PORT)]),
        readiness_probe: Some(pods::probe("/readyz", HEALTH_PORT, "HTTP", 5, 3)),
        liveness_probe: Some(pods::probe("/healthz", HEALTH_PORT, "HTTP", 10, 6)),
        volume_mounts: Some(vec![VolumeMount {
            name: "tenant".to_owned(),
            mount_path: KUBECONFIG_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        security_context: Some(pods::container_security_context()),
        ..Container::default()
    };
    let mut template = pods::pod_template(
        vc,
        COMPONENT,
        BTreeMap::from([(pods::PKI_HASH.to_owned(), kubeconfig_hash)]),
        container,
        vec![pods::secret_volume(
            "tenant",
            KUBECONFIG_SECRET,
            &["kubeconfig"],
        )],
    );
    if let Some(spec) = template.spec.as_mut() {
        // The syncer is vnest's, not the tenant's: it talks to the host
        // with its own ServiceAccount, limited to the workloads namespace.
        *spec = PodSpec {
            service_account_name: Some(SYNCER.to_owned()),
            automount_service_account_token: Some(true),
            ..spec.clone()
        };
    }
    Deployment {
        metadata: pods::control_plane_meta(vc, COMPONENT, COMPONENT),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            // Two syncers of one tenant must never run at once.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                ..DeploymentStrategy::default()
            }),
            selector: pods::label_selector(COMPONENT),
            template,
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_syncer_is_told_the_pool_level_and_runtime_class() {
        let mut vc = VirtualCluster::new("a", Default::default());
        vc.spec.node_pool.node_selector = BTreeMap::from([("vnest.dev/pool".into(), "a".into())]);
        vc.spec.isolation.runtime_class_name = Some("kata".into());
        vc.spec.isolation.pod_security = PodSecurityLevel::Baseline;
        let args = args(&vc, "10.96.1.2:443");
        for expected in [
            "--pool-selector=vnest.dev/pool=a",
            "--runtime-class=kata",
            "--pod-security=baseline",
            "--apiserver-address=10.96.1.2:443",
        ] {
            assert!(
                args.contains(&expected.to_owned()),
                "{expected} in {args:?}"
            );
        }
    }
}
