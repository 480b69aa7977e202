//! The tenant's datastore: an etcd of its own as a StatefulSet behind a
//! headless Service (members find each other by their stable DNS names), or
//! external endpoints reached with a client certificate the admin provides.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodSpec, Probe,
    Secret, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};
use vnest_api::{OwnedEtcd, VirtualCluster};
use vnest_control_plane::flags;

use super::pods::{self, Settings};
use super::resources::{self, Component};

use super::addresses::etcd::SERVICE as ETCD_SERVICE;
pub use super::addresses::etcd::{CLIENT_PORT, COMPONENT, EXTERNAL_CLIENT_SECRET, PEER_PORT};
/// Plain-HTTP health and metrics, for the kubelet's probes.
pub const METRICS_PORT: i32 = 2381;
use vnest_api::etcd_volume;

/// The files of the PKI Secret an etcd member mounts.
pub const ETCD_FILES: &[&str] = &[
    "etcd/ca.crt",
    "etcd/server.crt",
    "etcd/server.key",
    "etcd/peer.crt",
    "etcd/peer.key",
];

/// The etcd the tenant owns, unless it uses external endpoints.
pub fn owned_etcd(vc: &VirtualCluster) -> Option<OwnedEtcd> {
    match (&vc.spec.datastore.etcd, &vc.spec.datastore.external) {
        (_, Some(_)) => None,
        (Some(etcd), None) => Some(etcd.clone()),
        (None, None) => Some(OwnedEtcd::default()),
    }
}

fn member(index: i32) -> String {
    format!("{ETCD_SERVICE}-{index}")
}

fn member_host(vc: &VirtualCluster, member: &str) -> String {
    let ns = host_namespace_of(vc, HostNamespaceRole::ControlPlane);
    format!("{member}.{ETCD_SERVICE}.{ns}.svc")
}

/// The client URLs the apiserver is given.
pub fn client_urls(vc: &VirtualCluster) -> Vec<String> {
    match (owned_etcd(vc), &vc.spec.datastore.external) {
        (Some(etcd), _) => (0..etcd.replicas.max(1))
            .map(|i| format!("https://{}:{CLIENT_PORT}", member_host(vc, &member(i))))
            .collect(),
        (None, Some(external)) => external.endpoints.clone(),
        (None, None) => Vec::new(),
    }
}

