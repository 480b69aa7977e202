//! A tenant object as it lands on the host: renamed into the workloads
//! namespace ([`crate::naming`]), every reference to another tenant object
//! renamed the same way, and a pod rewritten to be safe there: bound to the
//! tenant's node pool, given the forced RuntimeClass, the tenant's DNS and
//! apiserver, and a tenant ServiceAccount token instead of any host token.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    ClusterTrustBundleProjection, ConfigMap, Container, EnvVar, EphemeralContainer, KeyToPath,
    LocalObjectReference, PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod, PodAffinityTerm,
    PodDNSConfig, PodDNSConfigOption, PodSpec, ResourceRequirements, Secret, SecretProjection,
    Service, ServiceAccountTokenProjection, ServiceSpec, Toleration, Volume, VolumeProjection,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::ObjectMeta;

use vnest_api::PodLabels;
use vnest_api::host_names::hashed_label;
use vnest_api::pod_network::{is_vnest_key, pod_label_key};

use crate::downward;
use crate::network_policy::NetworkScope;
use crate::node_selection::{self, PoolLabels};
use crate::selectors::{exists, in_namespace, in_namespace_list, in_namespaces};
use vnest_api::host_copies::{
    TENANT_NAMESPACE, TENANT_UID, host_name, origin_annotations, origin_labels,
};

/// Where the tenant's pods are put and what they are told.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// The tenant's workloads namespace on the host.
    pub host_namespace: String,
    pub pool_selector: BTreeMap<String, String>,
    /// The toleration of the pool's taint, if pool nodes are tainted.
    pub pool_toleration: Option<Toleration>,
    pub runtime_class: Option<String>,
    /// The tenant apiserver as host pods reach it (host ClusterIP, port).
    pub apiserver_host: String,
    pub apiserver_port: u16,
    /// The tenant DNS Service's host ClusterIP, once known.
    pub dns_ip: Option<String>,
    pub cluster_domain: String,
    /// Where the tenant's NetworkPolicies may lead on the host.
    pub network: NetworkScope,
    /// How tenant pod labels appear on host pods.
    pub pod_labels: PodLabels,
    /// vnest's image, for pods' `/etc/hosts` ([`crate::etc_hosts`]).
    pub etc_hosts_image: Option<String>,
    /// The pool's node labels, the tenant's and the host's
    /// ([`crate::node_selection`]).
    pub pool_labels: PoolLabels,
    /// The names of the resources each pool node offers (its allocatable).
    pub node_resources: BTreeMap<String, BTreeSet<String>>,
}

/// The Secret, per pod, holding what the tenant gives the pod's projected
/// volumes in place of the host: its ServiceAccount tokens, the tenant CA
/// and namespace, and the trust anchors of ClusterTrustBundle sources. Its
/// hash is over `token:NAMESPACE/POD`, which no tenant object's
/// `NAMESPACE/NAME` can be (a namespace has no `:`), so a tenant Secret
/// named `<pod>-token` never lands on it.
pub fn pod_secret_name(namespace: &str, pod: &str) -> String {
    hashed_label(
        &format!("{pod}-token-{namespace}"),
        &format!("token:{namespace}/{pod}"),
        "",
    )
}

/// Tenant pod labels `labels` (of tenant namespace `namespace`) as the
/// host pod carries them: none in vnest's domain (a tenant cannot forge
/// one), each key as the admin chose ([`pod_label_key`]), plus where the
/// pod came from. A Service's selector becomes the same.
fn pod_labels_on_host(
    namespace: &str,
    labels: BTreeMap<String, String>,
    mode: PodLabels,
) -> BTreeMap<String, String> {
    let mut on_host: BTreeMap<String, String> = labels
        .into_iter()
        .filter(|(k, _)| !is_vnest_key(k))
        .map(|(k, v)| (pod_label_key(&k, mode), v))
        .collect();
    on_host.extend(origin_labels(namespace));
    on_host
}

/// The host object's metadata: its host name and namespace, `labels`
/// (vnest's own) and where it came from.
pub(crate) fn host_meta(
    meta: &ObjectMeta,
    placement: &Placement,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    let namespace = meta.namespace.as_deref().unwrap_or("default");
    let name = meta.name.as_deref().unwrap_or_default();
    ObjectMeta {
        name: Some(host_name(namespace, name)),
        namespace: Some(placement.host_namespace.clone()),
        labels: Some(labels.into_iter().chain(origin_labels(namespace)).collect()),
        annotations: Some(origin_annotations(namespace, name)),
        ..ObjectMeta::default()
    }
}

pub fn config_map(tenant: &ConfigMap, placement: &Placement) -> ConfigMap {
    ConfigMap {
        metadata: host_meta(&tenant.metadata, placement, BTreeMap::new()),
        data: tenant.data.clone(),
        binary_data: tenant.binary_data.clone(),
        immutable: tenant.immutable,
    }
}

pub fn secret(tenant: &Secret, placement: &Placement) -> Secret {
    // ServiceAccount-token Secrets are the tenant's own business; on the
    // host they would be Opaque data anyway.
    let type_ = match tenant.type_.as_deref() {
        Some("kubernetes.io/service-account-token") | None => "Opaque".to_owned(),
        Some(other) => other.to_owned(),
    };
    Secret {
        metadata: host_meta(&tenant.metadata, placement, BTreeMap::new()),
        data: tenant.data.clone(),
        string_data: None,
        immutable: tenant.immutable,
        type_: Some(type_),
    }
}

/// A claim on the host asking for what the tenant's asks for: size,
/// access modes, volume mode and StorageClass (the tenant sees the host's
/// classes). Not its volume name or selector (they would name or pick host
/// volumes the tenant was never given) nor its data source (tenant
/// snapshots and claims are not on the host).
pub fn persistent_volume_claim(
    tenant: &PersistentVolumeClaim,
    placement: &Placement,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: host_meta(&tenant.metadata, placement, BTreeMap::new()),
        spec: Some(claim_spec_on_host(tenant.spec.clone().unwrap_or_default())),
        status: None,
    }
}

/// What a claim may ask of the host, whether the tenant wrote it as a
/// PersistentVolumeClaim or as a pod's ephemeral volume template: size,
/// access modes, volume mode and classes; never a volume name, selector or
/// data source, which would pick host volumes or data the tenant was never
/// given.
fn claim_spec_on_host(spec: PersistentVolumeClaimSpec) -> PersistentVolumeClaimSpec {
    PersistentVolumeClaimSpec {
        access_modes: spec.access_modes,
        resources: spec.resources,
        storage_class_name: spec.storage_class_name,
        volume_mode: spec.volume_mode,
        volume_attributes_class_name: spec.volume_attributes_class_name,
        ..PersistentVolumeClaimSpec::default()
    }
}

/// An Ingress on the host routing to the host copies of the tenant's
/// Services (and TLS Secrets), under the host's IngressClass the tenant
/// named. Annotations are not copied: they configure the host's ingress
/// controller (snippets, auth bypasses) and are the host admin's. Resource
/// backends (references to arbitrary tenant objects) are dropped.
pub fn ingress(tenant: &Ingress, placement: &Placement) -> Ingress {
    let namespace = tenant.metadata.namespace.as_deref().unwrap_or("default");
    let spec = tenant.spec.clone().unwrap_or_default();
    let backend = |backend: IngressBackend| IngressBackend {
        service: backend.service.map(|mut service| {
            service.name = host_name(namespace, &service.name);
            service
        }),
        resource: None,
    };
    Ingress {
        metadata: host_meta(&tenant.metadata, placement, BTreeMap::new()),
        spec: Some(IngressSpec {
            ingress_class_name: spec.ingress_class_name,
            default_backend: spec.default_backend.map(backend),
            rules: spec.rules.map(|rules| {
                rules
                    .into_iter()
                    .map(|mut rule| {
                        if let Some(http) = rule.http.as_mut() {
                            for path in &mut http.paths {
                                path.backend = backend(path.backend.clone());
                            }
                        }
                        rule
                    })
                    .collect()
            }),
            tls: spec.tls.map(|tls| {
                tls.into_iter()
                    .map(|mut entry| {
                        entry.secret_name = entry.secret_name.map(|s| host_name(namespace, &s));
                        entry
                    })
                    .collect()
            }),
        }),
        status: None,
    }
}

/// The label naming an EndpointSlice's Service, and the one naming who
/// manages it (the host's controllers leave slices of other managers alone).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const SLICE_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The manager of slices made from a Service's selector; the host makes
/// those for the host copy itself.
pub const SELECTOR_SLICES: &str = "endpointslice-controller.k8s.io";

