//! The network layer of a tenant's isolation, as NetworkPolicies in its two
//! host namespaces. They take effect where the host's network plugin
//! enforces NetworkPolicy (docs/isolation.md says which threats need it).
//!
//! Workloads namespace (when `isolation.networkPolicy` is on): nothing in or
//! out, except traffic among the tenant's own pods, between them and the
//! tenant's own apiserver (which calls its webhooks, aggregated APIs and
//! pod proxies), and to addresses outside the cluster: not the host's pod
//! subnets (other tenants), nodes (kubelets), apiserver, DNS or link-local
//! addresses (cloud instance metadata). Pods that the tenant's own
//! NetworkPolicies govern get only what those allow, which the syncer keeps
//! inside the same bounds (`vnest_syncer::network_policy`).
//!
//! Control-plane namespace (always): etcd accepts only the tenant's
//! apiserver and its backup pods (clients) and its own members (peers); the syncer's kubelet
//! proxy accepts only the tenant's apiserver; the apiserver accepts
//! its own namespace, the tenant's workloads and the supervisor, plus any
//! address outside the host's pod subnets when it is exposed as a NodePort
//! or LoadBalancer (clients keep their address up to the pod when the
//! endpoint is on the node they connect to); the control plane
//! itself may not dial the host's nodes or apiserver (a tenant's webhook or
//! aggregated API pointed at them would otherwise turn its apiserver into a
//! proxy onto the host).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use vnest_api::cidr::{Cidr, without_nested};
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};
use vnest_api::pod_network::{self, WORKLOADS_EGRESS, WORKLOADS_INGRESS, WORKLOADS_ISOLATE};
use vnest_api::{ExposeType, PodSecurityLevel, VirtualCluster};

use super::addresses::etcd::{CLIENT_PORT, PEER_PORT};
use super::addresses::{apiserver, etcd, syncer};
use super::pods::{self, Settings};

const NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

/// Addresses on the host that tenant-controlled traffic must never reach:
/// every node's addresses (kubelets, node ports of other tenants) and the
/// host apiserver's endpoints. Only the tenant's syncer (vnest's own) may
/// reach the host apiserver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostAddresses {
    pub nodes: Vec<String>,
    pub apiserver: Vec<String>,
    /// The host's cluster DNS (its pods): it resolves every host Service,
    /// other tenants' included. Tenant pods have their own DNS.
    pub dns: Vec<String>,
    /// The nodes' pod subnets (`spec.podCIDRs`): every pod of the host,
    /// other tenants' included. Empty where the network plugin does not
    /// use them; then only policies that name namespaces keep pods apart.
    pub pod_cidrs: Vec<String>,
}

/// Where clouds serve instance metadata (and credentials): link-local
/// addresses (169.254.169.254 and similar), and Alibaba Cloud's
/// 100.100.100.200.
const METADATA: [&str; 2] = ["169.254.0.0/16", "100.100.100.200/32"];

impl HostAddresses {
    /// Every range tenant traffic must not reach, each once, none inside
    /// another (a DNS pod's address inside a pod subnet adds nothing).
    pub fn ranges(&self) -> Vec<Cidr> {
        let mut ranges: Vec<Cidr> = self
            .nodes
            .iter()
            .chain(&self.apiserver)
            .chain(&self.dns)
            .chain(&self.pod_cidrs)
            .filter_map(|text| text.parse().ok())
            .collect();
        ranges.extend(METADATA.iter().filter_map(|r| r.parse::<Cidr>().ok()));
        without_nested(ranges)
    }

    /// The host's pod subnets, parsed.
    pub fn pod_ranges(&self) -> Vec<Cidr> {
        without_nested(
            self.pod_cidrs
                .iter()
                .filter_map(|t| t.parse().ok())
                .collect(),
        )
    }

    /// The IPv4 ranges, as an `ipBlock` of `0.0.0.0/0` excepts them (an
    /// exception must be of the block's family).
    fn as_cidrs(&self) -> Vec<String> {
        self.ranges()
            .iter()
            .filter(|r| !r.is_ipv6())
            .map(Cidr::to_string)
            .collect()
    }
}

