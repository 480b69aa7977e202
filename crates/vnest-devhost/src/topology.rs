//! The fixed addresses and names of the development host: pure data, so the
//! network, the nodes and the tests agree on them.

use std::net::Ipv4Addr;

/// The bridge in the machine's network namespace that every node hangs off.
pub const BRIDGE: &str = "vnest-br0";
/// The bridge's address: where the apiserver listens for nodes and pods.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);
pub const NODE_SUBNET_PREFIX: u8 = 24;
/// All pods; each node gets a /24 of it.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The ClusterIP of CoreDNS, inside vnest-local's service CIDR 10.96.0.0/12.
pub const DNS_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// The control plane's cluster domain (vnest-local's, which the host
/// runs).
pub use vnest_api::CLUSTER_DOMAIN;
/// At most this many nodes (their addresses and pod subnets are numbered).
pub const MAX_NODES: u8 = 50;

/// One node of the host: a network namespace with its own containerd,
/// kubelet and kube-proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// 1-based.
    pub index: u8,
    /// Labels the kubelet registers the node with (e.g. a pool).
    pub labels: Vec<(String, String)>,
    /// The kubelet's `podPidsLimit`: at most this many processes in any
    /// one pod on this node (Kubernetes has no per-pod field for it).
    pub pod_pids_limit: u32,
}

/// Processes per pod when a node is given no other limit.
pub const DEFAULT_POD_PIDS_LIMIT: u32 = 4096;

impl NodeSpec {
    pub fn new(index: u8) -> Self {
        Self {
            index,
            labels: Vec::new(),
            pod_pids_limit: DEFAULT_POD_PIDS_LIMIT,
        }
    }
    /// The Kubernetes node name and the network namespace's name.
    pub fn name(&self) -> String {
        format!("vnest-node{}", self.index)
    }
    /// The host side of the node's veth pair (15 characters at most).
    pub fn host_veth(&self) -> String {
        format!("vnest-v{}", self.index)
    }
    pub fn ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(172, 30, 0, 10 + self.index)
    }
    pub fn pod_cidr(&self) -> String {
        format!("10.244.{}.0/24", self.index)
    }
    /// The bridge pods of this node attach to, inside the node's namespace.
    pub fn pod_bridge(&self) -> &'static str {
        "cni0"
    }
    /// The cgroup (in every v1 hierarchy) the node's pods live under.
    pub fn cgroup_root(&self) -> String {
        format!("/{}", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_distinct_names_addresses_and_pod_subnets() {
        let a = NodeSpec::new(1);
        let b = NodeSpec::new(2);
        assert_eq!(a.name(), "vnest-node1");
        assert_eq!(a.ip(), Ipv4Addr::new(172, 30, 0, 11));
        assert_eq!(b.pod_cidr(), "10.244.2.0/24");
        assert_ne!(a.host_veth(), b.host_veth());
        assert!(NodeSpec::new(MAX_NODES).host_veth().len() <= 15);
        assert!(u16::from(MAX_NODES) + 10 < 255);
    }
}
