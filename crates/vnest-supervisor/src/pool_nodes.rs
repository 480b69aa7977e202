//! A tenant's pool on the host: which nodes it has, which other
//! VirtualClusters' pools take the same nodes (a Dedicated pool must have
//! its own), and what the nodes enforce by themselves. A pod's process
//! limit is no pod field: it is the kubelet's `podPidsLimit`, node
//! configuration, so the supervisor reads each pool node's effective kubelet
//! configuration (`/configz` on the kubelet, which Kubernetes ≥ 1.36
//! authorizes as `nodes/configz` alone — not `nodes/proxy`, which would also
//! allow exec) and reports whether `spec.isolation.pidLimit` holds there.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::{Client, ResourceExt};
use vnest_api::VirtualCluster;

/// The host's nodes and every VirtualCluster's pool, as read once.
#[derive(Clone, Debug, Default)]
pub struct Pools {
    pub nodes: Vec<Node>,
    /// `namespace/name` and node selector of every VirtualCluster.
    pub pools: Vec<(String, BTreeMap<String, String>)>,
}

impl Pools {
    /// The pools of `virtual_clusters` (every one, as listed) over `nodes`
    /// (the host's, as listed).
    pub fn new(nodes: Vec<Node>, virtual_clusters: &[VirtualCluster]) -> Self {
        let pools = virtual_clusters
            .iter()
            .filter(|vc| vc.metadata.deletion_timestamp.is_none())
            .map(|vc| (key(vc), vc.spec.node_pool.node_selector.clone()))
            .collect();
        Self { nodes, pools }
    }

