//! The security boundary between a tenant and the host: what a tenant pod
//! may not do on the host, each rule with the reason the tenant is shown.
//!
//! The host also enforces the tenant's Pod Security level on the workloads
//! namespace; these rules do not depend on it being there. They cover what
//! reaches the node or other tenants (privilege, host namespaces, host
//! paths and ports, capabilities, volume types, node placement, tolerations,
//! runtime classes) at the tenant's level: at `privileged` the admin has
//! allowed everything but placement and the RuntimeClass. Two rules are
//! about other kinds: endpoints may not name the host's own addresses, and
//! Ingresses may claim only the host names and classes the admin granted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::pod_certificates;
use k8s_openapi::api::core::v1::{Pod, PodSpec, SecurityContext};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use vnest_api::cidr::Cidr;
use vnest_api::ingress_hosts;
use vnest_api::{IngressGrant, PodSecurityLevel};

/// One rule of the policy (the `rule` label of the refusals metric).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    Privileged,
    HostNamespaces,
    HostPorts,
    VolumeType,
    Capabilities,
    NodeName,
    NodeAffinity,
    Tolerations,
    RuntimeClass,
    /// Refused by the host's own admission (Pod Security, quota): reported
    /// by the syncer with the host's message.
    HostAdmission,
    /// An EndpointSlice of a selector-less Service pointing at the host
    /// itself (nodes, the host apiserver, loopback, link-local).
    EndpointAddress,
    /// A NetworkPolicy that selects pods by labels the host pods do not
    /// carry as the tenant set them.
    NetworkPolicy,
    /// A volume the host would fill with credentials or trust of its own
    /// (inline CSI, projected pod certificates and trust bundles).
    HostCredentials,
    /// An Ingress claiming a host name or IngressClass the admin did not
    /// grant this cluster.
    IngressGrant,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Privileged => "privileged",
            Rule::HostNamespaces => "host-namespaces",
            Rule::HostPorts => "host-ports",
            Rule::VolumeType => "volume-type",
            Rule::Capabilities => "capabilities",
            Rule::NodeName => "node-name",
            Rule::NodeAffinity => "node-affinity",
            Rule::Tolerations => "tolerations",
            Rule::RuntimeClass => "runtime-class",
            Rule::HostAdmission => "host-admission",
            Rule::EndpointAddress => "endpoint-address",
            Rule::NetworkPolicy => "network-policy",
            Rule::HostCredentials => "host-credentials",
            Rule::IngressGrant => "ingress-grant",
        }
    }
}

/// Why a pod is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    pub message: String,
}

/// What the tenant is allowed, from its VirtualCluster and its pool.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub level: PodSecurityLevel,
    /// The pool's node selector; pods are bound to it.
    pub pool_selector: BTreeMap<String, String>,
    /// The names of the pool's nodes now.
    pub pool_nodes: BTreeSet<String>,
    /// The taint key node pools are fenced with (`vnest.dev/pool`): a
    /// tenant may tolerate only its own pool's value.
    pub pool_taint_key: String,
    /// The RuntimeClass forced on every pod, if any.
    pub runtime_class: Option<String>,
}

/// Volume types that never reach the node (Pod Security baseline's list).
const SAFE_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Capabilities the baseline level lets a container add.
const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// What a tenant Service's endpoints may not name on the host.
#[derive(Clone, Debug, Default)]
pub struct EndpointFence {
    /// The host's own addresses: every node's and the host apiserver's.
    pub host: BTreeSet<IpAddr>,
    /// Ranges tenant traffic must never reach: nodes, the host apiserver's
    /// and DNS's endpoints, the pod subnets (other tenants' pods and
    /// control planes), link-local.
    pub host_ranges: Vec<Cidr>,
    /// Addresses in those ranges that are the tenant's own pods (its
    /// workloads namespace's host pods).
    pub own_pods: BTreeSet<IpAddr>,
}

