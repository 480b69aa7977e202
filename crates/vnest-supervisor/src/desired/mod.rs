//! What the host should hold for one VirtualCluster, as pure functions.

pub mod addresses;
pub mod apiserver;
pub mod backup;
pub mod certificates;
pub mod controller_manager;
pub mod datastore;
pub mod flow_control;
pub mod host_state;
pub mod kube_component;
pub mod kubeconfig;
pub mod namespaces;
pub mod network_policy;
pub mod pods;
pub mod quota;
pub mod resources;
pub mod scheduler;
pub mod syncer;
pub mod syncer_rbac;
pub mod upgrade;

/// VirtualCluster `tenants/team-a` with the default spec: what the tests of
/// `desired` start from.
#[cfg(test)]
pub(crate) fn test_cluster() -> vnest_api::VirtualCluster {
    let mut vc = vnest_api::VirtualCluster::new("team-a", Default::default());
    vc.metadata.namespace = Some("tenants".into());
    vc
}
