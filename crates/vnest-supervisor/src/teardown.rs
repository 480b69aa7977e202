//! A deleted VirtualCluster's teardown, behind the supervisor's finalizer.
//!
//! Everything of the tenant stops at once, all in parallel: its workloads'
//! namespace is deleted straight away, its control plane's Deployments
//! and StatefulSet are deleted and every pod of both namespaces is stopped within
//! [`STOP_GRACE_SECONDS`]. Only the etcd volumes' wipe
//! ([`crate::datastore_wipe`]) holds the control plane's namespace back,
//! since the wipe runs a pod there. The teardown is done once the wipe is
//! done, both namespaces are being deleted and every pod of the tenant is
//! stopping: nothing can bring one back, the kubelets finish stopping them
//! and the host's namespace controller removes what is left, neither
//! waited for (a pod a tenant had already deleted keeps the grace period
//! it was given, 30 s by default, whatever a later deletion asks). A VirtualCluster
//! made again under the same name meanwhile waits for it
//! (`PreviousHostNamespaceTerminating`).

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams};
use kube::core::ClusterResourceScope;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use vnest_api::VirtualCluster;
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};

use crate::context::Context;
use crate::controller::owner_of;
use crate::desired::{datastore, flow_control, pods, syncer_rbac};
use crate::error::{Error, Result};
use crate::reconcile::publish;

/// How long a deleted tenant's pods get to stop: its cluster is going (its
/// etcd is emptied), so no process of it needs a graceful shutdown, and
/// its namespaces' deletion would otherwise wait for each pod's own grace
/// period (30 s by default).
const STOP_GRACE_SECONDS: u32 = 1;

/// One pass of the teardown: `Ok` once nothing of the tenant holds data or
/// can run again, [`Error::Wiping`] or [`Error::Stopping`] (looked at again
/// within a second) until then.
pub async fn teardown(vc: &VirtualCluster, ctx: &Context) -> Result<Action> {
    ctx.recently_applied
        .forget(vc.metadata.uid.as_deref().unwrap_or_default());
    let namespaces = owned_namespaces(vc, ctx).await?;
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    for (role, namespace) in &namespaces {
        if namespace.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = namespace.name_any();
        match role {
            HostNamespaceRole::Workloads => {
                stop_pods(ctx, &name, &ListParams::default()).await?;
                api.delete(&name, &DeleteParams::default()).await?;
                tracing::info!(namespace = name, "deleting host namespace");
            }
            // Until its wipe is done: no Deployment or StatefulSet brings
            // a pod back, and every pod but the wipe's stops (etcd's first
            // of all: nothing writes while its volume is emptied).
            HostNamespaceRole::ControlPlane => {
                let all = ListParams::default();
                Api::<Deployment>::namespaced(ctx.client.clone(), &name)
                    .delete_collection(&DeleteParams::background(), &all)
                    .await?;
                Api::<StatefulSet>::namespaced(ctx.client.clone(), &name)
                    .delete_collection(&DeleteParams::background(), &all)
                    .await?;
                let not_the_wipe = format!("{}!={}", pods::COMPONENT, datastore::WIPE_COMPONENT);
                stop_pods(ctx, &name, &ListParams::default().labels(&not_the_wipe)).await?;
            }
        }
    }
    crate::datastore_wipe::wipe(vc, ctx).await?;
    for (role, namespace) in &namespaces {
        if *role == HostNamespaceRole::ControlPlane
            && namespace.metadata.deletion_timestamp.is_none()
        {
            let name = namespace.name_any();
            stop_pods(ctx, &name, &ListParams::default()).await?;
            api.delete(&name, &DeleteParams::default()).await?;
            tracing::info!(namespace = name, "deleting host namespace");
        }
    }
    // The tenant's cluster-scoped objects do not go with its namespaces.
    delete_cluster_scoped::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(
        ctx,
        &syncer_rbac::node_reader_binding_name(vc),
    )
    .await?;
    delete_cluster_scoped::<k8s_openapi::api::flowcontrol::v1::FlowSchema>(
        ctx,
        &flow_control::flow_schema_name(vc),
    )
    .await?;
    for (_, namespace) in &namespaces {
        let name = namespace.name_any();
        let pods = Api::<Pod>::namespaced(ctx.client.clone(), &name)
            .list_metadata(&ListParams::default())
            .await?;
        if pods
            .items
            .iter()
            .any(|pod| pod.metadata.deletion_timestamp.is_none())
        {
            return Err(Error::Stopping(name));
        }
    }
    publish(
        vc,
        ctx,
        EventType::Normal,
        "Deleted",
        "the tenant's data is gone and every pod of it is stopping; the host finishes deleting its namespaces".into(),
    )
    .await;
    Ok(Action::await_change())
}

/// The host namespaces of `vc` that exist and are labelled as its (a
/// namespace of that name that is not is left alone).
async fn owned_namespaces(
    vc: &VirtualCluster,
    ctx: &Context,
) -> Result<Vec<(HostNamespaceRole, Namespace)>> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let mut owned = Vec::new();
    for role in [
        HostNamespaceRole::Workloads,
        HostNamespaceRole::ControlPlane,
    ] {
        let name = host_namespace_of(vc, role);
        let Some(namespace) = api.get_opt(&name).await? else {
            continue;
        };
        if owner_of(&namespace) == Some(ObjectRef::from_obj(vc)) {
            owned.push((role, namespace));
        } else {
            tracing::warn!(
                namespace = name,
                "not labelled as this VirtualCluster's; left alone"
            );
        }
    }
    Ok(owned)
}

/// Stops the pods `which` selects in host namespace `namespace` within
/// [`STOP_GRACE_SECONDS`] (a pod already stopping gets its grace period
/// shortened).
async fn stop_pods(ctx: &Context, namespace: &str, which: &ListParams) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    pods.delete_collection(
        &DeleteParams::default().grace_period(STOP_GRACE_SECONDS),
        which,
    )
    .await?;
    Ok(())
}

/// Deletes cluster-scoped object `name`, if it is there.
async fn delete_cluster_scoped<K>(ctx: &Context, name: &str) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = ClusterResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned,
{
    match Api::<K>::all(ctx.client.clone())
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