impl EndpointFence {
    /// The addresses of `slice` that are in a host range: the ones whose
    /// owner must be looked up ([`EndpointFence::own_pods`]).
    pub fn in_host_ranges(&self, slice: &EndpointSlice) -> Vec<IpAddr> {
        slice_addresses(slice)
            .filter(|ip| self.host_ranges.iter().any(|r| r.contains_address(*ip)))
            .collect()
    }
}

fn slice_addresses(slice: &EndpointSlice) -> impl Iterator<Item = IpAddr> + '_ {
    slice
        .endpoints
        .iter()
        .flatten()
        .flat_map(|e| &e.addresses)
        // FQDN slices are not routed by kube-proxy.
        .filter_map(|address| address.parse::<IpAddr>().ok())
}

/// Why Ingress `ingress` may not reach the host's ingress controllers:
/// each host name it claims (rules and TLS) must be covered by a pattern
/// of `grant`, a rule or default backend without a host needs the grant
/// `*` (it catches every name), and a class it names must be granted.
pub fn check_ingress(ingress: &Ingress, grant: &IngressGrant) -> Vec<Refusal> {
    let spec = ingress.spec.clone().unwrap_or_default();
    let refuse = |message: String| Refusal {
        rule: Rule::IngressGrant,
        message,
    };
    let granted = if grant.hosts.is_empty() {
        "this cluster is granted no ingress hosts".to_owned()
    } else {
        format!("this cluster is granted {}", grant.hosts.join(", "))
    };
    let mut claimed: Vec<Option<String>> = Vec::new();
    if spec.default_backend.is_some() {
        claimed.push(None);
    }
    claimed.extend(spec.rules.iter().flatten().map(|r| r.host.clone()));
    claimed.extend(
        spec.tls
            .iter()
            .flatten()
            .flat_map(|t| t.hosts.iter().flatten())
            .map(|h| Some(h.clone())),
    );
    claimed.dedup();
    let mut refusals: Vec<Refusal> = claimed
        .into_iter()
        .filter(|host| {
            !grant
                .hosts
                .iter()
                .any(|p| ingress_hosts::covers(p, host.as_deref()))
        })
        .map(|host| match host {
            Some(host) => refuse(format!(
                "host {host} is not this cluster's to claim ({granted}; the admin grants hosts in spec.isolation.ingress.hosts)"
            )),
            None => refuse(format!(
                "a rule or default backend without a host claims every host name ({granted}; only the grant * allows it)"
            )),
        })
        .collect();
    if let Some(class) = &spec.ingress_class_name
        && !grant.class_names.contains(class)
    {
        refusals.push(refuse(format!(
            "IngressClass {class} is not granted to this cluster (spec.isolation.ingress.classNames: {})",
            grant.class_names.join(", ")
        )));
    }
    refusals
}

/// Every address of `slice` (a tenant EndpointSlice about to be mirrored)
/// that would point a host Service at something not the tenant's: a node
/// (its kubelet, its node ports), the host apiserver or DNS, a pod that is
/// not the tenant's own (another tenant's, a control plane's), or a
/// loopback, link-local (cloud metadata), multicast or unspecified
/// address. Host components that follow Services (an ingress controller, a
/// service mesh) would otherwise proxy a tenant there, and the tenant's own
/// pods would be led there too.
pub fn check_endpoints(slice: &EndpointSlice, fence: &EndpointFence) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    for ip in slice_addresses(slice) {
        let special = match ip {
            IpAddr::V4(v4) => {
                v4.is_loopback()
                    || v4.is_link_local()
                    || v4.is_multicast()
                    || v4.is_unspecified()
                    || v4.is_broadcast()
            }
            IpAddr::V6(v6) => {
                v6.is_loopback()
                    || v6.is_multicast()
                    || v6.is_unspecified()
                    || v6.is_unicast_link_local()
            }
        };
        let foreign = fence.host_ranges.iter().any(|r| r.contains_address(ip))
            && !fence.own_pods.contains(&ip);
        if special || fence.host.contains(&ip) || foreign {
            refusals.push(Refusal {
                rule: Rule::EndpointAddress,
                message: format!(
                    "endpoint address {ip} is not this cluster's to point at (a node, the host apiserver or DNS, another cluster's pod, loopback or link-local); a Service may point at its own pods and at addresses outside the host"
                ),
            });
        }
    }
    refusals
}

