//! What the supervisor reads of the host itself: where nodes are (the
//! NodePort endpoint of a tenant apiserver, and addresses tenant traffic
//! must never reach), where the host apiserver and the host's DNS are.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::desired::network_policy::HostAddresses;

#[derive(Clone, Debug, Default)]
pub struct HostFacts {
    /// InternalIP addresses of Ready nodes, those that take any pod
    /// (schedulable, no NoSchedule or NoExecute taint) first: a node port
    /// is advertised on one of them.
    pub node_addresses: Vec<String>,
    /// Every node address and every host apiserver endpoint.
    pub forbidden: HostAddresses,
    /// The nodes as listed (the pools are read from them too).
    pub nodes: Vec<Node>,
}

pub async fn observe(client: &Client) -> Result<HostFacts, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut facts = HostFacts::default();
    let mut preferred = Vec::new();
    let mut others = Vec::new();
    let nodes = nodes.list(&ListParams::default()).await?.items;
    for node in &nodes {
        let spec = node.spec.as_ref();
        facts
            .forbidden
            .pod_cidrs
            .extend(spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default());
        let open = spec.is_none_or(|spec| {
            spec.unschedulable != Some(true)
                && spec
                    .taints
                    .iter()
                    .flatten()
                    .all(|t| t.effect != "NoSchedule" && t.effect != "NoExecute")
        });
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        for address in status
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
        {
            if ready && address.type_ == "InternalIP" {
                let list = if open { &mut preferred } else { &mut others };
                list.push(address.address.clone());
            }
            if address.type_ == "InternalIP" || address.type_ == "ExternalIP" {
                facts.forbidden.nodes.push(address.address.clone());
            }
        }
    }
    facts.nodes = nodes;
    facts.forbidden.apiserver = endpoint_addresses(client, "default", "kubernetes").await?;
    // The host's cluster DNS answers for every host Service (other
    // tenants' included, by reverse lookup too).
    facts.forbidden.dns = endpoint_addresses(client, "kube-system", "kube-dns").await?;
    facts.forbidden.pod_cidrs.sort();
    facts.forbidden.pod_cidrs.dedup();
    preferred.sort();
    others.sort();
    facts.node_addresses = preferred.into_iter().chain(others).collect();
    Ok(facts)
}

/// The addresses behind Service `namespace/service`, from its EndpointSlices.
async fn endpoint_addresses(
    client: &Client,
    namespace: &str,
    service: &str,
) -> Result<Vec<String>, kube::Error> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let ours = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    Ok(slices
        .list(&ours)
        .await?
        .into_iter()
        .flat_map(|slice| slice.endpoints.into_iter().flatten())
        .flat_map(|endpoint| endpoint.addresses)
        .collect())
}
