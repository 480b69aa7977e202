//! The tenant's own NetworkPolicies on the host, with their tenant meaning
//! and never more.
//!
//! All of a tenant's pods share one host namespace, so a tenant policy is
//! rewritten before it lands there:
//! - it governs the pods of its own tenant namespace only (its pod selector
//!   gains the tenant-namespace label);
//! - a pod peer stays in the policy's tenant namespace, a namespace
//!   selector becomes a pod selector on the tenant namespace's labels, which
//!   the syncer carries onto every host pod ([`pod_labels`]);
//! - a peer meaning "anywhere" (no `from`/`to`, or an `ipBlock` holding the
//!   whole pod network) becomes the tenant's own pods, its apiserver and
//!   every address off the host;
//! - an `ipBlock` excludes every host range (nodes, the host apiserver and
//!   DNS, pod subnets, link-local); one inside a host range is dropped, so
//!   a tenant's pods are reached by selectors, not by their addresses (as
//!   upstream advises: `ipBlock`s are for addresses outside the cluster).
//!
//! NetworkPolicies add up: a pod's traffic is what any policy selecting it
//! allows. vnest's own policies (the supervisor's) isolate every workload
//! and allow traffic within bounds only to pods no tenant policy governs
//! (those without the [`pod_network::INGRESS_POLICY`] /
//! [`pod_network::EGRESS_POLICY`] labels). A governed pod thus gets what its
//! tenant policies allow, rewritten as above: a tenant policy can narrow
//! vnest's fence, never widen it. A rule whose peers all fall away is
//! dropped rather than emptied (an empty peer list would mean "anywhere").

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use vnest_api::PodLabels;
use vnest_api::cidr::Cidr;
use vnest_api::pod_network::{self, is_vnest_key, namespace_label_key};

use crate::policy::{Refusal, Rule};
use crate::selectors::{in_namespace, in_namespaces, tenant_pods};
use crate::translate::{Placement, host_meta};
use vnest_api::host_copies::MANAGED_BY;

/// Where a tenant's policies may lead on the host (from the supervisor).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkScope {
    /// The tenant's control-plane namespace on the host.
    pub control_plane_namespace: String,
    /// The labels of the tenant's apiserver pods there.
    pub apiserver_pods: BTreeMap<String, String>,
    /// Every range tenant traffic must not reach.
    pub host_ranges: Vec<Cidr>,
    /// The host's pod subnets (the tenant's pods are among them).
    pub pod_ranges: Vec<Cidr>,
    /// The tenant apiserver's address as pods dial it.
    pub apiserver_address: Option<IpAddr>,
}

/// The host copy of tenant policy `tenant`.
pub fn translate(tenant: &NetworkPolicy, placement: &Placement) -> NetworkPolicy {
    let namespace = tenant.metadata.namespace.as_deref().unwrap_or("default");
    let spec = tenant.spec.clone().unwrap_or_default();
    let policy_types = Some(policy_types(&spec));
    let ingress = spec.ingress.map(|rules| {
        rules
            .into_iter()
            .filter_map(|rule| {
                Some(NetworkPolicyIngressRule {
                    from: Some(peers(rule.from, namespace, placement)?),
                    ports: rule.ports,
                })
            })
            .collect()
    });
    let egress = spec.egress.map(|rules| {
        rules
            .into_iter()
            .filter_map(|rule| {
                Some(NetworkPolicyEgressRule {
                    to: Some(peers(rule.to, namespace, placement)?),
                    ports: rule.ports,
                })
            })
            .collect()
    });
    NetworkPolicy {
        metadata: host_meta(&tenant.metadata, placement, BTreeMap::new()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(in_namespace(
                spec.pod_selector.unwrap_or_default(),
                namespace,
                placement.pod_labels,
            )),
            ingress,
            egress,
            policy_types,
        }),
    }
}

/// The directions a policy governs: as written, or as the API defaults
/// them (Ingress always, Egress when there are egress rules).
fn policy_types(spec: &NetworkPolicySpec) -> Vec<String> {
    match &spec.policy_types {
        Some(types) if !types.is_empty() => types.clone(),
        _ => {
            let mut types = vec!["Ingress".to_owned()];
            if spec.egress.is_some() {
                types.push("Egress".to_owned());
            }
            types
        }
    }
}

