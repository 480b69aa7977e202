//! The host identity of a tenant's syncer: a ServiceAccount in the tenant's
//! control-plane namespace, bound to the `vnest-syncer` ClusterRole
//! (manifests/supervisor/syncer-rbac.yaml) in the tenant's workloads
//! namespace only. A RoleBinding grants the role's rights in its own
//! namespace alone, so one tenant's syncer can touch no other tenant's
//! objects. The supervisor may bind that one role and no other (`bind`
//! with a resourceName), so it cannot hand out rights it does not mean to.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::api::ObjectMeta;
use vnest_api::VirtualCluster;
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};

use super::pods;

/// The ServiceAccount and the ClusterRole it is bound to.
pub const SYNCER: &str = "vnest-syncer";

pub fn service_account(vc: &VirtualCluster) -> ServiceAccount {
    ServiceAccount {
        metadata: pods::control_plane_meta(vc, SYNCER, "syncer"),
        ..ServiceAccount::default()
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
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "ClusterRole".to_owned(),
            name: SYNCER.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: SYNCER.to_owned(),
            namespace: Some(host_namespace_of(vc, HostNamespaceRole::ControlPlane)),
            ..Subject::default()
        }]),
    }
}