/// The headless Service giving each member a stable DNS name; addresses are
/// published before members are ready, or they could never find each other
/// to become ready.
pub fn headless_service(vc: &VirtualCluster) -> Service {
    Service {
        metadata: pods::control_plane_meta(vc, ETCD_SERVICE, COMPONENT),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(pods::selector(COMPONENT)),
            ports: Some(vec![
                service_port("client", CLIENT_PORT),
                service_port("peer", PEER_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::Int(port)),
        ..ServicePort::default()
    }
}

/// etcd's command line inside a member pod (`$(POD_NAME)` is expanded by
/// the kubelet from the environment).
pub fn args(vc: &VirtualCluster, etcd: &OwnedEtcd) -> Vec<String> {
    let own = member_host(vc, "$(POD_NAME)");
    let initial_cluster = (0..etcd.replicas.max(1))
        .map(|i| {
            let name = member(i);
            format!("{name}=https://{}:{PEER_PORT}", member_host(vc, &name))
        })
        .collect::<Vec<_>>()
        .join(",");
    let mut args = vec![
        "--name=$(POD_NAME)".to_owned(),
        format!("--data-dir={}", etcd_volume::under_mount(etcd_volume::DATA)),
        format!("--listen-client-urls=https://0.0.0.0:{CLIENT_PORT}"),
        format!("--advertise-client-urls=https://{own}:{CLIENT_PORT}"),
        format!("--listen-peer-urls=https://0.0.0.0:{PEER_PORT}"),
        format!("--initial-advertise-peer-urls=https://{own}:{PEER_PORT}"),
        format!("--initial-cluster={initial_cluster}"),
        "--initial-cluster-state=new".to_owned(),
        format!(
            "--initial-cluster-token={}",
            host_namespace_of(vc, HostNamespaceRole::ControlPlane)
        ),
        format!("--listen-metrics-urls=http://0.0.0.0:{METRICS_PORT}"),
    ];
    args.extend(flags::etcd_security(&pods::layout()));
    args
}

/// The members as a StatefulSet; `paused` scales it to zero, keeping the
/// volumes and so the data.
/// The component label of the pods that empty etcd's volumes.
pub const WIPE_COMPONENT: &str = "etcd-wipe";
/// Where a wipe pod mounts the volume it empties.
const WIPE_DIR: &str = "/wipe";

/// The pod that empties etcd volume `claim` once its VirtualCluster is
/// deleted: `vnest-supervisor wipe` (vnest's own image) overwrites every
/// file with zeros and removes it, so a volume the host keeps (a `Retain`
/// StorageClass) is left `Released` with nothing of the tenant's on it.
pub fn wipe_pod(vc: &VirtualCluster, settings: &Settings, claim: &str) -> Pod {
    let container = Container {
        name: "wipe".to_owned(),
        image: Some(settings.vnest_image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(vec![
            "vnest-supervisor".to_owned(),
            "wipe".to_owned(),
            WIPE_DIR.to_owned(),
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".to_owned(),
            mount_path: WIPE_DIR.to_owned(),
            ..VolumeMount::default()
        }]),
        security_context: Some(pods::container_security_context()),
        ..Container::default()
    };
    Pod {
        metadata: pods::control_plane_meta(vc, &wipe_pod_name(claim), WIPE_COMPONENT),
        spec: Some(PodSpec {
            restart_policy: Some("Never".to_owned()),
            containers: vec![container],
            volumes: Some(vec![Volume {
                name: "data".to_owned(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.to_owned(),
                    read_only: None,
                }),
                ..Volume::default()
            }]),
            ..pods::pod_spec(vc)
        }),
        status: None,
    }
}

/// The wipe pod of `claim`.
pub fn wipe_pod_name(claim: &str) -> String {
    vnest_api::host_names::hashed_label(&format!("wipe-{claim}"), &format!("wipe:{claim}"), "")
}

pub fn stateful_set(
    vc: &VirtualCluster,
    etcd: &OwnedEtcd,
    settings: &Settings,
    pki_data: &BTreeMap<String, Vec<u8>>,
) -> StatefulSet {
    let replicas = if vc.spec.paused { 0 } else { etcd.replicas };
    let probe = |path, cadence| pods::probe(path, METRICS_PORT, "HTTP", cadence);
    let container = Container {
        name: COMPONENT.to_owned(),
        image: Some(pods::etcd_image(settings)),
        command: Some(vec!["etcd".to_owned()]),
        args: Some(args(vc, etcd)),
        env: Some(vec![pods::field_env("POD_NAME", "metadata.name")]),
        ports: Some(vec![
            pods::container_port("client", CLIENT_PORT),
            pods::container_port("peer", PEER_PORT),
            pods::container_port("metrics", METRICS_PORT),
        ]),
        readiness_probe: Some(probe("/readyz", pods::READINESS)),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(15),
            ..probe(
                "/livez",
                pods::Cadence {
                    period: 10,
                    failures: 8,
                },
            )
        }),
        volume_mounts: Some(vec![
            pods::config_mount(),
            VolumeMount {
                name: "data".to_owned(),
                mount_path: etcd_volume::MOUNT.to_owned(),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(pods::container_security_context()),
        resources: Some(resources::requirements(vc, Component::Etcd)),
        ..Container::default()
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(pods::volume_claim_spec(
            &etcd.storage,
            etcd.storage_class_name.as_deref(),
        )),
        ..PersistentVolumeClaim::default()
    };
    StatefulSet {
        metadata: pods::control_plane_meta(vc, ETCD_SERVICE, COMPONENT),
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(ETCD_SERVICE.to_owned()),
            // Every member must start for any to become ready.
            pod_management_policy: Some("Parallel".to_owned()),
            selector: pods::label_selector(COMPONENT),
            template: pods::pod_template(
                vc,
                COMPONENT,
                pods::template_annotations(pki_data, ETCD_FILES),
                container,
                vec![pods::config_volume(ETCD_FILES, &[])],
            ),
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

/// The copy of the external etcd's client Secret in the control-plane
/// namespace, from the admin's Secret in the VirtualCluster's namespace;
/// `None` when that Secret lacks a key (the reason says which).
pub fn external_client_secret(vc: &VirtualCluster, source: &Secret) -> Result<Secret, String> {
    let data = source.data.clone().unwrap_or_default();
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        if !data.contains_key(key) {
            return Err(format!(
                "Secret {} has no key {key}; it needs ca.crt, tls.crt and tls.key",
                source.metadata.name.as_deref().unwrap_or_default()
            ));
        }
    }
    Ok(Secret {
        metadata: pods::control_plane_meta(vc, EXTERNAL_CLIENT_SECRET, COMPONENT),
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vnest_api::ExternalEtcd;

    fn vc(replicas: i32) -> VirtualCluster {
        let mut vc = VirtualCluster::new("a", Default::default());
        vc.metadata.namespace = Some("t".into());
        vc.spec.datastore.etcd = Some(OwnedEtcd {
            replicas,
            ..OwnedEtcd::default()
        });
        vc
    }

    #[test]
    fn members_know_each_other_by_stable_names() {
        let vc = vc(3);
        let etcd = owned_etcd(&vc).unwrap();
        let args = args(&vc, &etcd);
        let ns = host_namespace_of(&vc, HostNamespaceRole::ControlPlane);
        let initial = args
            .iter()
            .find_map(|a| a.strip_prefix("--initial-cluster="))
            .unwrap();
        assert_eq!(initial.split(',').count(), 3);
        assert!(initial.contains(&format!("etcd-2=https://etcd-2.etcd.{ns}.svc:2380")));
        assert!(args.contains(&"--client-cert-auth=true".to_owned()));
        assert_eq!(client_urls(&vc).len(), 3);
    }

    #[test]
    fn paused_keeps_the_volumes_and_scales_to_zero() {
        let mut vc = vc(1);
        vc.spec.paused = true;
        let sts = stateful_set(
            &vc,
            &owned_etcd(&vc).unwrap(),
            &Settings::default(),
            &BTreeMap::new(),
        );
        let spec = sts.spec;
        assert_eq!(spec.replicas, Some(0));
        assert_eq!(spec.volume_claim_templates.unwrap().len(), 1);
    }

    #[test]
    fn external_endpoints_replace_the_owned_etcd() {
        let mut vc = vc(1);
        vc.spec.datastore.etcd = None;
        vc.spec.datastore.external = Some(ExternalEtcd {
            endpoints: vec!["https://db:2379".into()],
            client_cert_secret_name: "etcd-cert".into(),
        });
        assert!(owned_etcd(&vc).is_none());
        assert_eq!(client_urls(&vc), vec!["https://db:2379".to_owned()]);
        let incomplete = Secret {
            metadata: ObjectMeta {
                name: Some("etcd-cert".into()),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        };
        let reason = external_client_secret(&vc, &incomplete).unwrap_err();
        assert!(
            reason.contains("etcd-cert") && reason.contains("ca.crt"),
            "{reason}"
        );
    }
}
