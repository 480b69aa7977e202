//! What every control-plane pod of a tenant shares: labels, images, the
//! restricted security context, certificate volumes with only the files the
//! component needs, and the hash that rolls pods when certificates change.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ProjectedVolumeSource, SeccompProfile, SecretProjection, SecretVolumeSource, SecurityContext,
    Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of, identity, labels};
use vnest_api::{DEFAULT_KUBERNETES_VERSION, ETCD_IMAGE_TAG, VirtualCluster};
use vnest_control_plane::Layout;

use super::addresses::PKI_SECRET;

/// The label naming which component a pod or Service is.
pub const COMPONENT: &str = vnest_api::host_names::labels::COMPONENT;
/// The pod-template annotation holding a hash of the certificates a pod
/// mounts: when a renewal changes them, the template changes and the pods
/// roll.
pub const PKI_HASH: &str = "vnest.dev/pki-hash";
/// The user control-plane containers run as (distroless `nonroot`).
pub const CONTROL_PLANE_UID: i64 = 65532;
/// Where certificates and kubeconfigs are mounted, in kubeadm's layout.
pub const CONFIG_DIR: &str = "/etc/kubernetes";

/// The layout of files inside control-plane containers.
pub fn layout() -> Layout {
    Layout {
        dir: CONFIG_DIR.into(),
    }
}

/// Where the images come from and what the supervisor knows of the host.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The registry of the upstream images, `registry.k8s.io` by default.
    pub registry: String,
    /// The namespace the supervisor runs in (its traffic to tenant
    /// apiservers is allowed by the NetworkPolicies).
    pub supervisor_namespace: String,
    /// vnest's own image (the syncer runs from it).
    pub vnest_image: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            registry: "registry.k8s.io".to_owned(),
            supervisor_namespace: "vnest-system".to_owned(),
            vnest_image: format!("vnest.local/vnest:{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// The Kubernetes version `vc` runs.
pub fn kubernetes_version(vc: &VirtualCluster) -> &str {
    vc.spec
        .kubernetes_version
        .as_deref()
        .unwrap_or(DEFAULT_KUBERNETES_VERSION)
}

/// The image of an upstream Kubernetes component at `version`.
pub fn kubernetes_image(settings: &Settings, component: &str, version: &str) -> String {
    format!("{}/{component}:{version}", settings.registry)
}

/// The CoreDNS release tenant clusters get (tools/upstream/coredns/go.mod).
pub const COREDNS_TAG: &str = "v1.15.0";

pub fn coredns_image(settings: &Settings) -> String {
    format!("{}/coredns/coredns:{COREDNS_TAG}", settings.registry)
}

pub fn etcd_image(settings: &Settings) -> String {
    format!("{}/etcd:{ETCD_IMAGE_TAG}", settings.registry)
}

/// Labels of every host object of `vc`, without a component.
pub fn owner_labels(vc: &VirtualCluster) -> BTreeMap<String, String> {
    let (namespace, name) = identity(vc);
    BTreeMap::from([
        (labels::MANAGED_BY.to_owned(), labels::MANAGER.to_owned()),
        (labels::VIRTUAL_CLUSTER.to_owned(), name.to_owned()),
        (
            labels::VIRTUAL_CLUSTER_NAMESPACE.to_owned(),
            namespace.to_owned(),
        ),
    ])
}

/// Selects the pods of one component (the labels a selector may use; they
/// never change, so Deployments and StatefulSets can keep their selector).
pub fn selector(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(COMPONENT.to_owned(), component.to_owned())])
}

/// [`owner_labels`] plus the component.
pub fn component_labels(vc: &VirtualCluster, component: &str) -> BTreeMap<String, String> {
    let mut labels = owner_labels(vc);
    labels.extend(selector(component));
    labels
}

/// Metadata of a named object in `vc`'s control-plane namespace.
pub fn control_plane_meta(vc: &VirtualCluster, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(host_namespace_of(vc, HostNamespaceRole::ControlPlane)),
        labels: Some(component_labels(vc, component)),
        ..ObjectMeta::default()
    }
}

/// Non-root, with the runtime's default seccomp profile: what the
/// `restricted` Pod Security level asks, which the control-plane namespace
/// enforces.
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(CONTROL_PLANE_UID),
        run_as_group: Some(CONTROL_PLANE_UID),
        fs_group: Some(CONTROL_PLANE_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// What every control-plane pod spec starts from: no host ServiceAccount
/// token (the components talk to the tenant apiserver, never the host's),
/// no Service environment variables of the host namespace, the restricted
/// security context, and the placement the VirtualCluster asks for.
pub fn pod_spec(vc: &VirtualCluster) -> PodSpec {
    let node_selector = &vc.spec.control_plane.node_selector;
    PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(pod_security_context()),
        node_selector: (!node_selector.is_empty()).then(|| node_selector.clone()),
        ..PodSpec::default()
    }
}

/// The pod template of `component`: its labels, `annotations` (the
/// certificate hash), one container and its volumes, on [`pod_spec`].
pub fn pod_template(
    vc: &VirtualCluster,
    component: &str,
    annotations: BTreeMap<String, String>,
    container: Container,
    volumes: Vec<Volume>,
) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(component_labels(vc, component)),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            ..pod_spec(vc)
        }),
    }
}

/// The selector of a Deployment or StatefulSet of `component`.
pub fn label_selector(component: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector(component)),
        ..LabelSelector::default()
    }
}

/// How often a probe runs, and how many failures in a row count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cadence {
    pub period: i32,
    pub failures: i32,
}