/// The node ports a host opens (Kubernetes' default
/// `--service-node-port-range`): tenant pods with node ports of their own
/// may dial these ports on their pool's nodes, and no other.
pub const NODE_PORTS: (i32, i32) = (30000, 32767);

/// Every NetworkPolicy of `vc`, in both host namespaces. `pool` holds the
/// addresses of the tenant's pool nodes.
pub fn network_policies(
    vc: &VirtualCluster,
    settings: &Settings,
    host: &HostAddresses,
    pool: &[String],
) -> Vec<NetworkPolicy> {
    let cp = host_namespace_of(vc, HostNamespaceRole::ControlPlane);
    let wl = host_namespace_of(vc, HostNamespaceRole::Workloads);
    let anywhere_but_host = NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: "0.0.0.0/0".to_owned(),
            except: Some(host.as_cidrs()),
        }),
        ..NetworkPolicyPeer::default()
    };
    let mut policies = vec![
        policy(
            vc,
            &cp,
            "vnest-default-deny",
            all_pods(),
            Some(Vec::new()),
            None,
        ),
        policy(
            vc,
            &cp,
            "vnest-etcd",
            component(etcd::COMPONENT),
            Some(vec![
                ingress(
                    vec![
                        pod_peer(apiserver::COMPONENT),
                        pod_peer(vnest_api::host_names::etcd_backup::COMPONENT),
                    ],
                    &[CLIENT_PORT],
                ),
                ingress(vec![pod_peer(etcd::COMPONENT)], &[PEER_PORT]),
            ]),
            None,
        ),
        policy(
            vc,
            &cp,
            "vnest-apiserver",
            component(apiserver::COMPONENT),
            Some(vec![ingress(
                apiserver_clients(vc, &cp, &wl, settings, host),
                &[apiserver::SECURE_PORT],
            )]),
            None,
        ),
        policy(
            vc,
            &cp,
            "vnest-kubelet-proxy",
            component(syncer::COMPONENT),
            Some(vec![ingress(
                vec![pod_peer(apiserver::COMPONENT)],
                &[i32::from(syncer::KUBELET_PROXY_PORT)],
            )]),
            None,
        ),
        policy(
            vc,
            &cp,
            "vnest-control-plane-egress",
            all_pods(),
            None,
            Some(vec![
                egress(vec![namespace_peer(&cp), namespace_peer(&wl)]),
                egress(vec![host_dns()]),
                egress(vec![anywhere_but_host.clone()]),
            ]),
        ),
    ];
    policies.push(policy(
        vc,
        &cp,
        "vnest-syncer-to-host-apiserver",
        component(syncer::COMPONENT),
        None,
        Some(vec![egress(ip_peers(&host.apiserver))]),
    ));
    if vc.spec.isolation.network_policy {
        policies.extend(workloads_policies(vc, &cp, &wl, anywhere_but_host, pool));
    }
    policies
}

