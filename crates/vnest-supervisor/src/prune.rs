//! Deleting what a VirtualCluster owns on the host but no longer wants, so
//! that switching a layer off (or changing it) takes effect: an object the
//! supervisor applied once stays until something deletes it.
//!
//! Candidates are the objects carrying this VirtualCluster's owner labels
//! (`app.kubernetes.io/managed-by=vnest-supervisor`: never the syncer's
//! copies of tenant objects) in its own host namespaces, of the kinds whose
//! objects come and go with the spec ([`PRUNED`]), listed as metadata only;
//! which of them to delete is the pure [`host_state::unwanted`].

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use vnest_api::VirtualCluster;
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};

use crate::context::Context;
use crate::desired::host_state::{self, HostState, ObjectKey};
use crate::desired::pods;
use crate::error::Result;

/// The kinds a spec change can remove objects of, and the host namespaces
/// they live in: NetworkPolicies (`isolation.networkPolicy`), the owned
/// etcd's Service and StatefulSet (`datastore.external`), the backups'
/// CronJob (`backup`; its volume is kept), an upgrade's snapshot Job (once
/// the apiservers run the new version). Every other kind
/// the supervisor applies is wanted for every spec of the default cluster
/// (a test holds `host_state` to that), except the copy of an external
/// etcd's client Secret after a move back to an owned etcd: the supervisor
/// may not list the host's Secrets (least privilege), so that copy stays in
/// the control-plane namespace until the VirtualCluster goes.
pub const PRUNED: &[(&str, &[HostNamespaceRole])] = &[
    (
        "NetworkPolicy",
        &[
            HostNamespaceRole::ControlPlane,
            HostNamespaceRole::Workloads,
        ],
    ),
    ("Service", &[HostNamespaceRole::ControlPlane]),
    ("StatefulSet", &[HostNamespaceRole::ControlPlane]),
    ("CronJob", &[HostNamespaceRole::ControlPlane]),
    ("Job", &[HostNamespaceRole::ControlPlane]),
];

/// Deletes the objects `vc` owns that `state` no longer wants; returns what
/// it deleted, as `Kind namespace/name`.
pub async fn prune(ctx: &Context, vc: &VirtualCluster, state: &HostState) -> Result<Vec<String>> {
    let mut existing = Vec::new();
    for (kind, roles) in PRUNED {
        for role in *roles {
            let namespace = host_namespace_of(vc, *role);
            existing.extend(match *kind {
                "NetworkPolicy" => owned::<NetworkPolicy>(ctx, vc, &namespace).await?,
                "Service" => owned::<Service>(ctx, vc, &namespace).await?,
                "CronJob" => owned::<CronJob>(ctx, vc, &namespace).await?,
                "Job" => owned::<Job>(ctx, vc, &namespace).await?,
                _ => owned::<StatefulSet>(ctx, vc, &namespace).await?,
            });
        }
    }
    let mut deleted = Vec::new();
    for key in host_state::unwanted(&existing, state) {
        let Some(namespace) = key.namespace.as_deref() else {
            continue;
        };
        let gone = match key.kind.as_str() {
            "NetworkPolicy" => delete::<NetworkPolicy>(ctx, namespace, &key.name).await?,
            "Service" => delete::<Service>(ctx, namespace, &key.name).await?,
            "StatefulSet" => delete::<StatefulSet>(ctx, namespace, &key.name).await?,
            "CronJob" => delete::<CronJob>(ctx, namespace, &key.name).await?,
            "Job" => delete::<Job>(ctx, namespace, &key.name).await?,
            _ => false,
        };
        if gone {
            deleted.push(format!("{} {namespace}/{}", key.kind, key.name));
        }
    }
    Ok(deleted)
}

/// The objects of kind `K` in `namespace` carrying `vc`'s owner labels, by
/// key, each with whether it is already being deleted (metadata only).
async fn owned<K>(
    ctx: &Context,
    vc: &VirtualCluster,
    namespace: &str,
) -> Result<Vec<(ObjectKey, bool)>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned,
{
    let selector = vnest_api::label_pairs::selector(&pods::owner_labels(vc));
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    Ok(api
        .list_metadata(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .map(|o| {
            let deleting = o.metadata.deletion_timestamp.is_some();
            (ObjectKey::of::<K>(&o.metadata), deleting)
        })
        .collect())
}

async fn delete<K>(ctx: &Context, namespace: &str, name: &str) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