/// Whether a tenant EndpointSlice is mirrored: those of selector-less
/// Services (written by the tenant, or mirrored from its Endpoints), not
/// those the tenant's controller derives from a selector, and not those of
/// `default/kubernetes`, whose Service is not mirrored
/// ([`is_mirrored_service`]): they name the apiserver pods.
pub fn is_mirrored_slice(slice: &EndpointSlice) -> bool {
    let labels = slice.metadata.labels.as_ref();
    let service = labels.and_then(|l| l.get(SERVICE_NAME_LABEL));
    let apiserver = slice.metadata.namespace.as_deref() == Some("default")
        && service.map(String::as_str) == Some("kubernetes");
    service.is_some()
        && !apiserver
        && labels
            .and_then(|l| l.get(SLICE_MANAGED_BY))
            .map(String::as_str)
            != Some(SELECTOR_SLICES)
}

/// A selector-less Service's EndpointSlice on the host: for the host copy
/// of its Service, managed by the syncer, the same addresses, ports and
/// conditions; references to tenant pods and nodes dropped.
pub fn endpoint_slice(tenant: &EndpointSlice, placement: &Placement) -> EndpointSlice {
    let namespace = tenant.metadata.namespace.as_deref().unwrap_or("default");
    let service = tenant
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .cloned()
        .unwrap_or_default();
    let labels = BTreeMap::from([
        (
            SERVICE_NAME_LABEL.to_owned(),
            host_name(namespace, &service),
        ),
        (
            SLICE_MANAGED_BY.to_owned(),
            vnest_api::host_copies::MANAGER.to_owned(),
        ),
    ]);
    EndpointSlice {
        metadata: host_meta(&tenant.metadata, placement, labels),
        address_type: tenant.address_type.clone(),
        endpoints: tenant.endpoints.clone().map(|endpoints| {
            endpoints
                .into_iter()
                .map(|mut endpoint| {
                    endpoint.target_ref = None;
                    endpoint.node_name = None;
                    endpoint.hints = None;
                    endpoint
                })
                .collect()
        }),
        ports: tenant.ports.clone(),
    }
}

/// A Service on the host selecting the tenant namespace's host pods: the
/// same ports, the tenant's selector plus its namespace label (host pods of
/// other tenant namespaces share the workloads namespace), and the tenant's
/// own ClusterIP asked for on the host, so that the address tenant clients
/// (and the tenant's DNS) use routes there. When the host has given that
/// address to another Service, the syncer falls back to one the host picks
/// ([`without_address`]).
///
/// A NodePort Service stays one, with the tenant's node ports (which the
/// host gave it first, [`crate::service_addresses`]): clients reach it on
/// the nodes the tenant sees. The host's quota decides whether the tenant
/// may have node ports at all. Every other type is ClusterIP (or
/// headless) on the host: a LoadBalancer is the host's to give, and the
/// ports its tenant copy got are not opened.
pub fn service(tenant: &Service, placement: &Placement) -> Service {
    let namespace = tenant.metadata.namespace.as_deref().unwrap_or("default");
    let spec = tenant.spec.clone().unwrap_or_default();
    let node_port = is_node_port(tenant);
    // The labels its pods carry on the host.
    let selector = spec
        .selector
        .filter(|s| !s.is_empty())
        .map(|s| pod_labels_on_host(namespace, s, placement.pod_labels));
    let ports = spec.ports.map(|ports| {
        ports
            .into_iter()
            .map(|mut p| {
                p.node_port = p.node_port.filter(|port| *port != 0);
                p
            })
            .collect()
    });
    let cluster_ip = spec.cluster_ip.filter(|ip| !ip.is_empty());
    let mut host_spec = ServiceSpec {
        type_: Some("NodePort".to_owned()),
        cluster_ip,
        selector,
        ports,
        publish_not_ready_addresses: spec.publish_not_ready_addresses,
        session_affinity: spec.session_affinity,
        session_affinity_config: spec.session_affinity_config,
        external_traffic_policy: spec.external_traffic_policy,
        internal_traffic_policy: spec.internal_traffic_policy,
        ip_families: spec.ip_families,
        ip_family_policy: spec.ip_family_policy,
        ..ServiceSpec::default()
    };
    if !node_port {
        close_node_ports(&mut host_spec);
    }
    Service {
        metadata: host_meta(&tenant.metadata, placement, BTreeMap::new()),
        spec: Some(host_spec),
        status: None,
    }
}

/// A Service's type, as it was given.
fn service_type(service: &Service) -> Option<&str> {
    service.spec.as_ref().and_then(|s| s.type_.as_deref())
}

/// Whether a tenant Service opens node ports on the host.
pub fn is_node_port(service: &Service) -> bool {
    service_type(service) == Some("NodePort")
}

/// `service` (a host copy) as a ClusterIP Service: no node ports.
pub fn without_node_ports(service: &Service) -> Service {
    let mut copy = service.clone();
    if let Some(spec) = copy.spec.as_mut() {
        close_node_ports(spec);
    }
    copy
}

/// `spec` as ClusterIP: no node ports, no external traffic policy.
fn close_node_ports(spec: &mut ServiceSpec) {
    spec.type_ = Some("ClusterIP".to_owned());
    spec.external_traffic_policy = None;
    for port in spec.ports.iter_mut().flatten() {
        port.node_port = None;
    }
}

/// `service` with the address left to the host (headless stays headless).
pub fn without_address(service: &Service) -> Option<Service> {
    let spec = service.spec.as_ref()?;
    match spec.cluster_ip.as_deref() {
        None | Some("None") => None,
        Some(_) => {
            let mut fallback = service.clone();
            if let Some(spec) = fallback.spec.as_mut() {
                spec.cluster_ip = None;
            }
            Some(fallback)
        }
    }
}

/// Whether a tenant Service is mirrored. The tenant's `default/kubernetes`
/// is not: it has no selector, its address is the first of the service
/// range (the host's own `kubernetes` Service has it), and tenant pods are
/// pointed at their apiserver by `KUBERNETES_SERVICE_HOST` instead.
pub fn is_mirrored_service(service: &Service) -> bool {
    let apiserver = service.metadata.namespace.as_deref() == Some("default")
        && service.metadata.name.as_deref() == Some("kubernetes");
    // A DNS name only, which the tenant's DNS answers: nothing on the host.
    let external_name = service_type(service) == Some("ExternalName");
    !(apiserver || external_name)
}

/// Why a pod cannot be translated yet (the syncer waits and retries).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotYet {
    #[error("the tenant's DNS Service has no address on the host yet")]
    Dns,
}

/// The labels of tenant pod `tenant`'s host pod: its own (but none in
/// vnest's domain), where it came from, and its network identity
/// (`network`, from [`crate::network_policy::pod_labels`]).
pub fn pod_labels(
    tenant: &Pod,
    network: &BTreeMap<String, String>,
    mode: PodLabels,
) -> BTreeMap<String, String> {
    let namespace = tenant.metadata.namespace.as_deref().unwrap_or("default");
    let mut labels = pod_labels_on_host(
        namespace,
        tenant.metadata.labels.clone().unwrap_or_default(),
        mode,
    );
    labels.extend(network.clone());
    labels
}