/// The host peers of a rule's tenant peers; `None` when none is left (the
/// rule then goes: it must not turn into "anywhere").
fn peers(
    tenant: Option<Vec<NetworkPolicyPeer>>,
    namespace: &str,
    placement: &Placement,
) -> Option<Vec<NetworkPolicyPeer>> {
    let scope = &placement.network;
    let tenant = tenant.unwrap_or_default();
    if tenant.is_empty() {
        return Some(anywhere(scope));
    }
    let host: Vec<NetworkPolicyPeer> = tenant
        .into_iter()
        .flat_map(|peer| peer_on_host(peer, namespace, scope, placement.pod_labels))
        .collect();
    (!host.is_empty()).then_some(host)
}

fn peer_on_host(
    peer: NetworkPolicyPeer,
    namespace: &str,
    scope: &NetworkScope,
    labels: PodLabels,
) -> Vec<NetworkPolicyPeer> {
    if let Some(block) = peer.ip_block {
        return block_on_host(&block, scope);
    }
    let pods = peer.pod_selector.unwrap_or_default();
    let selector = match peer.namespace_selector {
        None => Some(in_namespace(pods, namespace, labels)),
        Some(namespaces) => in_namespaces(pods, namespaces, labels),
    };
    selector.map(|s| vec![pods_peer(s)]).unwrap_or_default()
}

/// An `ipBlock` without the host's ranges; all the tenant's pods and its
/// apiserver too when the block holds them in the tenant's eyes.
fn block_on_host(block: &IPBlock, scope: &NetworkScope) -> Vec<NetworkPolicyPeer> {
    let Ok(cidr) = block.cidr.parse::<Cidr>() else {
        return Vec::new();
    };
    let tenant_except: Vec<Cidr> = block
        .except
        .iter()
        .flatten()
        .filter_map(|e| e.parse().ok())
        .collect();
    let whole_pod_network = if scope.pod_ranges.is_empty() {
        cidr.prefix() == 0
    } else {
        scope.pod_ranges.iter().all(|r| cidr.contains(r))
    };
    let mut peers = Vec::new();
    if !scope.host_ranges.iter().any(|r| r.contains(&cidr)) {
        let mut except = block.except.clone().unwrap_or_default();
        except.extend(
            scope
                .host_ranges
                .iter()
                .filter(|r| cidr.contains(r))
                .map(Cidr::to_string),
        );
        peers.push(NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: cidr.to_string(),
                except: (!except.is_empty()).then_some(except),
            }),
            ..NetworkPolicyPeer::default()
        });
    }
    if whole_pod_network {
        peers.push(pods_peer(tenant_pods()));
    }
    let holds_apiserver = scope.apiserver_address.is_some_and(|address| {
        cidr.contains_address(address) && !tenant_except.iter().any(|e| e.contains_address(address))
    });
    if whole_pod_network || holds_apiserver {
        peers.push(apiserver_peer(scope));
    }
    peers
}

/// What "anywhere" means for a tenant: its pods, its apiserver, and every
/// address off the host.
fn anywhere(scope: &NetworkScope) -> Vec<NetworkPolicyPeer> {
    let mut peers = vec![pods_peer(tenant_pods()), apiserver_peer(scope)];
    let ipv6 = scope.host_ranges.iter().any(Cidr::is_ipv6);
    for everything in [Cidr::everything(false)]
        .into_iter()
        .chain(ipv6.then(|| Cidr::everything(true)))
    {
        let except: Vec<String> = scope
            .host_ranges
            .iter()
            .filter(|r| r.is_ipv6() == everything.is_ipv6())
            .map(Cidr::to_string)
            .collect();
        peers.push(NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: everything.to_string(),
                except: (!except.is_empty()).then_some(except),
            }),
            ..NetworkPolicyPeer::default()
        });
    }
    peers
}

fn pods_peer(selector: LabelSelector) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(selector),
        ..NetworkPolicyPeer::default()
    }
}

fn apiserver_peer(scope: &NetworkScope) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                scope.control_plane_namespace.clone(),
            )])),
            ..LabelSelector::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(scope.apiserver_pods.clone()),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