/// The workloads namespace's fence. Every pod is isolated both ways (the
/// fail-closed base); pods no tenant NetworkPolicy governs get vnest's
/// allowances: in from the tenant's own pods, out to them, to the tenant's
/// apiserver and to anything off the host. A pod a tenant policy governs
/// (the syncer labels it, see [`pod_network`]) gets only what that policy
/// allows, which the syncer keeps inside these same bounds: so a tenant
/// policy can narrow vnest's fence and never widen it.
///
/// What the admin grants widens it, on the tenant's own pool only:
/// - node ports (the quota's `services.nodeports`): pods may dial the
///   node ports of their pool's nodes (their own Services' node ports and
///   hairpins), and take connections from outside the host and from their
///   pool's nodes (kube-proxy forwards a node port's connection from the
///   node it arrived at, under that node's address);
/// - host network (Pod Security `privileged`): pods take connections from
///   their pool's nodes, where the tenant's host-network pods are.
fn workloads_policies(
    vc: &VirtualCluster,
    cp: &str,
    wl: &str,
    anywhere_but_host: NetworkPolicyPeer,
    pool: &[String],
) -> Vec<NetworkPolicy> {
    let node_ports = has_node_ports(vc);
    let host_network = vc.spec.isolation.pod_security == PodSecurityLevel::Privileged;
    let pool_nodes = ip_peers(pool);
    // A rule per kind of peer: a network plugin may hold one rule's
    // address blocks in one set (kube-router does), where a pool node's
    // address and the same address excepted from "anywhere" would clash.
    let mut admitted = vec![NetworkPolicyIngressRule {
        from: Some(vec![namespace_peer(wl), own_apiserver(cp)]),
        ports: None,
    }];
    if (node_ports || host_network) && !pool_nodes.is_empty() {
        admitted.push(NetworkPolicyIngressRule {
            from: Some(pool_nodes.clone()),
            ports: None,
        });
    }
    if node_ports {
        admitted.push(NetworkPolicyIngressRule {
            from: Some(vec![anywhere_but_host.clone()]),
            ports: None,
        });
    }
    let mut egress_rules = vec![
        egress(vec![namespace_peer(wl)]),
        NetworkPolicyEgressRule {
            to: Some(vec![own_apiserver(cp)]),
            ports: Some(ports(&[apiserver::SECURE_PORT])),
        },
        egress(vec![anywhere_but_host]),
    ];
    if node_ports && !pool_nodes.is_empty() {
        egress_rules.push(NetworkPolicyEgressRule {
            to: Some(pool_nodes),
            ports: Some(
                ["TCP", "UDP", "SCTP"]
                    .iter()
                    .map(|protocol| NetworkPolicyPort {
                        port: Some(IntOrString::Int(NODE_PORTS.0)),
                        end_port: Some(NODE_PORTS.1),
                        protocol: Some((*protocol).to_owned()),
                    })
                    .collect(),
            ),
        });
    }
    vec![
        policy(
            vc,
            wl,
            WORKLOADS_ISOLATE,
            all_pods(),
            Some(Vec::new()),
            Some(Vec::new()),
        ),
        policy(
            vc,
            wl,
            WORKLOADS_INGRESS,
            not_governed_by(pod_network::INGRESS_POLICY),
            Some(admitted),
            None,
        ),
        policy(
            vc,
            wl,
            WORKLOADS_EGRESS,
            not_governed_by(pod_network::EGRESS_POLICY),
            None,
            Some(egress_rules),
        ),
    ]
}

/// Whether the admin granted `vc` node ports (its quota's
/// `services.nodeports` is above zero).
pub fn has_node_ports(vc: &VirtualCluster) -> bool {
    super::quota::resource_quota(vc)
        .spec
        .and_then(|spec| spec.hard)
        .and_then(|hard| hard.get("services.nodeports").cloned())
        .is_some_and(|q| !matches!(q.0.trim().parse::<u64>(), Ok(0)))
}

/// The tenant's apiserver pods (in control-plane namespace `cp`): the
/// pods' apiserver, which reaches them as a cluster's apiserver reaches its
/// pods (admission webhooks, aggregated APIs, the `pods/proxy` and
/// `services/proxy` subresources).
fn own_apiserver(cp: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(namespace_selector(cp)),
        pod_selector: Some(component(apiserver::COMPONENT)),
        ..NetworkPolicyPeer::default()
    }
}

/// Pods without label `key`.
fn not_governed_by(key: &str) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: key.to_owned(),
            operator: "DoesNotExist".to_owned(),
            values: None,
        }]),
        ..LabelSelector::default()
    }
}

fn apiserver_clients(
    vc: &VirtualCluster,
    cp: &str,
    wl: &str,
    settings: &Settings,
    host: &HostAddresses,
) -> Vec<NetworkPolicyPeer> {
    let mut peers = vec![
        namespace_peer(cp),
        namespace_peer(wl),
        namespace_peer(&settings.supervisor_namespace),
    ];
    if vc.spec.control_plane.expose.type_ != ExposeType::ClusterIP {
        // Clients outside the cluster, whatever their address (a node port
        // with a local endpoint and a load balancer keep it), but no pod:
        // another tenant's pods are no outside clients.
        peers.push(NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: "0.0.0.0/0".to_owned(),
                except: (!host.pod_cidrs.is_empty()).then(|| host.pod_cidrs.clone()),
            }),
            ..NetworkPolicyPeer::default()
        });
    }
    peers
}