/// The host pod of tenant pod `tenant`. Its projected tokens and trust
/// bundles come from the Secret named [`pod_secret_name`]; `network` is
/// its network identity ([`pod_labels`]); `links` its Service variables
/// ([`crate::service_links::env`]).
pub fn pod(
    tenant: &Pod,
    placement: &Placement,
    network: &BTreeMap<String, String>,
    links: &[EnvVar],
) -> Result<Pod, NotYet> {
    let namespace = tenant.metadata.namespace.as_deref().unwrap_or("default");
    let name = tenant.metadata.name.as_deref().unwrap_or_default();
    let mut spec = tenant.spec.clone().unwrap_or_default();
    let rename = |n: &str| host_name(namespace, n);

    choose_nodes(&mut spec, placement);
    if let Some(toleration) = &placement.pool_toleration {
        spec.tolerations
            .get_or_insert_with(Vec::new)
            .push(toleration.clone());
    }
    spec.runtime_class_name = placement.runtime_class.clone();
    spec.service_account_name = None;
    spec.service_account = None;
    spec.automount_service_account_token = Some(false);
    spec.enable_service_links = Some(false);
    spec.priority_class_name = None;
    spec.priority = None;
    spec.preemption_policy = None;
    spec.scheduler_name = None;
    if spec.hostname.is_none() {
        spec.hostname = Some(name.chars().take(63).collect());
    }
    spec.image_pull_secrets = spec.image_pull_secrets.map(|secrets| {
        secrets
            .into_iter()
            .map(|s| LocalObjectReference {
                name: rename(&s.name),
            })
            .collect()
    });

    scheduling_terms_on_host(&mut spec, namespace, placement.pod_labels);

    let pod_secret = wants_pod_secret(tenant);
    let mut volumes = Vec::new();
    for volume in spec.volumes.take().unwrap_or_default() {
        let mut volume = volume_on_host(volume, namespace, name, pod_secret);
        downward::volume_on_host(&mut volume);
        volumes.push(volume);
    }
    spec.volumes = Some(volumes);

    match spec.dns_policy.as_deref().unwrap_or("ClusterFirst") {
        "ClusterFirst" | "ClusterFirstWithHostNet" => {
            let dns_ip = placement.dns_ip.clone().ok_or(NotYet::Dns)?;
            let domain = &placement.cluster_domain;
            spec.dns_policy = Some("None".to_owned());
            let mut config = spec.dns_config.take().unwrap_or_default();
            let mut nameservers = vec![dns_ip];
            nameservers.extend(config.nameservers.take().unwrap_or_default());
            let mut searches = vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.clone(),
            ];
            searches.extend(config.searches.take().unwrap_or_default());
            let mut options = config.options.take().unwrap_or_default();
            if !options.iter().any(|o| o.name.as_deref() == Some("ndots")) {
                options.push(PodDNSConfigOption {
                    name: Some("ndots".to_owned()),
                    value: Some("5".to_owned()),
                });
            }
            spec.dns_config = Some(PodDNSConfig {
                nameservers: Some(nameservers),
                searches: Some(searches),
                options: Some(options),
            });
        }
        _ => {}
    }

    let apiserver_env = apiserver_env(placement);
    let fix = |container: &mut Container| {
        let own: Vec<EnvVar> = container
            .env
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                !e.name.starts_with("KUBERNETES_SERVICE_") && !e.name.starts_with("KUBERNETES_PORT")
            })
            .map(|mut e| {
                // The pod's identity is the tenant's, not the host pod's.
                let identity = e
                    .value_from
                    .as_ref()
                    .and_then(|from| from.field_ref.as_ref())
                    .and_then(|field| downward::tenant_field(tenant, &field.field_path));
                if let Some(value) = identity {
                    e.value = Some(value);
                    e.value_from = None;
                }
                if let Some(from) = e.value_from.as_mut() {
                    if let Some(r) = from.config_map_key_ref.as_mut() {
                        r.name = rename(&r.name);
                    }
                    if let Some(r) = from.secret_key_ref.as_mut() {
                        r.name = rename(&r.name);
                    }
                }
                e
            })
            .collect();
        let mut env = crate::service_links::merged(links, own);
        env.extend(apiserver_env.iter().cloned());
        container.env = Some(env);
        for source in container.env_from.iter_mut().flatten() {
            if let Some(r) = source.config_map_ref.as_mut() {
                r.name = rename(&r.name);
            }
            if let Some(r) = source.secret_ref.as_mut() {
                r.name = rename(&r.name);
            }
        }
    };
    spec.containers.iter_mut().for_each(fix);
    spec.init_containers.iter_mut().flatten().for_each(fix);
    if let Some(offered) = spec
        .node_name
        .as_ref()
        .and_then(|node| placement.node_resources.get(node))
    {
        let containers = spec.containers.iter_mut();
        for container in containers.chain(spec.init_containers.iter_mut().flatten()) {
            if let Some(resources) = container.resources.as_mut() {
                keep_offered(resources, offered);
            }
        }
    }
    // Ephemeral containers reach a running host pod through its
    // subresource (a pod is never created with them), translated as the
    // others are.
    spec.ephemeral_containers = spec.ephemeral_containers.take().map(|ephemeral| {
        ephemeral
            .into_iter()
            .filter_map(|e| {
                let target = e.target_container_name.clone();
                let mut container: Container =
                    serde_json::from_value(serde_json::to_value(e).ok()?).ok()?;
                fix(&mut container);
                let mut e: EphemeralContainer =
                    serde_json::from_value(serde_json::to_value(container).ok()?).ok()?;
                e.target_container_name = target;
                Some(e)
            })
            .collect()
    });

    if let Some(image) = &placement.etc_hosts_image {
        crate::etc_hosts::provide(
            &mut spec,
            image,
            namespace,
            &placement.host_namespace,
            &placement.cluster_domain,
        );
    }

    let mut metadata = host_meta(&tenant.metadata, placement, BTreeMap::new());
    metadata.labels = Some(pod_labels(tenant, network, placement.pod_labels));
    let annotations = metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.extend(downward::annotations(tenant));
    if let Some(uid) = &tenant.metadata.uid {
        annotations.insert(TENANT_UID.to_owned(), uid.clone());
    }
    Ok(Pod {
        metadata,
        spec: Some(spec),
        status: None,
    })
}

/// Whether resource `name` is an extended one (outside Kubernetes' own
/// `kubernetes.io/` domain): what a device plugin or an admin declares in a
/// node's status, and a pod asks for by that name.
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.starts_with("kubernetes.io/")
}

/// `resources` of a container bound to a node offering the resources
/// named `offered`, without the extended resources that node lacks. Those
/// are the tenant's own accounting: it declared them in its copy of the
/// node's status (`kubectl patch node --subresource=status`), and whoever
/// bound the pod (the tenant's scheduler, or the tenant itself) counted
/// them there. The host node's kubelet would refuse the pod for them
/// (`OutOf<resource>`), though they take nothing of the host's. What the
/// host node does offer (its devices) stays asked for.
pub fn keep_offered(resources: &mut ResourceRequirements, offered: &BTreeSet<String>) {
    for list in [&mut resources.requests, &mut resources.limits] {
        if let Some(quantities) = list.as_mut() {
            quantities.retain(|name, _| !is_extended(name) || offered.contains(name));
            if quantities.is_empty() {
                *list = None;
            }
        }
    }
}

/// The host pod's choice of nodes: the tenant's (by its own node labels,
/// [`node_selection`]) within the pool.
pub(crate) fn choose_nodes(spec: &mut PodSpec, placement: &Placement) {
    node_selection::on_host(spec, &placement.pool_labels);
    let mut selector = spec.node_selector.take().unwrap_or_default();
    selector.extend(placement.pool_selector.clone());
    spec.node_selector = Some(selector);
}

/// Pod (anti-)affinity terms and topology spread constraints as the tenant
/// meant them: over its own pods in the namespaces it named (its pod's
/// own by default), never over the host's or other tenants' pods, which
/// would tell it where those run and let it sit beside them. A term naming
/// both namespaces and a namespace selector keeps the selector's (a
/// narrower set than their union). The label keys whose values the
/// scheduler takes from the incoming pod (`matchLabelKeys`,
/// `mismatchLabelKeys`) become the keys the host pod carries.
fn scheduling_terms_on_host(spec: &mut PodSpec, namespace: &str, labels: PodLabels) {
    let keys_on_host = |keys: &mut Option<Vec<String>>| {
        for key in keys.iter_mut().flatten() {
            *key = pod_label_key(key, labels);
        }
    };
    let on_host = |term: &mut PodAffinityTerm| {
        keys_on_host(&mut term.match_label_keys);
        keys_on_host(&mut term.mismatch_label_keys);
        let listed = term.namespaces.take().filter(|n| !n.is_empty());
        let selected = term.namespace_selector.take();
        // Without a label selector a term matches no pod, anywhere.
        let Some(pods) = term.label_selector.take() else {
            return;
        };
        term.label_selector = Some(match (selected, listed) {
            (Some(namespaces), _) => {
                in_namespaces(pods, namespaces, labels).unwrap_or_else(no_pods)
            }
            (None, Some(listed)) => in_namespace_list(pods, &listed, labels),
            (None, None) => in_namespace(pods, namespace, labels),
        });
    };
    if let Some(affinity) = spec.affinity.as_mut() {
        let affinity_terms = affinity.pod_affinity.as_mut().map(|a| {
            (
                &mut a.required_during_scheduling_ignored_during_execution,
                &mut a.preferred_during_scheduling_ignored_during_execution,
            )
        });
        let anti_affinity_terms = affinity.pod_anti_affinity.as_mut().map(|a| {
            (
                &mut a.required_during_scheduling_ignored_during_execution,
                &mut a.preferred_during_scheduling_ignored_during_execution,
            )
        });
        for (required, preferred) in affinity_terms.into_iter().chain(anti_affinity_terms) {
            required.iter_mut().flatten().for_each(on_host);
            preferred
                .iter_mut()
                .flatten()
                .for_each(|weighted| on_host(&mut weighted.pod_affinity_term));
        }
    }
    for constraint in spec.topology_spread_constraints.iter_mut().flatten() {
        keys_on_host(&mut constraint.match_label_keys);
        constraint.label_selector = constraint
            .label_selector
            .take()
            .map(|pods| in_namespace(pods, namespace, labels));
    }
}