/// Why a tenant policy cannot mean on the host what it means in the tenant:
/// it selects pods by labels the host pods do not carry as the tenant set
/// them. Refused, its host copy goes, and the pods it governs stay isolated
/// by vnest's base policy (fail closed).
pub fn refusals(policy: &NetworkPolicy) -> Vec<Refusal> {
    let spec = policy.spec.clone().unwrap_or_default();
    let mut pod_selectors: Vec<LabelSelector> = spec.pod_selector.into_iter().collect();
    let mut namespace_selectors = Vec::new();
    let peers = spec
        .ingress
        .into_iter()
        .flatten()
        .flat_map(|r| r.from.unwrap_or_default())
        .chain(
            spec.egress
                .into_iter()
                .flatten()
                .flat_map(|r| r.to.unwrap_or_default()),
        );
    for peer in peers {
        pod_selectors.extend(peer.pod_selector);
        namespace_selectors.extend(peer.namespace_selector);
    }
    let mut problems = Vec::new();
    for key in pod_selectors.iter().flat_map(selector_keys) {
        if is_vnest_key(&key) || key == MANAGED_BY {
            problems.push(format!(
                "it selects pods by label {key:?}, which vnest sets on the host itself"
            ));
        }
    }
    for key in namespace_selectors.iter().flat_map(selector_keys) {
        if namespace_label_key(&key).is_none() {
            problems.push(format!(
                "it selects namespaces by label {key:?}, whose prefix is too long to carry onto the host"
            ));
        }
    }
    problems.sort();
    problems.dedup();
    problems
        .into_iter()
        .map(|problem| Refusal {
            rule: Rule::NetworkPolicy,
            message: format!("{problem}; the pods it governs stay isolated until it is changed"),
        })
        .collect()
}

fn selector_keys(selector: &LabelSelector) -> Vec<String> {
    let labels = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, _)| k.clone());
    let expressions = selector
        .match_expressions
        .iter()
        .flatten()
        .map(|r| r.key.clone());
    labels.chain(expressions).collect()
}

/// Which directions of a pod's traffic the tenant's policies govern.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Governed {
    pub ingress: bool,
    pub egress: bool,
}

/// Which directions of a pod (its tenant labels, in `namespace`) the
/// tenant's `policies` govern. A selector that does not parse counts as
/// selecting: the pod then loses vnest's allowances, never gains.
pub fn governed<'a>(
    labels: &BTreeMap<String, String>,
    namespace: &str,
    policies: impl IntoIterator<Item = &'a NetworkPolicy>,
) -> Governed {
    let mut governed = Governed::default();
    for policy in policies {
        if policy.metadata.namespace.as_deref() != Some(namespace) {
            continue;
        }
        let spec = policy.spec.clone().unwrap_or_default();
        let selects = Selector::try_from(spec.pod_selector.clone().unwrap_or_default())
            .map_or(true, |s| s.matches(labels));
        if selects {
            for type_ in policy_types(&spec) {
                match type_.as_str() {
                    "Ingress" => governed.ingress = true,
                    "Egress" => governed.egress = true,
                    _ => {}
                }
            }
        }
    }
    governed
}