/// Every rule `pod` breaks; empty when it may run on the host.
pub fn check(pod: &Pod, policy: &Policy) -> Vec<Refusal> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let mut refusals = Vec::new();
    let mut refuse = |rule, message: String| refusals.push(Refusal { rule, message });
    let strict = policy.level != PodSecurityLevel::Privileged;

    for (container, context) in security_contexts(spec) {
        let Some(context) = context else { continue };
        if strict && context.privileged == Some(true) {
            refuse(
                Rule::Privileged,
                format!(
                    "container {container} is privileged; privileged containers would control the host node"
                ),
            );
        }
        let added = context
            .capabilities
            .as_ref()
            .and_then(|c| c.add.clone())
            .unwrap_or_default();
        for capability in added {
            let allowed = match policy.level {
                PodSecurityLevel::Privileged => true,
                PodSecurityLevel::Baseline => BASELINE_CAPABILITIES.contains(&capability.as_str()),
                PodSecurityLevel::Restricted => capability == "NET_BIND_SERVICE",
            };
            if !allowed {
                refuse(
                    Rule::Capabilities,
                    format!(
                        "container {container} adds capability {capability}, beyond the {} level of this cluster",
                        policy.level.as_str()
                    ),
                );
            }
        }
    }
    if strict {
        for (field, on) in [
            ("hostNetwork", spec.host_network),
            ("hostPID", spec.host_pid),
            ("hostIPC", spec.host_ipc),
        ] {
            if on == Some(true) {
                refuse(
                    Rule::HostNamespaces,
                    format!("{field} shares the host node's namespace"),
                );
            }
        }
        for container in all_containers(spec) {
            for port in container.ports.into_iter().flatten() {
                if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
                    refuse(
                        Rule::HostPorts,
                        format!(
                            "container {} asks for host port {host_port} on the node",
                            container.name
                        ),
                    );
                }
            }
        }
        for volume in spec.volumes.iter().flatten() {
            let kind = volume_kind(volume);
            if !SAFE_VOLUMES.contains(&kind.as_str()) {
                refuse(
                    Rule::VolumeType,
                    format!(
                        "volume {} of type {kind} reaches the host node; allowed are {}",
                        volume.name,
                        SAFE_VOLUMES.join(", ")
                    ),
                );
            }
        }
    }

    // At every level: what the host would fill with credentials or trust
    // of its own, in the name of the host pod (the workloads namespace's
    // ServiceAccount), not the tenant's.
    for volume in spec.volumes.iter().flatten() {
        if volume.csi.is_some() {
            refuse(
                Rule::HostCredentials,
                format!(
                    "volume {} is an inline CSI volume, which the host's driver would mount with the host's identity; use a PersistentVolumeClaim",
                    volume.name
                ),
            );
        }
        // Trust bundles and pod certificates come from the tenant
        // (`trust_bundles`, `pod_certificates`), with keys vnest makes.
        let key_types = volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .filter_map(|s| s.pod_certificate.as_ref())
            .map(|c| c.key_type.as_str());
        for key_type in key_types.filter(|t| !pod_certificates::KEY_TYPES.contains(t)) {
            refuse(
                Rule::HostCredentials,
                format!(
                    "volume {} asks for a podCertificate with keyType {key_type}, which vnest cannot generate; use one of {}",
                    volume.name,
                    pod_certificates::KEY_TYPES.join(", ")
                ),
            );
        }
    }

    if let Some(node) = spec.node_name.as_deref()
        && !policy.pool_nodes.contains(node)
    {
        refuse(
            Rule::NodeName,
            format!("nodeName {node} is not a node of this cluster's pool"),
        );
    }
    for value in required_hostnames(spec) {
        if !policy.pool_nodes.contains(&value) {
            refuse(
                Rule::NodeAffinity,
                format!("node affinity names {value}, which is not a node of this cluster's pool"),
            );
        }
    }
    let own_pool = policy.pool_selector.get(&policy.pool_taint_key);
    for toleration in spec.tolerations.iter().flatten() {
        let key = toleration.key.as_deref().unwrap_or_default();
        let operator = toleration.operator.as_deref().unwrap_or("Equal");
        let everything = key.is_empty() && operator == "Exists";
        let other_pool = key == policy.pool_taint_key
            && (operator == "Exists" || toleration.value.as_ref() != own_pool);
        if everything || other_pool {
            refuse(
                Rule::Tolerations,
                if everything {
                    "a toleration of every taint would let the pod onto other tenants' nodes"
                        .to_owned()
                } else {
                    format!("a toleration of {key} would let the pod onto other tenants' nodes")
                },
            );
        }
    }
    if let Some(asked) = spec.runtime_class_name.as_deref()
        && policy.runtime_class.as_deref() != Some(asked)
    {
        refuse(
            Rule::RuntimeClass,
            match &policy.runtime_class {
                Some(forced) => {
                    format!("runtimeClassName {asked} is not this cluster's RuntimeClass {forced}")
                }
                None => format!(
                    "runtimeClassName {asked} is not allowed; this cluster's pods use the host's default runtime"
                ),
            },
        );
    }
    refusals
}