/// A selector no pod matches (a namespace label that cannot be carried).
fn no_pods() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![
            exists(TENANT_NAMESPACE),
            LabelSelectorRequirement {
                key: TENANT_NAMESPACE.to_owned(),
                operator: "DoesNotExist".to_owned(),
                values: None,
            },
        ]),
        ..LabelSelector::default()
    }
}

/// What pods are told about "their" apiserver: the tenant's, as it is
/// reached from the host.
fn apiserver_env(placement: &Placement) -> Vec<EnvVar> {
    let host = &placement.apiserver_host;
    let port = placement.apiserver_port;
    [
        ("KUBERNETES_SERVICE_HOST", host.clone()),
        ("KUBERNETES_SERVICE_PORT", port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", port.to_string()),
        ("KUBERNETES_PORT", format!("tcp://{host}:{port}")),
        ("KUBERNETES_PORT_443_TCP", format!("tcp://{host}:{port}")),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp".to_owned()),
        ("KUBERNETES_PORT_443_TCP_ADDR", host.clone()),
        ("KUBERNETES_PORT_443_TCP_PORT", port.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        ..EnvVar::default()
    })
    .collect()
}

/// A volume with its references renamed; projected ServiceAccount tokens
/// and trust bundles come from the pod's Secret.
fn volume_on_host(mut volume: Volume, namespace: &str, pod: &str, pod_secret: bool) -> Volume {
    let rename = |n: &str| host_name(namespace, n);
    if let Some(cm) = volume.config_map.as_mut() {
        cm.name = rename(&cm.name);
    }
    if let Some(secret) = volume.secret.as_mut()
        && let Some(name) = secret.secret_name.as_mut()
    {
        *name = rename(name);
    }
    if let Some(claim) = volume.persistent_volume_claim.as_mut() {
        claim.claim_name = rename(&claim.claim_name);
    }
    // The host's ephemeral-volume controller makes a claim of this
    // template: it asks for no more than a tenant claim may.
    if let Some(template) = volume
        .ephemeral
        .as_mut()
        .and_then(|e| e.volume_claim_template.as_mut())
    {
        template.spec = claim_spec_on_host(template.spec.clone());
        let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
        template.metadata = labels.map(|labels| ObjectMeta {
            labels: Some(
                labels
                    .into_iter()
                    .filter(|(k, _)| !is_vnest_key(k))
                    .collect(),
            ),
            ..ObjectMeta::default()
        });
    }
    if pod_secret && let Some(projected) = volume.projected.as_mut() {
        let secret = pod_secret_name(namespace, pod);
        let sources = projected.sources.take().unwrap_or_default();
        projected.sources = Some(
            sources
                .into_iter()
                .enumerate()
                .flat_map(|(index, source)| {
                    source_on_host(source, &volume.name, index, &secret, namespace)
                })
                .collect(),
        );
        return volume;
    }
    if let Some(projected) = volume.projected.as_mut() {
        for source in projected.sources.iter_mut().flatten() {
            if let Some(cm) = source.config_map.as_mut() {
                cm.name = rename(&cm.name);
            }
            if let Some(secret) = source.secret.as_mut() {
                secret.name = rename(&secret.name);
            }
        }
    }
    volume
}

/// One ServiceAccount token a pod's volumes ask for: the key of the pod's
/// token Secret it is kept under, and what it is requested with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSource {
    pub key: String,
    pub audience: Option<String>,
    pub expiration_seconds: Option<i64>,
}

/// The key of the token every plain `serviceAccountToken` source shares
/// (the apiserver's audience, vnest's lifetime).
pub const DEFAULT_TOKEN_KEY: &str = "token";
/// The lifetime the standard `kube-api-access` volume asks for; its token
/// is the shared one (the apiserver extends it anyway).
const KUBE_API_ACCESS_SECONDS: i64 = 3607;

/// The token source `index` of projected volume `volume` stands for.
fn token_source(volume: &str, index: usize, token: &ServiceAccountTokenProjection) -> TokenSource {
    let expiration = token
        .expiration_seconds
        .filter(|s| *s != KUBE_API_ACCESS_SECONDS);
    if token.audience.is_none() && expiration.is_none() {
        return TokenSource {
            key: DEFAULT_TOKEN_KEY.to_owned(),
            audience: None,
            expiration_seconds: None,
        };
    }
    TokenSource {
        key: format!("token-{volume}-{index}"),
        audience: token.audience.clone(),
        expiration_seconds: expiration,
    }
}

/// Every source of the pod's projected volumes, with its volume's name and
/// its place among that volume's sources (which name it in the pod's
/// Secret).
pub fn projected_sources(pod: &Pod) -> impl Iterator<Item = (&str, usize, &VolumeProjection)> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .flat_map(|volume| {
            volume
                .projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten())
                .enumerate()
                .map(|(index, source)| (volume.name.as_str(), index, source))
        })
}

/// Every ServiceAccount token the pod's projected volumes ask for, each
/// once, with its audience and lifetime.
pub fn token_sources(pod: &Pod) -> Vec<TokenSource> {
    let mut sources: Vec<TokenSource> = Vec::new();
    for (volume, index, source) in projected_sources(pod) {
        if let Some(token) = &source.service_account_token {
            let wanted = token_source(volume, index, token);
            if !sources.contains(&wanted) {
                sources.push(wanted);
            }
        }
    }
    sources
}

/// Whether the pod mounts a ServiceAccount token.
pub fn wants_token(pod: &Pod) -> bool {
    !token_sources(pod).is_empty()
}

/// The key of the pod's Secret holding the trust anchors of source `index`
/// of projected volume `volume`.
fn trust_bundle_key(volume: &str, index: usize) -> String {
    format!("trust-{volume}-{index}")
}

/// Every ClusterTrustBundle source of the pod's projected volumes, with
/// the key of the pod's Secret its anchors are kept under.
pub fn trust_bundle_sources(pod: &Pod) -> Vec<(String, ClusterTrustBundleProjection)> {
    projected_sources(pod)
        .filter_map(|(volume, index, source)| {
            let bundle = source.cluster_trust_bundle.clone()?;
            Some((trust_bundle_key(volume, index), bundle))
        })
        .collect()
}

/// Whether the pod needs its Secret ([`pod_secret_name`]): it mounts a
/// token, a trust bundle or a pod certificate.
pub fn wants_pod_secret(pod: &Pod) -> bool {
    projected_sources(pod).any(|(_, _, source)| {
        source.service_account_token.is_some()
            || source.cluster_trust_bundle.is_some()
            || source.pod_certificate.is_some()
    })
}