/// A peer per range of `addresses` (addresses or CIDRs; unreadable ones
/// left out), none inside another.
fn ip_peers(addresses: &[String]) -> Vec<NetworkPolicyPeer> {
    without_nested(addresses.iter().filter_map(|a| a.parse().ok()).collect())
        .iter()
        .map(|range| ip_peer(range.to_string()))
        .collect()
}

fn ip_peer(cidr: String) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock { cidr, except: None }),
        ..NetworkPolicyPeer::default()
    }
}

/// A policy of the given kinds: `Some(rules)` makes it an Ingress or Egress
/// policy allowing those rules (`Some(vec![])` allows nothing).
fn policy(
    vc: &VirtualCluster,
    namespace: &str,
    name: &str,
    pod_selector: LabelSelector,
    ingress: Option<Vec<NetworkPolicyIngressRule>>,
    egress: Option<Vec<NetworkPolicyEgressRule>>,
) -> NetworkPolicy {
    let mut types = Vec::new();
    if ingress.is_some() {
        types.push("Ingress".to_owned());
    }
    if egress.is_some() {
        types.push("Egress".to_owned());
    }
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(pods::owner_labels(vc)),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pod_selector),
            ingress,
            egress,
            policy_types: Some(types),
        }),
    }
}

fn all_pods() -> LabelSelector {
    LabelSelector::default()
}

fn component(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(pods::selector(name)),
        ..LabelSelector::default()
    }
}

fn namespace_selector(namespace: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            NAMESPACE_NAME.to_owned(),
            namespace.to_owned(),
        )])),
        ..LabelSelector::default()
    }
}

fn namespace_peer(namespace: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(namespace_selector(namespace)),
        ..NetworkPolicyPeer::default()
    }
}

fn pod_peer(component_name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(component(component_name)),
        ..NetworkPolicyPeer::default()
    }
}

/// The host's cluster DNS (the control plane resolves Service names).
fn host_dns() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(namespace_selector("kube-system")),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "k8s-app".to_owned(),
                "kube-dns".to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

fn ports(numbers: &[i32]) -> Vec<NetworkPolicyPort> {
    numbers
        .iter()
        .map(|p| NetworkPolicyPort {
            port: Some(IntOrString::Int(*p)),
            protocol: Some("TCP".to_owned()),
            ..NetworkPolicyPort::default()
        })
        .collect()
}

fn ingress(from: Vec<NetworkPolicyPeer>, port_numbers: &[i32]) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: Some(from),
        ports: Some(ports(port_numbers)),
    }
}

