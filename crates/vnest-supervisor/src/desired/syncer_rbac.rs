//! The host identity of a tenant's syncer: a ServiceAccount in the tenant's
//! control-plane namespace, bound to the `vnest-syncer` ClusterRole
//! (manifests/supervisor/syncer-rbac.yaml) in the tenant's workloads
//! namespace only, and to `vnest-syncer-nodes` (read nodes) cluster-wide. A RoleBinding grants the role's rights in its own
//! namespace alone, so one tenant's syncer can touch no other tenant's
//! objects. The supervisor may bind those two roles and no other (`bind`
//! with resourceNames), so it cannot hand out rights it does not mean to.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use kube::api::ObjectMeta;
use vnest_api::VirtualCluster;
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};

use super::pods;

/// The ServiceAccount and the ClusterRole it is bound to.
pub const SYNCER: &str = "vnest-syncer";
/// The ClusterRole that lets a syncer read nodes (to mirror its pool).
pub const NODE_READER: &str = "vnest-syncer-nodes";

pub fn service_account(vc: &VirtualCluster) -> ServiceAccount {
    ServiceAccount {
        metadata: pods::control_plane_meta(vc, SYNCER, "syncer"),
        ..ServiceAccount::default()
    }
}

fn subject(vc: &VirtualCluster) -> Subject {
    Subject {
        kind: "ServiceAccount".to_owned(),
        name: SYNCER.to_owned(),
        namespace: Some(host_namespace_of(vc, HostNamespaceRole::ControlPlane)),
        ..Subject::default()
    }
}

fn role_ref(name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
        kind: "ClusterRole".to_owned(),
        name: name.to_owned(),
    }
}

/// The name of the tenant's node-reading ClusterRoleBinding (cluster-scoped,
/// so the supervisor deletes it itself when the tenant goes).
pub fn node_reader_binding_name(vc: &VirtualCluster) -> String {
    format!(
        "{NODE_READER}-{}",
        host_namespace_of(vc, HostNamespaceRole::ControlPlane)
    )
}

/// Reading nodes (the only cluster-wide right a syncer has).
pub fn node_reader_binding(vc: &VirtualCluster) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(node_reader_binding_name(vc)),
            labels: Some(pods::component_labels(vc, "syncer")),
            ..ObjectMeta::default()
        },
        role_ref: role_ref(NODE_READER),
        subjects: Some(vec![subject(vc)]),
    }
}

/// The syncer's rights in the workloads namespace.
pub fn role_binding(vc: &VirtualCluster) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(SYNCER.to_owned()),
            namespace: Some(host_namespace_of(vc, HostNamespaceRole::Workloads)),
            labels: Some(pods::component_labels(vc, "syncer")),
            ..ObjectMeta::default()
        },
        role_ref: role_ref(SYNCER),
        subjects: Some(vec![subject(vc)]),
    }
}