/// Projection `source` (number `index` of volume `volume`) as the host pod
/// mounts it: a token from the pod's Secret (`secret`), issued by
/// the tenant with the source's audience and lifetime, at the source's
/// path; trust bundles and pod certificates from the same Secret; the tenant's CA (`kube-root-ca.crt`) and namespace from the same
/// Secret; other ConfigMaps and Secrets renamed to their host copies.
fn source_on_host(
    mut source: VolumeProjection,
    volume: &str,
    index: usize,
    secret: &str,
    namespace: &str,
) -> Vec<VolumeProjection> {
    let from_secret = |items: Vec<KeyToPath>| VolumeProjection {
        secret: Some(SecretProjection {
            name: secret.to_owned(),
            items: Some(items),
            optional: None,
        }),
        ..VolumeProjection::default()
    };
    let item = |key: &str, path: String, mode: Option<i32>| KeyToPath {
        key: key.to_owned(),
        path,
        mode,
        ..KeyToPath::default()
    };
    if let Some(token) = &source.service_account_token {
        let key = token_source(volume, index, token).key;
        return vec![from_secret(vec![item(&key, token.path.clone(), None)])];
    }
    // The key is missing when nothing is selected and the source is not
    // optional: the kubelet cannot mount the volume, and the pod waits.
    if let Some(bundle) = &source.cluster_trust_bundle {
        let key = trust_bundle_key(volume, index);
        return vec![from_secret(vec![item(&key, bundle.path.clone(), None)])];
    }
    // Missing until the tenant's signer has issued it: the pod waits.
    if let Some(certificate) = &source.pod_certificate {
        let keys = crate::pod_certificates::Keys::of(&format!("{volume}-{index}"));
        let items = [
            (&certificate.credential_bundle_path, keys.bundle),
            (&certificate.key_path, keys.key),
            (&certificate.certificate_chain_path, keys.chain),
        ]
        .into_iter()
        .filter_map(|(path, key)| Some(item(&key, path.clone()?, None)))
        .collect();
        return vec![from_secret(items)];
    }
    if let Some(config_map) = source.config_map.as_mut() {
        if config_map.name == ROOT_CA_CONFIG_MAP {
            let items = config_map
                .items
                .clone()
                .unwrap_or_else(|| vec![item(ROOT_CA_KEY, ROOT_CA_KEY.to_owned(), None)])
                .into_iter()
                .filter(|i| i.key == ROOT_CA_KEY)
                .map(|i| item(ROOT_CA_KEY, i.path, i.mode))
                .collect();
            return vec![from_secret(items)];
        }
        config_map.name = host_name(namespace, &config_map.name);
    }
    if let Some(tenant_secret) = source.secret.as_mut() {
        tenant_secret.name = host_name(namespace, &tenant_secret.name);
    }
    let mut projections = Vec::new();
    if let Some(downward) = source.downward_api.as_mut() {
        // The host pod's namespace is not the tenant's.
        let (namespace_items, others): (Vec<_>, Vec<_>) = downward
            .items
            .take()
            .unwrap_or_default()
            .into_iter()
            .partition(|i| {
                i.field_ref
                    .as_ref()
                    .is_some_and(|f| f.field_path == "metadata.namespace")
            });
        if !namespace_items.is_empty() {
            projections.push(from_secret(
                namespace_items
                    .into_iter()
                    .map(|i| item("namespace", i.path, i.mode))
                    .collect(),
            ));
        }
        if others.is_empty() {
            return projections;
        }
        downward.items = Some(others);
    }
    projections.push(source);
    projections
}

