//! The tenant's syncer: a Deployment in the control-plane namespace running
//! `vnest-syncer` from vnest's image, with the host identity of
//! [`super::syncer_rbac`] and a kubeconfig of the tenant cluster.
//!
//! The syncer also stands in for the kubelets of the tenant's nodes: the
//! tenant apiserver sends `logs`, `exec`, `attach` and `port-forward` to the
//! Service [`KUBELET_PROXY_SERVICE`] in front of it (the tenant's Nodes name
//! it as their address), verifies its certificate against the tenant CA and
//! authenticates with its kubelet-client certificate.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PodSpec, Secret, Service, ServicePort, ServiceSpec, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::net::SocketAddr;

use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};
use vnest_api::syncer_args::{HostPort, Label, NamespacedName, SyncerArgs};
use vnest_api::{LogFormat, VirtualCluster};
use vnest_pki::ControlPlanePki;

use super::apiserver;
use super::kubeconfig::{component_secret, in_cluster_admin};
use super::network_policy::HostAddresses;
use super::pods::{self, Settings};
use super::resources::{self, Component};
use super::syncer_rbac::SYNCER;

pub use super::addresses::syncer::{
    COMPONENT, KUBELET_PROXY_PORT, KUBELET_PROXY_SERVICE, kubelet_proxy_host,
};
pub const KUBECONFIG_SECRET: &str = "syncer-kubeconfig";
const KUBECONFIG_DIR: &str = "/etc/vnest/tenant";
const HEALTH_PORT: u16 = 8080;
/// The PKI files the syncer mounts (under `pki/` of the config volume):
/// the tenant CA to verify the apiserver, and its own serving pair.
pub const SYNCER_PKI_FILES: &[&str] = &[
    "ca.crt",
    vnest_pki::WEBHOOK_CLIENT_CA.0,
    "kubelet-proxy.crt",
    "kubelet-proxy.key",
];
/// The files whose change restarts the syncer: the CAs it trusts. Renewed
/// leaves (its client certificate in the kubeconfig, its serving pair) it
/// takes while it runs (`vnest_syncer::certificate_reload`), so its
/// Service-address webhook never stops for a renewal.
pub const RESTART_ON: &[&str] = &["ca.crt", vnest_pki::WEBHOOK_CLIENT_CA.0];

