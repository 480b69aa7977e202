//! Deleting what a VirtualCluster owns on the host but no longer wants, so
//! that switching a layer off (or changing it) takes effect: an object the
//! supervisor applied once stays until something deletes it.
//!
//! Only objects carrying this VirtualCluster's owner labels, in its own host
//! namespaces, are candidates; the choice of which to delete is a pure
//! function ([`unwanted`]).

use std::collections::BTreeSet;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use vnest_api::VirtualCluster;
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};

use crate::context::Context;
use crate::desired::pods;
use crate::error::Result;

/// `(namespace, name)` of each `existing` object that `desired` lacks.
pub fn unwanted<K: Resource>(existing: &[K], desired: &[K]) -> Vec<(String, String)> {
    let wanted: BTreeSet<(Option<String>, String)> = desired
        .iter()
        .map(|o| (o.namespace(), o.name_any()))
        .collect();
    existing
        .iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .filter(|o| !wanted.contains(&(o.namespace(), o.name_any())))
        .filter_map(|o| Some((o.namespace()?, o.name_any())))
        .collect()
}

/// Deletes the objects of kind `K` that `vc` owns in its host namespaces
/// and `desired` no longer holds; returns what it deleted.
pub async fn prune<K>(ctx: &Context, vc: &VirtualCluster, desired: &[K]) -> Result<Vec<String>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned,
{
    let selector = vnest_api::label_pairs::selector(&pods::owner_labels(vc));
    let mut existing = Vec::new();
    for role in [
        HostNamespaceRole::ControlPlane,
        HostNamespaceRole::Workloads,
    ] {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &host_namespace_of(vc, role));
        existing.extend(
            api.list(&ListParams::default().labels(&selector))
                .await?
                .items,
        );
    }
    let mut deleted = Vec::new();
    for (namespace, name) in unwanted(&existing, desired) {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(format!("{namespace}/{name}")),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;

    fn policy(namespace: &str, name: &str) -> NetworkPolicy {
        NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            ..NetworkPolicy::default()
        }
    }

    #[test]
    fn only_objects_the_desired_state_lacks_are_unwanted() {
        let existing = [
            policy("cp", "vnest-etcd"),
            policy("wl", "vnest-workloads-egress"),
            policy("cp", "vnest-workloads-egress"),
        ];
        let desired = [
            policy("cp", "vnest-etcd"),
            policy("cp", "vnest-workloads-egress"),
        ];
        assert_eq!(
            unwanted(&existing, &desired),
            [("wl".to_owned(), "vnest-workloads-egress".to_owned())]
        );
        assert!(unwanted(&existing, &existing).is_empty());
    }

    #[test]
    fn objects_already_being_deleted_are_left_alone() {
        let mut going = policy("wl", "old");
        going.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert!(unwanted(&[going], &[]).is_empty());
    }
}