/// The ConfigMap with the tenant's CA that every tenant namespace holds;
/// the pod's token Secret carries the same, under [`ROOT_CA_KEY`].
const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
const ROOT_CA_KEY: &str = "ca.crt";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ephemeral_containers_are_translated_like_the_others() {
        let tenant: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "namespace": "team" },
            "spec": {
                "containers": [{ "name": "app", "image": "i" }],
                "ephemeralContainers": [{ "name": "debugger", "image": "busybox",
                    "targetContainerName": "app",
                    "env": [{ "name": "C", "valueFrom": { "configMapKeyRef": { "name": "cfg", "key": "k" } } }] }],
            },
        }))
        .unwrap();
        let placement = Placement {
            dns_ip: Some("10.96.0.10".to_owned()),
            ..Placement::default()
        };
        let host = pod(&tenant, &placement, &BTreeMap::new(), &[]).unwrap();
        let ephemeral = host.spec.unwrap().ephemeral_containers.unwrap();
        assert_eq!(ephemeral.len(), 1);
        assert_eq!(ephemeral[0].target_container_name.as_deref(), Some("app"));
        let env = ephemeral[0].env.as_ref().unwrap();
        let reference = env
            .iter()
            .find(|e| e.name == "C")
            .and_then(|e| e.value_from.as_ref())
            .and_then(|f| f.config_map_key_ref.as_ref())
            .unwrap();
        assert_eq!(reference.name, host_name("team", "cfg"));
        assert!(
            env.iter().any(|e| e.name == "KUBERNETES_SERVICE_HOST"),
            "it reaches the tenant's apiserver as the others do"
        );
    }
    use serde_json::json;
    use vnest_api::host_copies::{MANAGED_BY, MANAGER};

    fn placement() -> Placement {
        Placement {
            host_namespace: "vnest-t-a-0123456789-wl".into(),
            pool_selector: BTreeMap::from([("vnest.dev/pool".into(), "a".into())]),
            pool_toleration: None,
            runtime_class: Some("kata".into()),
            apiserver_host: "10.96.5.5".into(),
            apiserver_port: 443,
            dns_ip: Some("10.96.7.7".into()),
            cluster_domain: vnest_api::CLUSTER_DOMAIN.into(),
            network: NetworkScope::default(),
            pod_labels: PodLabels::Prefixed,
            etc_hosts_image: Some("vnest.local/vnest:1".into()),
            pool_labels: PoolLabels::default(),
            node_resources: BTreeMap::new(),
        }
    }

    #[test]
    fn a_bound_pod_asks_its_node_only_for_what_the_node_offers() {
        let mut tenant = tenant_pod();
        let spec = tenant.spec.as_mut().unwrap();
        spec.node_name = Some("n1".into());
        let fake = json!({ "cpu": "10m", "scheduling.k8s.io/foo": "2", "example.com/gpu": "1" });
        spec.containers[0].resources = Some(
            serde_json::from_value(
                json!({ "requests": fake, "limits": { "scheduling.k8s.io/foo": "2" } }),
            )
            .unwrap(),
        );
        let mut placement = placement();
        let resources = |placement: &Placement| {
            let host = pod(&tenant, placement, &BTreeMap::new(), &[]).unwrap();
            serde_json::to_value(&host.spec.unwrap().containers[0].resources).unwrap()
        };
        // A node it does not know (not the pool's: the policy refuses it)
        // changes nothing.
        assert_eq!(resources(&placement)["requests"], fake);
        placement.node_resources.insert(
            "n1".into(),
            BTreeSet::from(["cpu".into(), "memory".into(), "example.com/gpu".into()]),
        );
        assert_eq!(
            resources(&placement),
            json!({ "requests": { "cpu": "10m", "example.com/gpu": "1" } })
        );
    }

    #[test]
    fn a_pod_choosing_by_tenant_labels_stays_within_the_pool() {
        let mut placement = placement();
        let host_labels = BTreeMap::from([("vnest.dev/pool".to_owned(), "a".to_owned())]);
        let mut tenant_labels = host_labels.clone();
        tenant_labels.insert("disk".into(), "ssd".into());
        placement.pool_labels.host = BTreeMap::from([("n1".to_owned(), host_labels)]);
        // A node the tenant made up, named like a host node of another pool.
        placement.pool_labels.tenant = BTreeMap::from([
            ("n1".to_owned(), tenant_labels.clone()),
            ("other-pool-node".to_owned(), tenant_labels),
        ]);
        let mut tenant = tenant_pod();
        tenant.spec.as_mut().unwrap().node_selector =
            Some(BTreeMap::from([("disk".to_owned(), "ssd".to_owned())]));
        let spec = pod(&tenant, &placement, &BTreeMap::new(), &[])
            .unwrap()
            .spec
            .unwrap();
        assert_eq!(spec.node_selector, Some(placement.pool_selector.clone()));
        let terms = spec
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 2, "{terms:?}");
    }

    #[test]
    fn a_pod_with_a_subdomain_names_its_tenant_namespace_in_etc_hosts() {
        let mut tenant = tenant_pod();
        let host = pod(&tenant, &placement(), &BTreeMap::new(), &[]).unwrap();
        assert!(host.spec.unwrap().init_containers.is_none());

        tenant.spec.as_mut().unwrap().subdomain = Some("shop-web".into());
        let spec = pod(&tenant, &placement(), &BTreeMap::new(), &[])
            .unwrap()
            .spec
            .unwrap();
        let init = &spec.init_containers.unwrap()[0];
        assert_eq!(init.name, crate::etc_hosts::CONTAINER);
        assert_eq!(init.image.as_deref(), Some("vnest.local/vnest:1"));
        let args = init.args.clone().unwrap();
        assert!(
            args.contains(&"--host-name=web.shop-web.vnest-t-a-0123456789-wl.svc.".to_owned()),
            "{args:?}"
        );
        assert!(
            args.contains(&"--tenant-name=web.shop-web.shop.svc.cluster.local".to_owned()),
            "{args:?}"
        );
    }

    fn tenant_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "shop", "labels": { "app": "web", "vnest.dev/tenant-namespace": "forged" } },
            "spec": {
                "serviceAccountName": "builder",
                "priorityClassName": "system-cluster-critical",
                "nodeSelector": { "disk": "ssd", "vnest.dev/pool": "b" },
                "containers": [{
                    "name": "web", "image": "web",
                    "env": [{ "name": "KUBERNETES_SERVICE_HOST", "value": "10.96.0.1" },
                            { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "db", "key": "pw" } } }],
                    "envFrom": [{ "configMapRef": { "name": "settings" } }],
                }],
                "volumes": [
                    { "name": "conf", "configMap": { "name": "settings" } },
                    { "name": "kube-api-access-x", "projected": { "sources": [
                        { "serviceAccountToken": { "path": "token", "expirationSeconds": 3607 } },
                        { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                    ] } },
                ],
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_is_renamed_fenced_and_pointed_at_its_own_cluster() {
        let network = BTreeMap::from([
            ("ns.vnest.dev/team".to_owned(), "a".to_owned()),
            (
                vnest_api::pod_network::EGRESS_POLICY.to_owned(),
                "true".to_owned(),
            ),
        ]);
        let host = pod(&tenant_pod(), &placement(), &network, &[]).unwrap();
        let meta = &host.metadata;
        assert_eq!(
            meta.name.as_deref(),
            Some(host_name("shop", "web").as_str())
        );
        assert_eq!(meta.namespace.as_deref(), Some("vnest-t-a-0123456789-wl"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(
            labels["vnest.dev/tenant-namespace"], "shop",
            "a tenant cannot forge its origin"
        );
        assert_eq!(labels["pod.vnest.dev/app"], "web");
        assert!(
            !labels.contains_key("app"),
            "no host selector of the host's own pods matches a tenant label"
        );
        assert_eq!(labels["ns.vnest.dev/team"], "a");
        assert_eq!(labels[vnest_api::pod_network::EGRESS_POLICY], "true");
        assert!(!labels.contains_key(vnest_api::pod_network::INGRESS_POLICY));

        let spec = host.spec.as_ref().unwrap();
        let selector = spec.node_selector.as_ref().unwrap();
        assert_eq!(
            selector["vnest.dev/pool"], "a",
            "the pool wins over the tenant's selector"
        );
        assert_eq!(selector["disk"], "ssd");
        assert_eq!(spec.runtime_class_name.as_deref(), Some("kata"));
        assert_eq!(spec.service_account_name, None);
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.enable_service_links, Some(false));
        assert_eq!(spec.priority_class_name, None);

        let env = spec.containers[0].env.as_ref().unwrap();
        let value = |n: &str| {
            env.iter()
                .filter(|e| e.name == n)
                .map(|e| e.value.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            value("KUBERNETES_SERVICE_HOST"),
            vec![Some("10.96.5.5".to_owned())]
        );
        let password = env.iter().find(|e| e.name == "PASSWORD").unwrap();
        assert_eq!(
            password
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            host_name("shop", "db")
        );
        assert_eq!(
            spec.containers[0].env_from.as_ref().unwrap()[0]
                .config_map_ref
                .as_ref()
                .unwrap()
                .name,
            host_name("shop", "settings")
        );

        let volumes = spec.volumes.as_ref().unwrap();
        assert_eq!(
            volumes[0].config_map.as_ref().unwrap().name,
            host_name("shop", "settings")
        );
        // The standard token volume: token, CA and namespace from the pod's
        // token Secret, at the same paths.
        let projected = serde_json::to_value(volumes[1].projected.as_ref().unwrap()).unwrap();
        let secret = pod_secret_name("shop", "web");
        assert_eq!(
            projected["sources"],
            json!([
                { "secret": { "name": secret, "items": [{ "key": "token", "path": "token" }] } },
                { "secret": { "name": secret, "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
            ])
        );
        assert!(
            !projected.to_string().contains("serviceAccountToken"),
            "no host token"
        );

        let dns = spec.dns_config.as_ref().unwrap();
        assert_eq!(spec.dns_policy.as_deref(), Some("None"));
        assert_eq!(dns.nameservers.as_ref().unwrap()[0], "10.96.7.7");
        assert_eq!(dns.searches.as_ref().unwrap()[0], "shop.svc.cluster.local");
    }

    #[test]
    fn cluster_dns_pods_wait_for_the_tenant_dns_address() {
        let mut placement = placement();
        placement.dns_ip = None;
        assert_eq!(
            pod(&tenant_pod(), &placement, &BTreeMap::new(), &[]).unwrap_err(),
            NotYet::Dns
        );
        let mut default_dns = tenant_pod();
        default_dns.spec.as_mut().unwrap().dns_policy = Some("Default".into());
        assert!(pod(&default_dns, &placement, &BTreeMap::new(), &[]).is_ok());
    }

    #[test]
    fn a_claim_asks_for_the_same_storage_and_names_no_volume() {
        let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "data", "namespace": "db", "labels": { "vnest.dev/tenant-namespace": "forged", "tier": "db" } },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": { "requests": { "storage": "1Gi" } },
                "storageClassName": "local",
                "volumeName": "someone-elses",
                "selector": { "matchLabels": { "disk": "ssd" } },
                "dataSource": { "kind": "PersistentVolumeClaim", "name": "other" }
            }
        }))
        .unwrap();
        let host = persistent_volume_claim(&claim, &placement());
        assert_eq!(
            host.metadata.name.as_deref(),
            Some(host_name("db", "data").as_str())
        );
        assert_eq!(
            host.metadata
                .labels
                .unwrap()
                .get("vnest.dev/tenant-namespace")
                .map(String::as_str),
            Some("db")
        );
        let spec = host.spec.unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("local"));
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        assert!(
            spec.volume_name.is_none() && spec.selector.is_none() && spec.data_source.is_none()
        );
    }

    #[test]
    fn environment_from_the_downward_api_tells_the_tenant_pods_identity() {
        let mut tenant = tenant_pod();
        tenant.metadata.uid = Some("u-1".into());
        tenant.metadata.annotations = Some(BTreeMap::from([("team".into(), "a".into())]));
        let field = |path: &str| json!({ "fieldRef": { "fieldPath": path } });
        tenant.spec.as_mut().unwrap().containers[0].env = Some(
            serde_json::from_value(json!([
                { "name": "NAME", "valueFrom": field("metadata.name") },
                { "name": "NAMESPACE", "valueFrom": field("metadata.namespace") },
                { "name": "UID", "valueFrom": field("metadata.uid") },
                { "name": "ACCOUNT", "valueFrom": field("spec.serviceAccountName") },
                { "name": "TEAM", "valueFrom": field("metadata.annotations['team']") },
                { "name": "APP", "valueFrom": field("metadata.labels['app']") },
                { "name": "MISSING", "valueFrom": field("metadata.labels['nope']") },
                { "name": "IP", "valueFrom": field("status.podIP") },
            ]))
            .unwrap(),
        );
        let host = pod(&tenant, &placement(), &BTreeMap::new(), &[]).unwrap();
        let env = host.spec.unwrap().containers[0].env.clone().unwrap();
        let of = |name: &str| env.iter().find(|e| e.name == name).unwrap().clone();
        for (name, value) in [
            ("NAME", "web"),
            ("NAMESPACE", "shop"),
            ("UID", "u-1"),
            ("ACCOUNT", "builder"),
            ("TEAM", "a"),
            ("APP", "web"),
            ("MISSING", ""),
        ] {
            let e = of(name);
            assert_eq!(
                (e.value.as_deref(), e.value_from.is_none()),
                (Some(value), true),
                "{name}"
            );
        }
        assert!(
            of("IP").value_from.is_some(),
            "the host's kubelet knows the pod's address"
        );
    }

    #[test]
    fn token_sources_keep_their_audience_lifetime_and_path() {
        let mut tenant = tenant_pod();
        let volume: Volume = serde_json::from_value(json!({
            "name": "vault", "projected": { "defaultMode": 288, "sources": [
                { "serviceAccountToken": { "path": "vault/token", "audience": "vault", "expirationSeconds": 600 } },
                { "serviceAccountToken": { "path": "api/token" } },
                { "configMap": { "name": "settings", "items": [{ "key": "a", "path": "a" }] } },
                { "downwardAPI": { "items": [
                    { "path": "ns", "fieldRef": { "fieldPath": "metadata.namespace" } },
                    { "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } },
                ] } },
            ] },
        }))
        .unwrap();
        tenant.spec.as_mut().unwrap().volumes = Some(vec![volume]);
        assert_eq!(
            token_sources(&tenant),
            [
                TokenSource {
                    key: "token-vault-0".into(),
                    audience: Some("vault".into()),
                    expiration_seconds: Some(600),
                },
                TokenSource {
                    key: DEFAULT_TOKEN_KEY.into(),
                    audience: None,
                    expiration_seconds: None,
                },
            ]
        );
        let host = pod(&tenant, &placement(), &BTreeMap::new(), &[]).unwrap();
        let volume = serde_json::to_value(&host.spec.unwrap().volumes.unwrap()[0]).unwrap();
        let secret = pod_secret_name("shop", "web");
        assert_eq!(volume["projected"]["defaultMode"], 288);
        assert_eq!(
            volume["projected"]["sources"],
            json!([
                { "secret": { "name": secret, "items": [{ "key": "token-vault-0", "path": "vault/token" }] } },
                { "secret": { "name": secret, "items": [{ "key": "token", "path": "api/token" }] } },
                { "configMap": { "name": host_name("shop", "settings"), "items": [{ "key": "a", "path": "a" }] } },
                { "secret": { "name": secret, "items": [{ "key": "namespace", "path": "ns" }] } },
                // Read from the annotation holding the tenant pod's labels.
                { "downwardAPI": { "items": [{ "path": "labels", "fieldRef": { "fieldPath": "metadata.annotations['downward.vnest.dev/labels']" } }] } },
            ])
        );
    }

    /// A pod with trust bundles and a pod certificate and no token still
    /// gets its Secret, and each source reads its own keys at its paths.
    #[test]
    fn trust_bundles_and_pod_certificates_come_from_the_pods_secret() {
        let mut tenant = tenant_pod();
        let volume: Volume = serde_json::from_value(json!({
            "name": "trust", "projected": { "sources": [
                { "clusterTrustBundle": { "name": "roots", "path": "roots.pem" } },
                { "clusterTrustBundle": { "signerName": "example.com/one", "labelSelector": {}, "path": "one.pem", "optional": true } },
                { "podCertificate": { "signerName": "example.com/s", "keyType": "ED25519", "keyPath": "k.pem", "certificateChainPath": "c.pem" } },
            ] },
        }))
        .unwrap();
        let spec = tenant.spec.as_mut().unwrap();
        spec.volumes = Some(vec![volume]);
        spec.automount_service_account_token = Some(false);
        assert!(!wants_token(&tenant));
        assert!(wants_pod_secret(&tenant));
        let keys: Vec<String> = trust_bundle_sources(&tenant)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["trust-trust-0", "trust-trust-1"]);
        let host = pod(&tenant, &placement(), &BTreeMap::new(), &[]).unwrap();
        let volume = serde_json::to_value(&host.spec.unwrap().volumes.unwrap()[0]).unwrap();
        let secret = pod_secret_name("shop", "web");
        assert_eq!(
            volume["projected"]["sources"],
            json!([
                { "secret": { "name": secret, "items": [{ "key": "trust-trust-0", "path": "roots.pem" }] } },
                { "secret": { "name": secret, "items": [{ "key": "trust-trust-1", "path": "one.pem" }] } },
                { "secret": { "name": secret, "items": [
                    { "key": "cert-key-trust-2", "path": "k.pem" },
                    { "key": "cert-chain-trust-2", "path": "c.pem" },
                ] } },
            ])
        );
    }

    #[test]
    fn the_apiserver_and_external_names_are_not_mirrored() {
        let service = |namespace: &str, name: &str, type_: &str| -> Service {
            serde_json::from_value(json!({
                "metadata": { "namespace": namespace, "name": name },
                "spec": { "type": type_ },
            }))
            .unwrap()
        };
        assert!(is_mirrored_service(&service("default", "web", "ClusterIP")));
        assert!(!is_mirrored_service(&service(
            "default",
            "kubernetes",
            "ClusterIP"
        )));
        assert!(!is_mirrored_service(&service("shop", "db", "ExternalName")));
    }

    #[test]
    fn affinity_sees_only_the_tenants_own_pods() {
        let mut tenant = tenant_pod();
        let term = |extra: serde_json::Value| {
            let mut t = json!({ "labelSelector": { "matchLabels": { "app": "db" } }, "topologyKey": "kubernetes.io/hostname" });
            for (k, v) in extra.as_object().unwrap() {
                t[k] = v.clone();
            }
            t
        };
        tenant.spec.as_mut().unwrap().affinity = Some(
            serde_json::from_value(json!({
                "podAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [
                    term(json!({ "matchLabelKeys": ["pod-template-hash"] })),
                    term(json!({ "namespaces": ["other", "shop"] })),
                ] },
                "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
                    { "weight": 1, "podAffinityTerm": term(json!({ "namespaceSelector": {} })) },
                    { "weight": 1, "podAffinityTerm": term(json!({ "namespaceSelector": { "matchLabels": { "team": "a" } } })) },
                ] },
            }))
            .unwrap(),
        );
        tenant.spec.as_mut().unwrap().topology_spread_constraints = Some(vec![
            serde_json::from_value(
                json!({ "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                                           "labelSelector": { "matchLabels": { "app": "web" } } }),
            )
            .unwrap(),
        ]);
        let host = pod(&tenant, &placement(), &BTreeMap::new(), &[]).unwrap();
        let spec = serde_json::to_value(host.spec.unwrap()).unwrap();
        let required =
            &spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
        assert_eq!(
            required[0]["labelSelector"],
            json!({ "matchLabels": { "pod.vnest.dev/app": "db", TENANT_NAMESPACE: "shop" } })
        );
        assert_eq!(
            required[0]["matchLabelKeys"],
            json!(["pod.vnest.dev/pod-template-hash"])
        );
        assert_eq!(
            required[1]["labelSelector"],
            json!({ "matchLabels": { "pod.vnest.dev/app": "db" }, "matchExpressions": [
                { "key": TENANT_NAMESPACE, "operator": "In", "values": ["other", "shop"] }] })
        );
        let preferred =
            &spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
        let exists = json!({ "key": TENANT_NAMESPACE, "operator": "Exists" });
        assert_eq!(
            preferred[0]["podAffinityTerm"]["labelSelector"],
            json!({ "matchLabels": { "pod.vnest.dev/app": "db" }, "matchExpressions": [exists] })
        );
        assert_eq!(
            preferred[1]["podAffinityTerm"]["labelSelector"],
            json!({ "matchLabels": { "pod.vnest.dev/app": "db", "ns.vnest.dev/team": "a" }, "matchExpressions": [exists] })
        );
        // No term looks outside the workloads namespace.
        for term in [
            &required[0],
            &required[1],
            &preferred[0]["podAffinityTerm"],
            &preferred[1]["podAffinityTerm"],
        ] {
            assert!(
                term.get("namespaces").is_none() && term.get("namespaceSelector").is_none(),
                "{term}"
            );
        }
        assert_eq!(
            spec["topologySpreadConstraints"][0]["labelSelector"],
            json!({ "matchLabels": { "pod.vnest.dev/app": "web", TENANT_NAMESPACE: "shop" } })
        );
    }

    #[test]
    fn verbatim_labels_are_the_tenants_own_on_pods_and_in_selectors() {
        let placement = Placement {
            pod_labels: PodLabels::Verbatim,
            ..placement()
        };
        let host = pod(&tenant_pod(), &placement, &BTreeMap::new(), &[]).unwrap();
        let labels = host.metadata.labels.unwrap();
        assert_eq!(labels["app"], "web");
        assert_eq!(labels[TENANT_NAMESPACE], "shop", "still not forged");
        let tenant: Service = serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "shop" },
            "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80 }] },
        }))
        .unwrap();
        for (mode, key) in [
            (PodLabels::Verbatim, "app"),
            (PodLabels::Prefixed, "pod.vnest.dev/app"),
        ] {
            let placement = Placement {
                pod_labels: mode,
                ..placement.clone()
            };
            let selector = service(&tenant, &placement).spec.unwrap().selector.unwrap();
            assert_eq!(
                selector,
                BTreeMap::from([
                    (key.to_owned(), "web".to_owned()),
                    (TENANT_NAMESPACE.to_owned(), "shop".to_owned()),
                    (MANAGED_BY.to_owned(), MANAGER.to_owned()),
                ]),
                "{mode:?}"
            );
        }
    }

    #[test]
    fn a_tenant_secret_never_takes_the_place_of_a_pods_token() {
        for (namespace, pod) in [("shop", "web"), ("a", "b"), ("x", &"p".repeat(63))] {
            let token = pod_secret_name(namespace, pod);
            assert_ne!(token, host_name(namespace, &format!("{pod}-token")));
            assert!(token.len() <= 63, "{token}");
        }
        assert!(pod_secret_name("shop", "web").starts_with("web-token-shop-"));
        assert_ne!(pod_secret_name("a", "b"), pod_secret_name("b", "a"));
    }

    #[test]
    fn an_ephemeral_volume_asks_no_more_than_a_claim() {
        let mut tenant = tenant_pod();
        let volume: Volume = serde_json::from_value(json!({
            "name": "scratch",
            "ephemeral": { "volumeClaimTemplate": {
                "metadata": {
                    "labels": { "tier": "db", "vnest.dev/tenant-namespace": "forged" },
                    "annotations": { "volume.kubernetes.io/selected-node": "vnest-node9" },
                },
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": { "requests": { "storage": "1Gi" } },
                    "storageClassName": "local",
                    "volumeName": "someone-elses",
                    "selector": { "matchLabels": { "disk": "ssd" } },
                    "dataSource": { "kind": "PersistentVolumeClaim", "name": "other" },
                    "dataSourceRef": { "kind": "PersistentVolumeClaim", "name": "other" },
                },
            } },
        }))
        .unwrap();
        tenant.spec.as_mut().unwrap().volumes = Some(vec![volume]);
        let host = pod(&tenant, &placement(), &BTreeMap::new(), &[]).unwrap();
        let volumes = host.spec.unwrap().volumes.unwrap();
        let template = volumes[0]
            .ephemeral
            .clone()
            .unwrap()
            .volume_claim_template
            .unwrap();
        let spec = template.spec;
        assert_eq!(spec.storage_class_name.as_deref(), Some("local"));
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        assert!(spec.resources.is_some());
        assert!(
            spec.volume_name.is_none()
                && spec.selector.is_none()
                && spec.data_source.is_none()
                && spec.data_source_ref.is_none()
        );
        let metadata = template.metadata.unwrap();
        assert_eq!(metadata.annotations, None);
        assert_eq!(
            metadata.labels,
            Some(BTreeMap::from([("tier".to_owned(), "db".to_owned())]))
        );
    }

    #[test]
    fn an_ingress_routes_to_host_copies_without_the_tenants_annotations() {
        let tenant: Ingress = serde_json::from_value(json!({
            "metadata": { "name": "shop", "namespace": "web", "annotations": { "nginx.ingress.kubernetes.io/server-snippet": "evil" } },
            "spec": {
                "ingressClassName": "nginx",
                "defaultBackend": { "service": { "name": "fallback", "port": { "number": 80 } } },
                "tls": [{ "hosts": ["shop.example"], "secretName": "shop-tls" }],
                "rules": [{ "host": "shop.example", "http": { "paths": [
                    { "path": "/", "pathType": "Prefix", "backend": { "service": { "name": "api", "port": { "name": "http" } } } },
                    { "path": "/x", "pathType": "Prefix", "backend": { "resource": { "kind": "Bucket", "name": "b" } } }
                ] } }]
            }
        }))
        .unwrap();
        let host = ingress(&tenant, &placement());
        assert_eq!(
            host.metadata.annotations,
            Some(origin_annotations("web", "shop"))
        );
        let spec = host.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        assert_eq!(
            spec.default_backend.unwrap().service.unwrap().name,
            host_name("web", "fallback")
        );
        assert_eq!(
            spec.tls.unwrap()[0].secret_name,
            Some(host_name("web", "shop-tls"))
        );
        let paths = &spec.rules.unwrap()[0].http.clone().unwrap().paths;
        assert_eq!(
            paths[0].backend.service.as_ref().unwrap().name,
            host_name("web", "api")
        );
        assert!(paths[1].backend.resource.is_none() && paths[1].backend.service.is_none());
    }

    #[test]
    fn slices_of_selectorless_services_go_to_the_host_copy() {
        let slice = |managed_by: &str| -> EndpointSlice {
            serde_json::from_value(json!({
                "metadata": { "name": "db-x1", "namespace": "web", "labels": {
                    "kubernetes.io/service-name": "db", "endpointslice.kubernetes.io/managed-by": managed_by } },
                "addressType": "IPv4",
                "ports": [{ "name": "pg", "port": 5432 }],
                "endpoints": [{ "addresses": ["203.0.113.9"], "nodeName": "n1",
                    "targetRef": { "kind": "Pod", "name": "x", "namespace": "web" } }]
            }))
            .unwrap()
        };
        assert!(!is_mirrored_slice(&slice(
            "endpointslice-controller.k8s.io"
        )));
        assert!(is_mirrored_slice(&slice(
            "endpointslicemirroring-controller.k8s.io"
        )));
        // The apiserver's own slice goes nowhere, as its Service.
        let apiserver: EndpointSlice = serde_json::from_value(json!({
            "metadata": { "name": "kubernetes", "namespace": "default", "labels": {
                "kubernetes.io/service-name": "kubernetes" } },
            "addressType": "IPv4",
            "endpoints": [{ "addresses": ["10.244.1.5"] }]
        }))
        .unwrap();
        assert!(!is_mirrored_slice(&apiserver));
        let host = endpoint_slice(&slice("someone"), &placement());
        let labels = host.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/service-name"], host_name("web", "db"));
        assert_eq!(
            labels["endpointslice.kubernetes.io/managed-by"],
            "vnest-syncer"
        );
        let endpoints = host.endpoints.unwrap();
        assert_eq!(endpoints[0].addresses, ["203.0.113.9"]);
        assert!(endpoints[0].target_ref.is_none() && endpoints[0].node_name.is_none());
    }

    #[test]
    fn config_and_secrets_keep_their_data_under_host_names() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": { "name": "settings", "namespace": "shop" }, "data": { "a": "1" } }))
        .unwrap();
        let host = config_map(&cm, &placement());
        assert_eq!(host.metadata.name, Some(host_name("shop", "settings")));
        assert_eq!(host.data, cm.data);
        let svc: Service = serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "shop" },
            "spec": { "type": "NodePort", "clusterIP": "10.96.0.99", "selector": { "app": "web" },
                      "ports": [{ "name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080 }] } })).unwrap();
        let host_svc = service(&svc, &placement());
        let host = host_svc.spec.clone().unwrap();
        assert_eq!(
            host.type_.as_deref(),
            Some("NodePort"),
            "a NodePort opens its node ports on the host"
        );
        assert_eq!(host.ports.as_ref().unwrap()[0].node_port, Some(30080));
        assert_eq!(
            host.cluster_ip.as_deref(),
            Some("10.96.0.99"),
            "the tenant's address is asked for"
        );
        let closed = without_node_ports(&host_svc).spec.unwrap();
        assert_eq!(closed.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(closed.ports.unwrap()[0].node_port, None);
        assert_eq!(closed.cluster_ip.as_deref(), Some("10.96.0.99"));
        let fallback = without_address(&host_svc).unwrap();
        assert_eq!(
            fallback.spec.unwrap().cluster_ip,
            None,
            "or the host picks one"
        );
        let selector = host.selector.unwrap();
        assert_eq!(selector["pod.vnest.dev/app"], "web");
        assert_eq!(selector["vnest.dev/tenant-namespace"], "shop");
        let balancer: Service = serde_json::from_value(json!({
            "metadata": { "name": "lb", "namespace": "shop" },
            "spec": { "type": "LoadBalancer", "clusterIP": "10.96.0.98", "externalTrafficPolicy": "Local",
                      "ports": [{ "port": 80, "nodePort": 30081 }] } })).unwrap();
        let host = service(&balancer, &placement()).spec.unwrap();
        assert_eq!(
            host.type_.as_deref(),
            Some("ClusterIP"),
            "a load balancer is the host's to give"
        );
        assert_eq!(host.ports.unwrap()[0].node_port, None);
        assert_eq!(host.external_traffic_policy, None);
        let token: Secret = serde_json::from_value(json!({
            "metadata": { "name": "t", "namespace": "shop" }, "type": "kubernetes.io/service-account-token" })).unwrap();
        assert_eq!(
            secret(&token, &placement()).type_.as_deref(),
            Some("Opaque")
        );
    }
}
