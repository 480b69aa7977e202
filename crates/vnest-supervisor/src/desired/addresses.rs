//! The names and ports by which one component's objects refer to another's:
//! the leaf of `desired`, which every other module may use and which uses
//! none of them (so no two modules import each other).

use vnest_api::VirtualCluster;
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};

/// The Secret in the control-plane namespace holding the whole PKI set.
pub const PKI_SECRET: &str = vnest_api::host_names::PKI_SECRET;

pub mod apiserver {
    use super::*;

    pub const COMPONENT: &str = vnest_api::host_names::apiserver::COMPONENT;
    pub const SECURE_PORT: i32 = vnest_api::host_names::apiserver::SECURE_PORT as i32;
    /// The Service the apiserver is reached through, and its port.
    pub const SERVICE: &str = vnest_api::host_names::apiserver::SERVICE;
    pub const SERVICE_PORT: u16 = 443;

    /// The in-cluster URL of the tenant's apiserver.
    pub fn in_cluster_url(vc: &VirtualCluster) -> String {
        format!("https://{}:{SERVICE_PORT}", in_cluster_host(vc))
    }

    /// The Service's DNS name, which the apiserver's certificate carries.
    pub fn in_cluster_host(vc: &VirtualCluster) -> String {
        let ns = host_namespace_of(vc, HostNamespaceRole::ControlPlane);
        format!("{SERVICE}.{ns}.svc")
    }
}

pub mod etcd {
    pub const COMPONENT: &str = vnest_api::host_names::etcd::COMPONENT;
    /// The headless Service etcd's members are reached through.
    pub const SERVICE: &str = vnest_api::host_names::etcd::SERVICE;
    pub const CLIENT_PORT: i32 = vnest_api::host_names::etcd::CLIENT_PORT as i32;
    pub const PEER_PORT: i32 = 2380;
    /// The copy, in the control-plane namespace, of the external etcd's
    /// client certificate Secret (pods can only mount Secrets of their own
    /// namespace).
    pub const EXTERNAL_CLIENT_SECRET: &str = "etcd-client";
}

pub mod syncer {
    use super::*;

    pub const COMPONENT: &str = vnest_api::host_names::syncer::COMPONENT;
    /// The Service the tenant apiserver reaches the kubelet proxy through.
    pub const KUBELET_PROXY_SERVICE: &str = "kubelet-proxy";
    /// The kubelet's port, served by the syncer's kubelet proxy.
    pub const KUBELET_PROXY_PORT: u16 = 10250;

    /// The kubelet proxy's host name, as the tenant's Nodes carry it and its
    /// certificate names it.
    pub fn kubelet_proxy_host(vc: &VirtualCluster) -> String {
        let ns = host_namespace_of(vc, HostNamespaceRole::ControlPlane);
        format!("{KUBELET_PROXY_SERVICE}.{ns}.svc")
    }
}
