//! What a tenant's pool nodes enforce by themselves. A pod's process limit
//! is no pod field: it is the kubelet's `podPidsLimit`, node configuration,
//! so the supervisor reads each pool node's effective kubelet configuration
//! (`/configz` on the kubelet, which Kubernetes ≥ 1.36 authorizes as
//! `nodes/configz` alone — not `nodes/proxy`, which would also allow exec)
//! and reports whether `spec.isolation.pidLimit` holds there.

use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client};
use vnest_api::VirtualCluster;

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

    /// The pool nodes of `vc` and each one's `podPidsLimit`.
    pub async fn pid_limits(
        &self,
        client: &Client,
        vc: &VirtualCluster,
    ) -> Result<Vec<NodePidLimit>, kube::Error> {
        let selector = vc
            .spec
            .node_pool
            .node_selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default().labels(&selector))
            .await?;
        let mut limits = Vec::new();
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            limits.push((name, self.pod_pids_limit(&node).await));
        }
        Ok(limits)
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
    use super::*;
    use serde_json::json;

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