/// The labels of a tenant pod's host pod that carry its network identity:
/// its tenant namespace's labels (under [`namespace_label_key`]) and which
/// directions tenant policies govern.
pub fn pod_labels(namespace: Option<&Namespace>, governed: Governed) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = namespace
        .and_then(|ns| ns.metadata.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(key, value)| Some((namespace_label_key(&key)?, value)))
        .collect();
    if governed.ingress {
        labels.insert(pod_network::INGRESS_POLICY.to_owned(), "true".to_owned());
    }
    if governed.egress {
        labels.insert(pod_network::EGRESS_POLICY.to_owned(), "true".to_owned());
    }
    labels
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kube::api::ObjectMeta;
    use serde_json::json;
    use vnest_api::host_copies::TENANT_NAMESPACE;

    fn scope() -> NetworkScope {
        NetworkScope {
            control_plane_namespace: "vnest-t-a-cp".into(),
            apiserver_pods: BTreeMap::from([(
                "app.kubernetes.io/component".into(),
                "apiserver".into(),
            )]),
            host_ranges: [
                "10.244.0.0/16",
                "169.254.0.0/16",
                "172.30.0.1/32",
                "172.30.0.10/32",
            ]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect(),
            pod_ranges: vec!["10.244.0.0/16".parse().unwrap()],
            apiserver_address: Some("10.96.7.7".parse().unwrap()),
        }
    }

    fn placement() -> Placement {
        Placement {
            host_namespace: "vnest-t-a-wl".into(),
            network: scope(),
            ..Placement::default()
        }
    }

    fn tenant(spec: serde_json::Value) -> NetworkPolicy {
        NetworkPolicy {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("shop".into()),
                ..ObjectMeta::default()
            },
            spec: Some(serde_json::from_value(spec).unwrap()),
        }
    }

    fn host(spec: serde_json::Value) -> serde_json::Value {
        serde_json::to_value(translate(&tenant(spec), &placement()).spec).unwrap()
    }

    fn anywhere_json() -> serde_json::Value {
        json!([
            {"podSelector": {"matchExpressions": [{"key": TENANT_NAMESPACE, "operator": "Exists"}]}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "vnest-t-a-cp"}},
             "podSelector": {"matchLabels": {"app.kubernetes.io/component": "apiserver"}}},
            {"ipBlock": {"cidr": "0.0.0.0/0",
                         "except": ["10.244.0.0/16", "169.254.0.0/16", "172.30.0.1/32", "172.30.0.10/32"]}},
        ])
    }

    #[test]
    fn a_deny_all_governs_only_its_own_namespace_and_allows_nothing() {
        let spec = host(json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}));
        assert_eq!(
            spec,
            json!({
                "podSelector": {"matchLabels": {TENANT_NAMESPACE: "shop"}},
                "policyTypes": ["Ingress", "Egress"],
            })
        );
        // Without policyTypes, the API's defaults.
        let spec = host(json!({"podSelector": {}, "egress": []}));
        assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
        let spec = host(json!({"podSelector": {}}));
        assert_eq!(spec["policyTypes"], json!(["Ingress"]));
    }

    #[test]
    fn pod_peers_stay_in_their_namespace_and_ports_are_kept() {
        let spec = host(json!({
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "example.com/tier", "operator": "Exists"}]}}],
                "ports": [{"port": "postgres", "protocol": "TCP"}],
            }],
        }));
        assert_eq!(
            spec["podSelector"],
            json!({"matchLabels": {"pod.vnest.dev/app": "db", TENANT_NAMESPACE: "shop"}})
        );
        assert_eq!(
            spec["ingress"],
            json!([{
                "from": [{"podSelector": {
                    "matchLabels": {"pod.vnest.dev/app": "web", TENANT_NAMESPACE: "shop"},
                    "matchExpressions": [{"key": "example.com.pod.vnest.dev/tier", "operator": "Exists"}],
                }}],
                "ports": [{"port": "postgres", "protocol": "TCP"}],
            }])
        );
    }

    #[test]
    fn namespace_selectors_become_selectors_of_the_labels_host_pods_carry() {
        let spec = host(json!({
            "podSelector": {},
            "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "front"}},
                 "podSelector": {"matchLabels": {"app": "web"}}},
                {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}},
                {"namespaceSelector": {}},
            ]}],
        }));
        let tenant_pod = json!({"key": TENANT_NAMESPACE, "operator": "Exists"});
        assert_eq!(
            spec["ingress"][0]["from"],
            json!([
                {"podSelector": {
                    "matchLabels": {"pod.vnest.dev/app": "web", "kubernetes.io.ns.vnest.dev/metadata.name": "front"},
                    "matchExpressions": [tenant_pod],
                }},
                {"podSelector": {"matchExpressions": [
                    {"key": "ns.vnest.dev/team", "operator": "In", "values": ["a"]}, tenant_pod,
                ]}},
                {"podSelector": {"matchExpressions": [tenant_pod]}},
            ])
        );
    }

    #[test]
    fn anywhere_means_the_tenants_pods_apiserver_and_what_is_off_the_host() {
        // No peers, and a block of the whole address space, both.
        let spec = host(json!({"podSelector": {}, "egress": [{}]}));
        assert_eq!(spec["egress"][0]["to"], anywhere_json());
        let spec = host(
            json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}),
        );
        let to = &spec["egress"][0]["to"];
        assert_eq!(to[0], anywhere_json()[2]);
        assert_eq!(to[1], anywhere_json()[0]);
        assert_eq!(to[2], anywhere_json()[1]);
    }

    #[test]
    fn blocks_never_reach_into_the_host() {
        // A block holding a node and the host apiserver loses them.
        let spec = host(json!({"podSelector": {}, "egress": [{"to": [
            {"ipBlock": {"cidr": "172.30.0.0/24", "except": ["172.30.0.128/25"]}},
        ]}]}));
        assert_eq!(
            spec["egress"][0]["to"],
            json!([{"ipBlock": {"cidr": "172.30.0.0/24",
                                "except": ["172.30.0.128/25", "172.30.0.1/32", "172.30.0.10/32"]}}])
        );
        // A block inside the host's ranges (the host apiserver, another
        // tenant's pod, cloud metadata) goes, and a rule left without
        // peers goes with it: it is not widened to "anywhere".
        for inside in ["172.30.0.1/32", "10.244.3.0/24", "169.254.169.254/32"] {
            let spec = host(json!({"podSelector": {}, "egress": [
                {"to": [{"ipBlock": {"cidr": inside}}]},
                {"to": [{"podSelector": {}}]},
            ]}));
            assert_eq!(spec["egress"].as_array().unwrap().len(), 1, "{inside}");
            assert_eq!(
                spec["egress"][0]["to"][0]["podSelector"],
                json!({"matchLabels": {TENANT_NAMESPACE: "shop"}})
            );
        }
        // A block holding the tenant apiserver's address reaches its pods.
        let spec = host(
            json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.96.0.0/12"}}]}]}),
        );
        assert_eq!(spec["egress"][0]["to"][1], anywhere_json()[1]);
        let spec = host(json!({"podSelector": {}, "egress": [{"to": [
            {"ipBlock": {"cidr": "10.96.0.0/12", "except": ["10.96.7.0/24"]}},
        ]}]}));
        assert_eq!(spec["egress"][0]["to"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn policies_on_labels_vnest_sets_are_refused() {
        let ok = tenant(json!({
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}],
        }));
        assert!(refusals(&ok).is_empty());
        for spec in [
            json!({"podSelector": {"matchLabels": {TENANT_NAMESPACE: "other"}}}),
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                {"key": pod_network::INGRESS_POLICY, "operator": "DoesNotExist"}]}}]}]}),
            json!({"podSelector": {}, "egress": [{"to": [{"podSelector": {"matchLabels": {MANAGED_BY: "Helm"}}}]}]}),
            json!({"podSelector": {}, "egress": [{"to": [{"namespaceSelector": {"matchLabels": {
                format!("{}/x", "p".repeat(250)): "y"}}}]}]}),
        ] {
            let refused = refusals(&tenant(spec.clone()));
            assert_eq!(refused.len(), 1, "{spec}");
            assert!(
                refused[0].message.contains("stay isolated"),
                "{}",
                refused[0].message
            );
        }
    }

    #[test]
    fn a_pod_is_governed_in_the_directions_of_the_policies_selecting_it() {
        let labels = BTreeMap::from([("app".to_owned(), "db".to_owned())]);
        let deny_in = tenant(json!({"podSelector": {"matchLabels": {"app": "db"}}}));
        let deny_out = tenant(json!({"podSelector": {}, "policyTypes": ["Egress"]}));
        let other = tenant(
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"]}),
        );
        let mut elsewhere = deny_out.clone();
        elsewhere.metadata.namespace = Some("other".into());
        let cases = [
            (vec![], Governed::default()),
            (
                vec![&deny_in],
                Governed {
                    ingress: true,
                    egress: false,
                },
            ),
            (
                vec![&deny_in, &deny_out],
                Governed {
                    ingress: true,
                    egress: true,
                },
            ),
            (vec![&other, &elsewhere], Governed::default()),
        ];
        for (policies, expected) in cases {
            assert_eq!(governed(&labels, "shop", policies), expected);
        }
        let bad = tenant(
            json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Bogus"}]}}),
        );
        assert!(governed(&labels, "shop", [&bad]).ingress);
    }

    #[test]
    fn host_pods_carry_their_namespace_labels_and_what_governs_them() {
        let namespace = Namespace {
            metadata: ObjectMeta {
                labels: Some(BTreeMap::from([
                    ("kubernetes.io/metadata.name".into(), "shop".into()),
                    ("team".into(), "a".into()),
                    (format!("{}/x", "p".repeat(250)), "lost".into()),
                ])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let labels = pod_labels(
            Some(&namespace),
            Governed {
                ingress: true,
                egress: false,
            },
        );
        assert_eq!(
            labels,
            BTreeMap::from([
                (
                    "kubernetes.io.ns.vnest.dev/metadata.name".into(),
                    "shop".into()
                ),
                ("ns.vnest.dev/team".into(), "a".into()),
                (pod_network::INGRESS_POLICY.into(), "true".into()),
            ])
        );
        assert!(pod_labels(None, Governed::default()).is_empty());
    }
}