struct AnyContainer<'a> {
    name: &'a str,
    ports: Option<&'a Vec<k8s_openapi::api::core::v1::ContainerPort>>,
    context: Option<&'a SecurityContext>,
}

fn all_containers(spec: &PodSpec) -> Vec<AnyContainer<'_>> {
    let mut all: Vec<AnyContainer<'_>> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| AnyContainer {
            name: &c.name,
            ports: c.ports.as_ref(),
            context: c.security_context.as_ref(),
        })
        .collect();
    all.extend(
        spec.ephemeral_containers
            .iter()
            .flatten()
            .map(|c| AnyContainer {
                name: &c.name,
                ports: c.ports.as_ref(),
                context: c.security_context.as_ref(),
            }),
    );
    all
}

fn security_contexts(spec: &PodSpec) -> Vec<(&str, Option<&SecurityContext>)> {
    all_containers(spec)
        .into_iter()
        .map(|c| (c.name, c.context))
        .collect()
}

/// The volume's source field name, as in the API (`hostPath`, `nfs`, …).
fn volume_kind(volume: &k8s_openapi::api::core::v1::Volume) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(volume) else {
        return "unknown".to_owned();
    };
    fields
        .keys()
        .find(|k| k.as_str() != "name")
        .cloned()
        .unwrap_or_else(|| "emptyDir".to_owned())
}