/// Readiness, every second: a component is in service (and the cluster
/// Ready) within a second of serving; 15 s of failures take it out.
pub const READINESS: Cadence = Cadence {
    period: 1,
    failures: 15,
};
/// Startup, every second for up to three minutes.
pub const STARTUP: Cadence = Cadence {
    period: 1,
    failures: 180,
};
/// Liveness: a minute of failures restarts the container.
pub const LIVENESS: Cadence = Cadence {
    period: 10,
    failures: 6,
};

/// An HTTP(S) GET probe.
pub fn probe(path: &str, port: i32, scheme: &str, cadence: Cadence) -> Probe {
    let Cadence { period, failures } = cadence;
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            scheme: Some(scheme.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(5),
        ..Probe::default()
    }
}

/// An environment variable from the pod's own fields (downward API).
pub fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

/// No capabilities, no privilege escalation, a read-only root filesystem.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        ..SecurityContext::default()
    }
}

pub use vnest_api::host_names::pki_secret_key as secret_key;

/// The volume `config`, mounted at [`CONFIG_DIR`]: `pki_files` of the PKI
/// Secret under `pki/` in kubeadm's layout, plus `extra` files of other
/// Secrets (`(secret, file)`, each file under its own name), readable by
/// the container's group alone.
pub fn config_volume(pki_files: &[&str], extra: &[(&str, &str)]) -> Volume {
    let mut sources = vec![secret_projection(
        PKI_SECRET,
        pki_files
            .iter()
            .map(|path| (secret_key(path), format!("pki/{path}")))
            .collect(),
    )];
    for (secret, file) in extra {
        sources.push(secret_projection(
            secret,
            vec![((*file).to_owned(), (*file).to_owned())],
        ));
    }
    Volume {
        name: "config".to_owned(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o440),
            sources: Some(sources),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn secret_projection(secret: &str, items: Vec<(String, String)>) -> VolumeProjection {
    VolumeProjection {
        secret: Some(SecretProjection {
            name: secret.to_owned(),
            items: Some(
                items
                    .into_iter()
                    .map(|(key, path)| KeyToPath {
                        key,
                        path,
                        ..KeyToPath::default()
                    })
                    .collect(),
            ),
            optional: Some(false),
        }),
        ..VolumeProjection::default()
    }
}

/// A volume `name` of Secret `secret` with `keys` as files of the same
/// names, readable by the container's group alone.
pub fn secret_volume(name: &str, secret: &str, keys: &[&str]) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            default_mode: Some(0o440),
            items: Some(
                keys.iter()
                    .map(|key| KeyToPath {
                        key: (*key).to_owned(),
                        path: (*key).to_owned(),
                        ..KeyToPath::default()
                    })
                    .collect(),
            ),
            optional: Some(false),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub fn config_mount() -> VolumeMount {
    VolumeMount {
        name: "config".to_owned(),
        mount_path: CONFIG_DIR.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// The PKI Secret's data for `pki`: each file under its key
/// ([`secret_key`]), as pods mount it.
pub fn pki_data(pki: &vnest_pki::ControlPlanePki) -> BTreeMap<String, Vec<u8>> {
    pki.files()
        .into_iter()
        .map(|f| (secret_key(f.path), f.contents.as_bytes().to_vec()))
        .collect()
}

/// A hash of the PKI Secret's `files`: it changes exactly when one of the
/// files a pod mounts changes.
pub fn pki_hash(pki_data: &BTreeMap<String, Vec<u8>>, files: &[&str]) -> String {
    let mut digest = Sha256::new();
    for path in files {
        digest.update(path.as_bytes());
        if let Some(bytes) = pki_data.get(&secret_key(path)) {
            digest.update(bytes);
        }
    }
    digest
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A claim of `storage` for one pod (`ReadWriteOnce`), of StorageClass
/// `class` or the host's default: how the control plane's volumes (etcd's
/// members', the backups') are asked for.
pub fn volume_claim_spec(
    storage: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    class: Option<&str>,
) -> k8s_openapi::api::core::v1::PersistentVolumeClaimSpec {
    k8s_openapi::api::core::v1::PersistentVolumeClaimSpec {
        access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
        storage_class_name: class.map(str::to_owned),
        resources: Some(k8s_openapi::api::core::v1::VolumeResourceRequirements {
            requests: Some(BTreeMap::from([("storage".to_owned(), storage.clone())])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The annotations of a pod template that mounts `files`.
pub fn template_annotations(
    pki_data: &BTreeMap<String, Vec<u8>>,
    files: &[&str],
) -> BTreeMap<String, String> {
    BTreeMap::from([(PKI_HASH.to_owned(), pki_hash(pki_data, files))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_follows_only_the_mounted_files() {
        let mut data = BTreeMap::from([
            ("ca.crt".to_owned(), b"a".to_vec()),
            ("etcd-ca.crt".to_owned(), b"b".to_vec()),
        ]);
        let before = pki_hash(&data, &["etcd/ca.crt"]);
        data.insert("ca.crt".into(), b"changed".to_vec());
        assert_eq!(before, pki_hash(&data, &["etcd/ca.crt"]));
        data.insert("etcd-ca.crt".into(), b"changed".to_vec());
        assert_ne!(before, pki_hash(&data, &["etcd/ca.crt"]));
    }

    #[test]
    fn images_follow_the_version_and_registry() {
        let mut vc = VirtualCluster::new("a", Default::default());
        let settings = Settings {
            registry: "mirror.example/k8s".into(),
            ..Settings::default()
        };
        assert_eq!(kubernetes_version(&vc), DEFAULT_KUBERNETES_VERSION);
        vc.spec.kubernetes_version = Some("v1.36.0".into());
        assert_eq!(
            kubernetes_image(&settings, "kube-apiserver", kubernetes_version(&vc)),
            "mirror.example/k8s/kube-apiserver:v1.36.0"
        );
    }
}
