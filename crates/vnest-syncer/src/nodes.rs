//! The tenant sees the nodes of its pool, and only those: each host node
//! matching the pool's selector appears in the tenant as a Node of the same
//! name, labels and status, its heartbeat renewed while the host node is
//! Ready (the tenant's node lifecycle controller would otherwise evict its
//! pods). Nodes that leave the pool leave the tenant.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeDaemonEndpoints, NodeStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::json;

use crate::context::Syncer;
use crate::error::{OnSide, Result, Side};

/// Label on the tenant's copies of host nodes.
pub const VIRTUAL_NODE: &str = "vnest.dev/virtual-node";
/// How often node status (and heartbeat) is mirrored: well inside the
/// tenant controller-manager's 40 s node-monitor grace period.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// The pool's host nodes now; also what the policy knows of the pool and
/// of every node's addresses (which endpoints may not name).
pub async fn refresh_pool(syncer: &Syncer) -> Result<Vec<Node>> {
    let host: Api<Node> = Api::all(syncer.host.clone());
    let all = host
        .list(&ListParams::default())
        .await
        .on(Side::Host)?
        .items;
    let addresses: BTreeSet<IpAddr> = all
        .iter()
        .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
        .flatten()
        .filter_map(|a| a.address.parse().ok())
        .collect();
    syncer.set_node_addresses(addresses);
    let selector = &syncer.settings.pool_selector;
    let nodes: Vec<Node> = all
        .into_iter()
        .filter(|n| {
            let labels = n.metadata.labels.as_ref();
            selector
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .collect();
    let resources = nodes
        .iter()
        .filter_map(|n| {
            // A node with no status yet is in the pool all the same.
            let allocatable = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
            Some((
                n.metadata.name.clone()?,
                allocatable
                    .into_iter()
                    .flat_map(|a| a.keys().cloned())
                    .collect(),
            ))
        })
        .collect();
    syncer.set_pool_nodes(resources);
    Ok(nodes)
}

/// Mirrors the pool into the tenant every [`HEARTBEAT`] until shutdown.
pub async fn run(syncer: Arc<Syncer>) {
    loop {
        if let Err(error) = mirror_pool(&syncer).await {
            tracing::warn!(%error, "mirroring the node pool failed");
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}

async fn mirror_pool(syncer: &Syncer) -> Result<()> {
    let pool = refresh_pool(syncer).await?;
    let tenant: Api<Node> = Api::all(syncer.tenant.clone());
    let names: BTreeSet<String> = pool
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let mirrored = tenant
        .list(&ListParams::default().labels(&format!("{VIRTUAL_NODE}=true")))
        .await
        .on(Side::Tenant)?;
    for node in mirrored {
        let Some(name) = node.metadata.name else {
            continue;
        };
        if !names.contains(&name) {
            tracing::info!(node = name, "left the pool; removing it from the tenant");
            tenant
                .delete(&name, &DeleteParams::default())
                .await
                .on(Side::Tenant)?;
        }
    }
    for node in &pool {
        upsert(syncer, node).await?;
    }
    syncer.set_host_node_labels(
        pool.iter()
            .filter_map(|n| {
                Some((
                    n.metadata.name.clone()?,
                    n.metadata.labels.clone().unwrap_or_default(),
                ))
            })
            .collect(),
    );
    Ok(())
}

/// Keeps the labels of the tenant's node copies in `syncer` as the tenant
/// changes them (`kubectl label node`, [`crate::node_selection`]); yields
/// once per change of a copy's labels, never for its status (the
/// heartbeats).
pub fn tenant_label_changes(
    syncer: Arc<Syncer>,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    let api: Api<PartialObjectMeta<Node>> = Api::all(syncer.tenant.clone());
    let copies = watcher::Config::default().labels(&format!("{VIRTUAL_NODE}=true"));
    watcher(api, copies)
        .default_backoff()
        .filter_map(move |event| {
            let changed = match event {
                Ok(Event::Apply(node) | Event::InitApply(node)) => {
                    let mut labels = node.metadata.labels.unwrap_or_default();
                    labels.remove(VIRTUAL_NODE);
                    syncer.set_tenant_node_labels(
                        node.metadata.name.unwrap_or_default(),
                        Some(labels),
                    )
                }
                Ok(Event::Delete(node)) => {
                    syncer.set_tenant_node_labels(node.metadata.name.unwrap_or_default(), None)
                }
                Ok(Event::Init | Event::InitDone) => false,
                Err(error) => {
                    tracing::warn!(%error, "watching the tenant's nodes failed");
                    false
                }
            };
            futures::future::ready(changed.then_some(()))
        })
}

/// Makes sure the tenant has host node `name` (if it is in the pool).
pub async fn ensure_tenant_node(syncer: &Syncer, name: &str) -> Result<()> {
    // Known from the watch of the tenant's node copies: nothing to ask.
    if syncer.tenant_has_node(name) {
        return Ok(());
    }
    let tenant: Api<Node> = Api::all(syncer.tenant.clone());
    if tenant.get_opt(name).await.on(Side::Tenant)?.is_some() {
        return Ok(());
    }
    let host: Api<Node> = Api::all(syncer.host.clone());
    let node = host.get(name).await.on(Side::Host)?;
    upsert(syncer, &node).await
}

async fn upsert(syncer: &Syncer, host_node: &Node) -> Result<()> {
    let Some(name) = host_node.metadata.name.clone() else {
        return Ok(());
    };
    let tenant: Api<Node> = Api::all(syncer.tenant.clone());
    let mut labels: BTreeMap<String, String> =
        host_node.metadata.labels.clone().unwrap_or_default();
    labels.insert(VIRTUAL_NODE.to_owned(), "true".to_owned());
    if tenant.get_opt(&name).await.on(Side::Tenant)?.is_none() {
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        tenant
            .create(&PostParams::default(), &node)
            .await
            .on(Side::Tenant)?;
    }
    let mut status = host_node.status.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    for condition in status.conditions.iter_mut().flatten() {
        condition.last_heartbeat_time = Some(now.clone());
    }
    // Images and volumes of the host node are not the tenant's business.
    status.images = None;
    status.volumes_attached = None;
    status.volumes_in_use = None;
    if let Some((host, port)) = &syncer.settings.kubelet_endpoint {
        advertise_kubelet(&mut status, host, *port);
    }
    tenant
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await
        .on(Side::Tenant)?;
    Ok(())
}

/// The tenant apiserver reaches a node's kubelet at its `Hostname` address
/// (the only type it is told to prefer) and the kubelet endpoint's port:
/// both name the kubelet proxy. The node's IPs stay as the host reports
/// them (tenant pods see their host IP anyway).
fn advertise_kubelet(status: &mut NodeStatus, host: &str, port: u16) {
    let mut addresses: Vec<NodeAddress> = status
        .addresses
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.type_ != "Hostname")
        .collect();
    addresses.push(NodeAddress {
        type_: "Hostname".to_owned(),
        address: host.to_owned(),
    });
    status.addresses = Some(addresses);
    status.daemon_endpoints = Some(NodeDaemonEndpoints {
        kubelet_endpoint: Some(DaemonEndpoint {
            port: i32::from(port),
        }),
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_kubelet_a_tenant_sees_is_the_proxy() {
        let mut status = NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: "10.0.0.7".into(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: "node7".into(),
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: 10257 }),
            }),
            ..NodeStatus::default()
        };
        advertise_kubelet(&mut status, "kubelet-proxy.t-cp.svc", 10250);
        let addresses = status.addresses.unwrap();
        let hostnames: Vec<&str> = addresses
            .iter()
            .filter(|a| a.type_ == "Hostname")
            .map(|a| a.address.as_str())
            .collect();
        assert_eq!(hostnames, ["kubelet-proxy.t-cp.svc"]);
        assert!(addresses.iter().any(|a| a.address == "10.0.0.7"));
        assert_eq!(
            status
                .daemon_endpoints
                .unwrap()
                .kubelet_endpoint
                .unwrap()
                .port,
            10250
        );
    }
}