fn egress(to: Vec<NetworkPolicyPeer>) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(to),
        ports: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn vc() -> VirtualCluster {
        let mut vc = VirtualCluster::new("a", Default::default());
        vc.metadata.namespace = Some("t".into());
        vc
    }

    fn named<'a>(policies: &'a [NetworkPolicy], name: &str) -> &'a NetworkPolicySpec {
        policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .and_then(|p| p.spec.as_ref())
            .unwrap()
    }

    #[test]
    fn etcd_admits_only_its_apiserver_its_backups_and_its_members() {
        let policies =
            network_policies(&vc(), &Settings::default(), &HostAddresses::default(), &[]);
        let etcd = named(&policies, "vnest-etcd");
        let ingress = etcd.ingress.as_ref().unwrap();
        assert_eq!(ingress.len(), 2);
        for rule in ingress {
            for peer in rule.from.as_ref().unwrap() {
                assert!(peer.namespace_selector.is_none() && peer.ip_block.is_none());
            }
        }
    }

    #[test]
    fn workloads_may_not_dial_other_pods_host_nodes_apiserver_dns_or_metadata() {
        let host = HostAddresses {
            nodes: vec!["172.30.0.10".into()],
            apiserver: vec!["172.30.0.1".into()],
            dns: vec!["10.244.1.5".into()],
            pod_cidrs: vec!["10.244.0.0/16".into()],
        };
        let policies = network_policies(&vc(), &Settings::default(), &host, &[]);
        let workloads = named(&policies, WORKLOADS_EGRESS);
        let except = workloads
            .egress
            .as_ref()
            .unwrap()
            .iter()
            .flat_map(|r| r.to.clone().unwrap())
            .find_map(|p| p.ip_block)
            .unwrap()
            .except
            .unwrap();
        // The DNS pod is inside the pod subnet: listed once, as the subnet.
        assert_eq!(
            except,
            [
                "10.244.0.0/16",
                "100.100.100.200/32",
                "169.254.0.0/16",
                "172.30.0.1/32",
                "172.30.0.10/32"
            ]
        );
    }

    #[test]
    fn turning_network_policy_off_removes_only_the_workloads_policies() {
        let mut vc = vc();
        let on = network_policies(&vc, &Settings::default(), &HostAddresses::default(), &[]);
        vc.spec.isolation.network_policy = false;
        let off = network_policies(&vc, &Settings::default(), &HostAddresses::default(), &[]);
        assert_eq!(on.len(), off.len() + 3);
        assert!(off.iter().all(|p| {
            !pod_network::WORKLOADS_POLICIES
                .contains(&p.metadata.name.as_deref().unwrap_or_default())
        }));
    }

    #[test]
    fn every_workload_is_isolated_and_vnest_allows_only_what_no_tenant_policy_governs() {
        let policies =
            network_policies(&vc(), &Settings::default(), &HostAddresses::default(), &[]);
        let base = named(&policies, WORKLOADS_ISOLATE);
        assert_eq!(base.pod_selector, Some(LabelSelector::default()));
        assert_eq!(base.ingress.as_deref(), Some(&[][..]));
        assert_eq!(base.egress.as_deref(), Some(&[][..]));
        assert_eq!(
            base.policy_types.as_deref(),
            Some(&["Ingress".to_owned(), "Egress".to_owned()][..])
        );
        // In: the tenant's pods and its apiserver, nothing else.
        let from = named(&policies, WORKLOADS_INGRESS).ingress.clone().unwrap()[0]
            .from
            .clone()
            .unwrap();
        assert_eq!(from.len(), 2);
        assert_eq!(from[1].pod_selector, Some(component(apiserver::COMPONENT)));
        assert!(from[1].namespace_selector.is_some());
        for (name, key) in [
            (WORKLOADS_INGRESS, pod_network::INGRESS_POLICY),
            (WORKLOADS_EGRESS, pod_network::EGRESS_POLICY),
        ] {
            let selector = named(&policies, name).pod_selector.clone().unwrap();
            let requirement = &selector.match_expressions.unwrap()[0];
            assert_eq!(
                (requirement.key.as_str(), requirement.operator.as_str()),
                (key, "DoesNotExist")
            );
        }
    }

    #[test]
    fn node_ports_and_host_network_open_the_fence_to_the_pool_only() {
        let host = HostAddresses {
            nodes: vec!["172.30.0.10".into(), "172.30.0.11".into()],
            ..HostAddresses::default()
        };
        let pool = ["172.30.0.10".to_owned()];
        let fence = |vc: &VirtualCluster| {
            let policies = network_policies(vc, &Settings::default(), &host, &pool);
            let rules = named(&policies, WORKLOADS_INGRESS).ingress.clone().unwrap();
            // Each kind of peer in a rule of its own.
            assert!(rules.iter().all(|rule| {
                let from = rule.from.as_ref().unwrap();
                from.iter().all(|p| p.ip_block.is_some())
                    || from.iter().all(|p| p.ip_block.is_none())
            }));
            // A block with exceptions shares its rule with no other block.
            assert!(rules.iter().all(|rule| {
                let from = rule.from.as_ref().unwrap();
                let excepting = from
                    .iter()
                    .any(|p| p.ip_block.as_ref().is_some_and(|b| b.except.is_some()));
                !excepting || from.len() == 1
            }));
            let blocks: Vec<String> = rules
                .iter()
                .flat_map(|rule| rule.from.clone().unwrap())
                .filter_map(|p| p.ip_block.as_ref().map(|b| b.cidr.clone()))
                .collect();
            let egress = named(&policies, WORKLOADS_EGRESS).egress.clone().unwrap();
            (blocks, egress)
        };

        let (admitted, egress) = fence(&vc());
        assert!(admitted.is_empty(), "by default no address: {admitted:?}");
        assert_eq!(egress.len(), 3);

        let mut granted = vc();
        granted
            .spec
            .isolation
            .resource_quota
            .insert("services.nodeports".into(), Quantity("5".into()));
        assert!(has_node_ports(&granted));
        let (admitted, egress) = fence(&granted);
        assert_eq!(
            admitted,
            ["172.30.0.10/32", "0.0.0.0/0"],
            "the pool's node (forwarded node-port connections) and outside clients"
        );
        let to_nodes = egress.last().unwrap();
        assert_eq!(
            to_nodes.to.as_ref().unwrap()[0]
                .ip_block
                .as_ref()
                .unwrap()
                .cidr,
            "172.30.0.10/32",
            "the pool's nodes only"
        );
        for port in to_nodes.ports.as_ref().unwrap() {
            assert_eq!(
                (port.port.clone(), port.end_port),
                (Some(IntOrString::Int(30000)), Some(32767)),
                "node ports only, no kubelet"
            );
        }

        let mut privileged = vc();
        privileged.spec.isolation.pod_security = PodSecurityLevel::Privileged;
        assert!(!has_node_ports(&privileged));
        let (admitted, egress) = fence(&privileged);
        assert_eq!(admitted, ["172.30.0.10/32"], "its host-network pods");
        assert_eq!(egress.len(), 3);
    }

    #[test]
    fn host_ranges_leave_out_what_another_range_holds() {
        let host = HostAddresses {
            nodes: vec![
                "172.30.0.10".into(),
                "172.30.0.10".into(),
                "fd00::10".into(),
            ],
            apiserver: vec!["172.30.0.1".into()],
            dns: vec!["10.244.1.5".into()],
            pod_cidrs: vec!["10.244.1.0/24".into(), "bogus".into()],
        };
        let ranges: Vec<String> = host.ranges().iter().map(Cidr::to_string).collect();
        assert_eq!(
            ranges,
            [
                "10.244.1.0/24",
                "100.100.100.200/32",
                "169.254.0.0/16",
                "172.30.0.1/32",
                "172.30.0.10/32",
                "fd00::10/128"
            ]
        );
        let pods: Vec<String> = host.pod_ranges().iter().map(Cidr::to_string).collect();
        assert_eq!(pods, ["10.244.1.0/24"]);
    }

    #[test]
    fn an_exposed_apiserver_admits_outside_clients_but_no_pod() {
        let host = HostAddresses {
            nodes: vec!["172.30.0.11".into()],
            apiserver: vec!["172.30.0.1".into()],
            dns: Vec::new(),
            pod_cidrs: vec!["10.244.1.0/24".into(), "10.244.2.0/24".into()],
        };
        let blocks = |type_: ExposeType| {
            let mut vc = vc();
            vc.spec.control_plane.expose.type_ = type_;
            let policies = network_policies(&vc, &Settings::default(), &host, &[]);
            named(&policies, "vnest-apiserver")
                .ingress
                .as_ref()
                .unwrap()[0]
                .from
                .as_ref()
                .unwrap()
                .iter()
                .filter_map(|p| p.ip_block.clone())
                .collect::<Vec<_>>()
        };
        assert!(blocks(ExposeType::ClusterIP).is_empty());
        for exposed in [ExposeType::NodePort, ExposeType::LoadBalancer] {
            let blocks = blocks(exposed);
            assert_eq!(blocks.len(), 1);
            assert_eq!(blocks[0].cidr, "0.0.0.0/0");
            assert_eq!(
                blocks[0].except.as_deref().unwrap(),
                ["10.244.1.0/24", "10.244.2.0/24"]
            );
        }
    }
}
