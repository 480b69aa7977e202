//! A control-plane component that is one upstream Kubernetes binary (the
//! controller-manager, the tenant's scheduler): a Deployment of its image
//! in the control-plane namespace, reaching the tenant apiserver with a
//! kubeconfig of its own from a Secret, probed on its secure port, rolled
//! when a mounted file or its client certificate changes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, Secret};
use vnest_api::VirtualCluster;
use vnest_pki::ControlPlanePki;

use super::kubeconfig::{component_secret, in_cluster};
use super::pods::{self, Settings};
use super::resources::{self, Component};

/// Whether the controller-manager and the tenant scheduler are to exist
/// yet: once the tenant apiserver has run (the status names a version it
/// runs), and from then on, through any later outage. Made earlier, each
/// asks for its leader lease through the apiserver's Service before
/// anything serves there, every try waits out its timeout (half the
/// 10 s renew deadline) and the lease comes seconds after the apiserver
/// serves (docs/benchmarks.md, Lifecycle); made then, the first try takes
/// it, and they do not compete with the apiserver for the CPU while it
/// starts.
pub fn started(vc: &VirtualCluster) -> bool {
    vc.status
        .as_ref()
        .and_then(|s| s.component_versions.as_ref())
        .is_some_and(|runs| runs.kube_apiserver.is_some() || runs.kube_controller_manager.is_some())
}

/// What sets one such component apart from another.
pub struct KubeComponent<'a> {
    /// Its name on the host (Deployment, pods' component label).
    pub name: &'static str,
    /// The binary, which is also its image's name.
    pub binary: &'static str,
    pub secure_port: i32,
    pub args: Vec<String>,
    /// The PKI files it mounts.
    pub pki_files: &'a [&'a str],
    /// Its client certificate and key (in its kubeconfig, not mounted).
    pub client_pair: [&'a str; 2],
    /// The Secret holding its kubeconfig, and the file name it is mounted
    /// as.
    pub kubeconfig: (&'a str, &'a str),
    pub resources: Component,
    pub replicas: i32,
    /// The Kubernetes version it runs ([`super::upgrade`] decides).
    pub version: &'a str,
}

/// The Secret with the kubeconfig of `user`, whose certificate is `cert`,
/// stored as `file` in Secret `name` of component `component`.
pub fn kubeconfig_secret(
    vc: &VirtualCluster,
    pki: &ControlPlanePki,
    component: &str,
    (name, file): (&str, &str),
    (user, cert): (&str, &vnest_pki::CertAndKey),
) -> Result<Secret, vnest_pki::Error> {
    let kubeconfig = in_cluster(vc, pki, user, cert)?;
    Ok(component_secret(vc, component, name, file, kubeconfig))
}

pub fn deployment(
    vc: &VirtualCluster,
    settings: &Settings,
    pki_data: &BTreeMap<String, Vec<u8>>,
    component: KubeComponent<'_>,
) -> Deployment {
    let KubeComponent {
        name,
        binary,
        secure_port,
        args,
        pki_files,
        client_pair,
        kubeconfig,
        resources: requirements,
        replicas,
        version,
    } = component;
    let probe = |cadence| pods::probe("/healthz", secure_port, "HTTPS", cadence);
    let hashed = [pki_files, &client_pair].concat();
    let container = Container {
        name: name.to_owned(),
        image: Some(pods::kubernetes_image(settings, binary, version)),
        command: Some(vec![binary.to_owned()]),
        args: Some(args),
        ports: Some(vec![pods::container_port("https", secure_port)]),
        startup_probe: Some(probe(pods::STARTUP)),
        readiness_probe: Some(probe(pods::READINESS)),
        liveness_probe: Some(probe(pods::LIVENESS)),
        volume_mounts: Some(vec![pods::config_mount()]),
        security_context: Some(pods::container_security_context()),
        resources: Some(resources::requirements(vc, requirements)),
        ..Container::default()
    };
    Deployment {
        metadata: pods::control_plane_meta(vc, name, name),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: pods::label_selector(name),
            template: pods::pod_template(
                vc,
                name,
                pods::template_annotations(pki_data, &hashed),
                container,
                vec![pods::config_volume(pki_files, &[kubeconfig])],
            ),
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}