    /// The nodes `selector` picks.
    pub fn members(&self, selector: &BTreeMap<String, String>) -> Vec<&Node> {
        self.nodes
            .iter()
            .filter(|node| {
                let labels = node.labels();
                !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect()
    }

    /// Every other VirtualCluster whose pool takes some of `vc`'s nodes,
    /// with those nodes.
    pub fn shared_with(&self, vc: &VirtualCluster) -> Vec<(String, Vec<String>)> {
        let own: Vec<String> = self
            .members(&vc.spec.node_pool.node_selector)
            .iter()
            .map(|n| n.name_any())
            .collect();
        self.others_on(vc, &own)
    }

    /// Every other VirtualCluster whose pool takes some of `nodes`, with
    /// those nodes.
    pub fn others_on(&self, vc: &VirtualCluster, nodes: &[String]) -> Vec<(String, Vec<String>)> {
        let me = key(vc);
        self.pools
            .iter()
            .filter(|(other, _)| *other != me)
            .filter_map(|(other, selector)| {
                let theirs: Vec<String> = self
                    .members(selector)
                    .iter()
                    .map(|n| n.name_any())
                    .filter(|n| nodes.contains(n))
                    .collect();
                (!theirs.is_empty()).then(|| (other.clone(), theirs))
            })
            .collect()
    }
}

/// The addresses of `nodes` (internal and external).
pub fn addresses(nodes: &[&Node]) -> Vec<String> {
    let mut addresses: Vec<String> = nodes
        .iter()
        .filter_map(|node| node.status.as_ref()?.addresses.as_ref())
        .flatten()
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .map(|a| a.address.clone())
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

fn key(vc: &VirtualCluster) -> String {
    format!("{}/{}", vc.namespace().unwrap_or_default(), vc.name_any())
}

/// Reads kubelets' configuration with the supervisor's own identity.
#[derive(Clone)]
pub struct KubeletConfigs {
    config: kube::Config,
}

/// One pool node's process limit: `Ok(None)` when it sets none.
pub type NodePidLimit = (String, Result<Option<i64>, String>);

impl KubeletConfigs {
    /// `config` is how the supervisor reaches its host (its credentials and
    /// the CA that kubelet serving certificates are checked against).
    pub fn new(config: kube::Config) -> Self {
        Self { config }
    }

    /// Each of `nodes` with its `podPidsLimit`.
    pub async fn pid_limits(&self, nodes: &[&Node]) -> Vec<NodePidLimit> {
        let mut limits = Vec::new();
        for node in nodes {
            limits.push((node.name_any(), self.pod_pids_limit(node).await));
        }
        limits
    }

    async fn pod_pids_limit(&self, node: &Node) -> Result<Option<i64>, String> {
        let status = node.status.as_ref().ok_or("the node has no status")?;
        let address = status
            .addresses
            .iter()
            .flatten()
            .find(|a| a.type_ == "InternalIP")
            .ok_or("the node has no InternalIP")?;
        let port = status
            .daemon_endpoints
            .as_ref()
            .and_then(|d| d.kubelet_endpoint.as_ref())
            .map_or(10250, |e| e.port);
        let host = if address.address.contains(':') {
            format!("[{}]", address.address)
        } else {
            address.address.clone()
        };
        let mut config = self.config.clone();
        config.cluster_url = format!("https://{host}:{port}")
            .parse()
            .map_err(|e| format!("kubelet address: {e}"))?;
        config.tls_server_name = None;
        let kubelet = Client::try_from(config).map_err(|e| e.to_string())?;
        let request = http::Request::get("/configz")
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        let reply: serde_json::Value =
            tokio::time::timeout(std::time::Duration::from_secs(5), kubelet.request(request))
                .await
                .map_err(|_| "the kubelet did not answer within 5s".to_owned())?
                .map_err(|e| format!("reading the kubelet's /configz: {e}"))?;
        pod_pids_limit_of(&reply)
    }
}

/// `podPidsLimit` from a kubelet's `/configz` answer; -1 and 0 mean none.
pub fn pod_pids_limit_of(configz: &serde_json::Value) -> Result<Option<i64>, String> {
    let config = configz
        .get("kubeletconfig")
        .ok_or("the kubelet's /configz has no kubeletconfig")?;
    Ok(config
        .get("podPidsLimit")
        .and_then(serde_json::Value::as_i64)
        .filter(|limit| *limit > 0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn node(name: &str, pool: &str) -> Node {
        serde_json::from_value(json!({ "metadata": { "name": name, "labels": { "pool": pool } } }))
            .unwrap()
    }

    fn vc(namespace: &str, name: &str, pool: &str) -> VirtualCluster {
        let mut vc = VirtualCluster::new(name, Default::default());
        vc.metadata.namespace = Some(namespace.into());
        vc.spec.node_pool.node_selector = BTreeMap::from([("pool".to_owned(), pool.to_owned())]);
        vc
    }

    #[test]
    fn pools_that_take_the_same_nodes_are_named_with_those_nodes() {
        let a = vc("t", "a", "x");
        let pools = Pools {
            nodes: vec![node("n1", "x"), node("n2", "y")],
            pools: [vc("t", "a", "x"), vc("t", "b", "x"), vc("u", "c", "y")]
                .iter()
                .map(|v| (key(v), v.spec.node_pool.node_selector.clone()))
                .collect(),
        };
        assert_eq!(
            pools.shared_with(&a),
            [("t/b".to_owned(), vec!["n1".to_owned()])]
        );
        assert!(pools.shared_with(&vc("u", "c", "y")).is_empty());
        // An empty selector picks no node (the schema refuses it for
        // Dedicated pools).
        assert!(pools.members(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn the_limit_comes_from_the_kubelet_configuration() {
        let read = |v| pod_pids_limit_of(&v);
        assert_eq!(
            read(json!({ "kubeletconfig": { "podPidsLimit": 256 } })),
            Ok(Some(256))
        );
        assert_eq!(
            read(json!({ "kubeletconfig": { "podPidsLimit": -1 } })),
            Ok(None)
        );
        assert_eq!(read(json!({ "kubeletconfig": {} })), Ok(None));
        assert!(read(json!({ "other": {} })).is_err());
    }
}