/// Host names a pod's required node affinity pins it to.
fn required_hostnames(spec: &PodSpec) -> Vec<String> {
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|selector| {
            selector
                .node_selector_terms
                .iter()
                .flat_map(|t| {
                    t.match_expressions
                        .iter()
                        .flatten()
                        .chain(t.match_fields.iter().flatten())
                })
                .filter(|e| {
                    (e.key == "kubernetes.io/hostname" || e.key == "metadata.name")
                        && e.operator == "In"
                })
                .flat_map(|e| e.values.clone().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn ingresses_claim_only_granted_hosts_and_classes() {
        let grant = IngressGrant {
            hosts: vec!["*.shop.example.com".into(), "api.example.com".into()],
            class_names: vec!["public".into()],
        };
        let backend = json!({ "service": { "name": "web", "port": { "number": 80 } } });
        let rule = |host: &str| json!({ "host": host, "http": { "paths": [{ "path": "/", "pathType": "Prefix", "backend": backend }] } });
        let cases = [
            (
                json!({ "rules": [rule("www.shop.example.com"), rule("api.example.com")] }),
                vec![],
            ),
            (
                json!({ "ingressClassName": "public", "rules": [rule("*.shop.example.com")] }),
                vec![],
            ),
            (
                json!({ "rules": [rule("www.other.example.com")] }),
                vec!["host www.other.example.com is not this cluster's"],
            ),
            (
                json!({ "rules": [rule("*.example.com")] }),
                vec!["host *.example.com is not"],
            ),
            (
                json!({ "rules": [{ "http": { "paths": [] } }] }),
                vec!["without a host claims every host name"],
            ),
            (
                json!({ "defaultBackend": backend }),
                vec!["without a host claims every host name"],
            ),
            (
                json!({ "rules": [rule("www.shop.example.com")], "tls": [{ "hosts": ["bank.example.com"], "secretName": "t" }] }),
                vec!["host bank.example.com is not"],
            ),
            (
                json!({ "ingressClassName": "internal", "rules": [rule("api.example.com")] }),
                vec!["IngressClass internal is not granted"],
            ),
        ];
        for (spec, expected) in cases {
            let ingress: Ingress =
                serde_json::from_value(json!({ "metadata": { "name": "i" }, "spec": spec }))
                    .unwrap();
            let refusals = check_ingress(&ingress, &grant);
            assert_eq!(refusals.len(), expected.len(), "{spec}: {refusals:?}");
            for (refusal, expected) in refusals.iter().zip(expected) {
                assert_eq!(refusal.rule, Rule::IngressGrant);
                assert!(refusal.message.contains(expected), "{}", refusal.message);
            }
        }
        // Without a grant, nothing is claimed; with `*`, everything is.
        let ingress: Ingress =
            serde_json::from_value(json!({ "spec": { "defaultBackend": backend } })).unwrap();
        let none = check_ingress(&ingress, &IngressGrant::default());
        assert!(
            none[0].message.contains("granted no ingress hosts"),
            "{none:?}"
        );
        let all = IngressGrant {
            hosts: vec!["*".into()],
            class_names: vec![],
        };
        assert!(check_ingress(&ingress, &all).is_empty());
    }

    fn policy(level: PodSecurityLevel) -> Policy {
        Policy {
            level,
            pool_selector: BTreeMap::from([("vnest.dev/pool".to_owned(), "a".to_owned())]),
            pool_nodes: BTreeSet::from(["node-a1".to_owned()]),
            pool_taint_key: "vnest.dev/pool".to_owned(),
            runtime_class: None,
        }
    }

    fn pod(spec: Value) -> Pod {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{ "name": "app", "image": "app" }]);
        }
        serde_json::from_value(json!({ "metadata": { "name": "p" }, "spec": spec })).unwrap()
    }

    fn rules(pod: &Pod, policy: &Policy) -> Vec<Rule> {
        check(pod, policy).into_iter().map(|r| r.rule).collect()
    }

    /// One case per rule: the spec, the level, what is refused.
    #[test]
    fn each_rule_refuses_what_reaches_the_node_and_allows_the_rest() {
        use PodSecurityLevel::{Baseline, Privileged, Restricted};
        let container = |extra: Value| {
            let mut c = json!({ "name": "app", "image": "app" });
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            json!({ "containers": [c] })
        };
        let cases: Vec<(&str, Value, PodSecurityLevel, Vec<Rule>)> = vec![
            ("plain pod", json!({}), Restricted, vec![]),
            (
                "privileged",
                container(json!({ "securityContext": { "privileged": true } })),
                Baseline,
                vec![Rule::Privileged],
            ),
            (
                "privileged allowed at privileged",
                container(json!({ "securityContext": { "privileged": true } })),
                Privileged,
                vec![],
            ),
            (
                "privileged init container",
                json!({ "containers": [{ "name": "a" }], "initContainers": [{ "name": "i", "securityContext": { "privileged": true } }] }),
                Restricted,
                vec![Rule::Privileged],
            ),
            (
                "hostNetwork",
                json!({ "hostNetwork": true }),
                Baseline,
                vec![Rule::HostNamespaces],
            ),
            (
                "hostPID and hostIPC",
                json!({ "hostPID": true, "hostIPC": true }),
                Restricted,
                vec![Rule::HostNamespaces, Rule::HostNamespaces],
            ),
            (
                "hostPort",
                container(json!({ "ports": [{ "containerPort": 80, "hostPort": 80 }] })),
                Baseline,
                vec![Rule::HostPorts],
            ),
            (
                "containerPort alone",
                container(json!({ "ports": [{ "containerPort": 80 }] })),
                Restricted,
                vec![],
            ),
            (
                "hostPath",
                json!({ "volumes": [{ "name": "root", "hostPath": { "path": "/" } }] }),
                Baseline,
                vec![Rule::VolumeType],
            ),
            (
                "nfs",
                json!({ "volumes": [{ "name": "n", "nfs": { "server": "s", "path": "/" } }] }),
                Restricted,
                vec![Rule::VolumeType],
            ),
            (
                "safe volumes",
                json!({ "volumes": [{ "name": "c", "configMap": { "name": "x" } }, { "name": "e", "emptyDir": {} }, { "name": "p", "persistentVolumeClaim": { "claimName": "d" } }] }),
                Restricted,
                vec![],
            ),
            (
                "SYS_ADMIN at baseline",
                container(
                    json!({ "securityContext": { "capabilities": { "add": ["SYS_ADMIN"] } } }),
                ),
                Baseline,
                vec![Rule::Capabilities],
            ),
            (
                "CHOWN at baseline",
                container(json!({ "securityContext": { "capabilities": { "add": ["CHOWN"] } } })),
                Baseline,
                vec![],
            ),
            (
                "CHOWN at restricted",
                container(json!({ "securityContext": { "capabilities": { "add": ["CHOWN"] } } })),
                Restricted,
                vec![Rule::Capabilities],
            ),
            (
                "NET_BIND_SERVICE at restricted",
                container(
                    json!({ "securityContext": { "capabilities": { "add": ["NET_BIND_SERVICE"] } } }),
                ),
                Restricted,
                vec![],
            ),
            (
                "nodeName in the pool",
                json!({ "nodeName": "node-a1" }),
                Restricted,
                vec![],
            ),
            (
                "nodeName outside the pool",
                json!({ "nodeName": "node-b1" }),
                Privileged,
                vec![Rule::NodeName],
            ),
            (
                "affinity to another node",
                json!({ "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "kubernetes.io/hostname", "operator": "In", "values": ["node-b1"] }] }] } } } }),
                Restricted,
                vec![Rule::NodeAffinity],
            ),
            (
                "affinity within the pool",
                json!({ "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "kubernetes.io/hostname", "operator": "In", "values": ["node-a1"] }] }] } } } }),
                Restricted,
                vec![],
            ),
            (
                "tolerate every taint",
                json!({ "tolerations": [{ "operator": "Exists" }] }),
                Privileged,
                vec![Rule::Tolerations],
            ),
            (
                "tolerate another pool",
                json!({ "tolerations": [{ "key": "vnest.dev/pool", "value": "b", "effect": "NoSchedule" }] }),
                Restricted,
                vec![Rule::Tolerations],
            ),
            (
                "tolerate own pool",
                json!({ "tolerations": [{ "key": "vnest.dev/pool", "value": "a", "effect": "NoSchedule" }] }),
                Restricted,
                vec![],
            ),
            (
                "tolerate not-ready",
                json!({ "tolerations": [{ "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 }] }),
                Restricted,
                vec![],
            ),
            (
                "inline CSI, even at privileged",
                json!({ "volumes": [{ "name": "c", "csi": { "driver": "secrets-store.csi.k8s.io" } }] }),
                Privileged,
                vec![Rule::HostCredentials],
            ),
            (
                "a pod certificate from the tenant's signer",
                json!({ "volumes": [{ "name": "c", "projected": { "sources": [{ "podCertificate": { "signerName": "example.com/s", "keyType": "ED25519", "credentialBundlePath": "c.pem" } }] } }] }),
                Restricted,
                vec![],
            ),
            (
                "a pod certificate with a key vnest cannot make",
                json!({ "volumes": [{ "name": "c", "projected": { "sources": [{ "podCertificate": { "signerName": "example.com/s", "keyType": "RSA3072", "credentialBundlePath": "c.pem" } }] } }] }),
                Restricted,
                vec![Rule::HostCredentials],
            ),
            (
                "a trust bundle, filled from the tenant's",
                json!({ "volumes": [{ "name": "c", "projected": { "sources": [{ "clusterTrustBundle": { "name": "b", "path": "b.pem" } }] } }] }),
                Restricted,
                vec![],
            ),
            (
                "projected token, ConfigMap and downward API",
                json!({ "volumes": [{ "name": "c", "projected": { "sources": [
                    { "serviceAccountToken": { "path": "token" } },
                    { "configMap": { "name": "x" } },
                    { "downwardAPI": { "items": [{ "path": "n", "fieldRef": { "fieldPath": "metadata.name" } }] } },
                ] } }] }),
                Restricted,
                vec![],
            ),
            (
                "a RuntimeClass of its own",
                json!({ "runtimeClassName": "runc-unconfined" }),
                Privileged,
                vec![Rule::RuntimeClass],
            ),
        ];
        for (name, spec, level, want) in cases {
            assert_eq!(rules(&pod(spec), &policy(level)), want, "{name}");
        }
    }

    #[test]
    fn only_the_forced_runtime_class_is_accepted_and_the_reason_names_it() {
        let mut policy = policy(PodSecurityLevel::Restricted);
        policy.runtime_class = Some("kata".into());
        assert!(check(&pod(json!({ "runtimeClassName": "kata" })), &policy).is_empty());
        assert!(check(&pod(json!({})), &policy).is_empty());
        let refused = check(&pod(json!({ "runtimeClassName": "runc" })), &policy);
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].message.contains("kata"),
            "{}",
            refused[0].message
        );
    }

    #[test]
    fn reasons_name_the_container_and_what_it_asked_for() {
        let p = pod(
            json!({ "containers": [{ "name": "web", "image": "x", "securityContext": { "privileged": true } }],
                           "volumes": [{ "name": "root", "hostPath": { "path": "/" } }] }),
        );
        let messages: Vec<String> = check(&p, &policy(PodSecurityLevel::Baseline))
            .into_iter()
            .map(|r| r.message)
            .collect();
        assert!(
            messages[0].contains("container web is privileged"),
            "{messages:?}"
        );
        assert!(
            messages[1].contains("volume root of type hostPath"),
            "{messages:?}"
        );
    }

    #[test]
    fn endpoints_may_not_name_the_host() {
        let fence = EndpointFence {
            host: ["10.0.0.7".parse().unwrap(), "10.96.0.1".parse().unwrap()].into(),
            host_ranges: ["10.244.0.0/16", "172.30.0.1/32", "100.100.100.200/32"]
                .iter()
                .map(|r| r.parse().unwrap())
                .collect(),
            own_pods: ["10.244.1.5".parse().unwrap()].into(),
        };
        let slice = |address: &str| -> EndpointSlice {
            serde_json::from_value(json!({
                "metadata": { "name": "s" }, "addressType": "IPv4",
                "endpoints": [{ "addresses": [address] }]
            }))
            .unwrap()
        };
        for (address, refused) in [
            ("10.0.0.7", true),
            ("10.96.0.1", true),
            ("127.0.0.1", true),
            ("169.254.169.254", true),
            ("0.0.0.0", true),
            // The tenant's own pod; another tenant's pod or control plane;
            // the host apiserver's real endpoint; another cloud's metadata.
            ("10.244.1.5", false),
            ("10.244.2.9", true),
            ("172.30.0.1", true),
            ("100.100.100.200", true),
            ("203.0.113.9", false),
            ("db.example.com", false),
        ] {
            let refusals = check_endpoints(&slice(address), &fence);
            assert_eq!(!refusals.is_empty(), refused, "{address}: {refusals:?}");
            assert!(refusals.iter().all(|r| r.rule == Rule::EndpointAddress));
        }
        let slice = slice("10.244.2.9");
        assert_eq!(
            fence.in_host_ranges(&slice),
            ["10.244.2.9".parse::<IpAddr>().unwrap()]
        );
    }
}