/// The Service in front of the syncer's kubelet proxy.
pub fn kubelet_proxy_service(vc: &VirtualCluster) -> Service {
    Service {
        metadata: pods::control_plane_meta(vc, KUBELET_PROXY_SERVICE, COMPONENT),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(pods::selector(COMPONENT)),
            ports: Some(vec![ServicePort {
                name: Some("kubelet".to_owned()),
                port: i32::from(KUBELET_PROXY_PORT),
                target_port: Some(IntOrString::Int(i32::from(KUBELET_PROXY_PORT))),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The tenant kubeconfig the syncer uses: the tenant's admin (the syncer
/// manages pods, nodes and bindings across the whole tenant cluster).
pub fn kubeconfig_secret(
    vc: &VirtualCluster,
    pki: &ControlPlanePki,
) -> Result<Secret, vnest_pki::Error> {
    let kubeconfig = in_cluster_admin(vc, pki)?;
    Ok(component_secret(
        vc,
        COMPONENT,
        KUBECONFIG_SECRET,
        "kubeconfig",
        kubeconfig,
    ))
}

/// The syncer's settings; `apiserver` is the tenant apiserver Service's
/// host ClusterIP and port; `host` what tenant traffic must not reach,
/// which bounds the tenant's own NetworkPolicies on the host;
/// `ingress_hosts` the host name patterns its Ingresses may claim (what
/// it was granted and holds, [`crate::ingress_grants`]); `image` vnest's
/// image, which the syncer runs from.
pub fn args(
    vc: &VirtualCluster,
    apiserver: HostPort,
    host: &HostAddresses,
    ingress_hosts: &[String],
    image: &str,
) -> SyncerArgs {
    let label = |(key, value): (&String, &String)| Label {
        key: key.clone(),
        value: value.clone(),
    };
    SyncerArgs {
        tenant_kubeconfig: format!("{KUBECONFIG_DIR}/kubeconfig").into(),
        host_namespace: host_namespace_of(vc, HostNamespaceRole::Workloads),
        pool_selector: vc.spec.node_pool.node_selector.iter().map(label).collect(),
        pool_taint_key: vnest_api::POOL_TAINT_KEY.to_owned(),
        runtime_class: vc.spec.isolation.runtime_class_name.clone(),
        pod_security: vc.spec.isolation.pod_security,
        apiserver_address: apiserver,
        cluster_domain: vnest_api::CLUSTER_DOMAIN.to_owned(),
        dns_service: NamespacedName {
            namespace: "kube-system".to_owned(),
            name: "kube-dns".to_owned(),
        },
        kubelet_proxy_host: Some(HostPort {
            host: kubelet_proxy_host(vc),
            port: KUBELET_PROXY_PORT,
        }),
        kubelet_proxy_listen: Some(SocketAddr::from(([0, 0, 0, 0], KUBELET_PROXY_PORT))),
        kubelet_proxy_pki: Some(pods::layout().pki("")),
        log_format: LogFormat::Json,
        control_plane_namespace: host_namespace_of(vc, HostNamespaceRole::ControlPlane),
        apiserver_pod_label: pods::selector(apiserver::COMPONENT)
            .iter()
            .map(label)
            .collect(),
        host_range: host.ranges(),
        pod_range: host.pod_ranges(),
        pod_labels: vc.spec.isolation.pod_labels,
        scheduler: vc.spec.node_pool.scheduler,
        ingress_host: ingress_hosts.to_vec(),
        ingress_class: vc.spec.isolation.ingress.class_names.clone(),
        health_address: SocketAddr::from(([0, 0, 0, 0], HEALTH_PORT)),
        etc_hosts_image: Some(image.to_owned()),
    }
}

pub fn deployment(
    vc: &VirtualCluster,
    settings: &Settings,
    apiserver: HostPort,
    host: &HostAddresses,
    ingress_hosts: &[String],
    trust_hash: String,
) -> Deployment {
    let replicas = if vc.spec.paused { 0 } else { 1 };
    let container = Container {
        name: COMPONENT.to_owned(),
        image: Some(settings.vnest_image.clone()),
        command: Some(vec!["/usr/local/bin/vnest-syncer".to_owned()]),
        args: Some(args(vc, apiserver, host, ingress_hosts, &settings.vnest_image).to_args()),
        env: Some(vec![
            pods::field_env("POD_NAME", "metadata.name"),
            // glibc's allocator gives each thread that allocates an arena
            // of its own (up to 8 per core) and returns little of a freed
            // arena to the system: after a burst of pods the syncer kept
            // ~80 MiB resident with none left to sync
            // (docs/benchmarks.md). Two arenas serve its two worker
            // threads.
            EnvVar {
                name: "MALLOC_ARENA_MAX".to_owned(),
                value: Some("2".to_owned()),
                ..EnvVar::default()
            },
        ]),
        ports: Some(vec![
            pods::container_port("health", i32::from(HEALTH_PORT)),
            pods::container_port("kubelet", i32::from(KUBELET_PROXY_PORT)),
        ]),
        readiness_probe: Some(pods::probe(
            "/readyz",
            i32::from(HEALTH_PORT),
            "HTTP",
            pods::READINESS,
        )),
        liveness_probe: Some(pods::probe(
            "/healthz",
            i32::from(HEALTH_PORT),
            "HTTP",
            pods::LIVENESS,
        )),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "tenant".to_owned(),
                mount_path: KUBECONFIG_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            pods::config_mount(),
        ]),
        security_context: Some(pods::container_security_context()),
        resources: Some(resources::requirements(vc, Component::Syncer)),
        ..Container::default()
    };
    let mut template = pods::pod_template(
        vc,
        COMPONENT,
        BTreeMap::from([(pods::PKI_HASH.to_owned(), trust_hash)]),
        container,
        vec![
            pods::secret_volume("tenant", KUBECONFIG_SECRET, &["kubeconfig"]),
            pods::config_volume(SYNCER_PKI_FILES, &[]),
        ],
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
        metadata: pods::control_plane_meta(
            vc,
            vnest_api::host_names::syncer::DEPLOYMENT,
            COMPONENT,
        ),
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
        vc.spec.isolation.pod_security = vnest_api::PodSecurityLevel::Baseline;
        vc.spec.isolation.pod_labels = vnest_api::PodLabels::Verbatim;
        let host = HostAddresses {
            nodes: vec!["172.30.0.10".into()],
            apiserver: vec!["172.30.0.1".into()],
            dns: Vec::new(),
            pod_cidrs: vec!["10.244.1.0/24".into()],
        };
        vc.spec.isolation.ingress.class_names = vec!["public".into()];
        let args = args(
            &vc,
            HostPort {
                host: "10.96.1.2".to_owned(),
                port: 443,
            },
            &host,
            &["*.shop.example.com".to_owned()],
            "vnest.local/vnest:1",
        )
        .to_args();
        for expected in [
            "--etc-hosts-image=vnest.local/vnest:1",
            "--pool-selector=vnest.dev/pool=a",
            "--host-range=10.244.1.0/24",
            "--host-range=172.30.0.1/32",
            "--host-range=169.254.0.0/16",
            "--pod-range=10.244.1.0/24",
            "--apiserver-pod-label=vnest.dev/component=apiserver",
            "--runtime-class=kata",
            "--pod-security=baseline",
            "--pod-labels=verbatim",
            "--ingress-host=*.shop.example.com",
            "--ingress-class=public",
            "--apiserver-address=10.96.1.2:443",
        ] {
            assert!(
                args.contains(&expected.to_owned()),
                "{expected} in {args:?}"
            );
        }
        let proxy = format!("--kubelet-proxy-host={}:10250", kubelet_proxy_host(&vc));
        assert!(args.contains(&proxy), "{proxy} in {args:?}");
        assert!(proxy.contains("kubelet-proxy.vnest-default-a-"), "{proxy}");
    }
}
