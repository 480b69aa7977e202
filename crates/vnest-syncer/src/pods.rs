//! Tenant pods run on the host: each is checked against the policy
//! (refused with a visible reason, never silently dropped), created on the
//! host as [`crate::translate::pod`] says, bound in the tenant to the node
//! the host scheduled it on, given a tenant ServiceAccount token bound to
//! the pod and that node, and kept up to date with the host pod's status.
//!
//! Tenant pods carry no finalizer of the syncer's. A bound pod is deleted
//! gracefully, so it stays until the syncer has deleted its host pod with
//! the same grace period and ends its deletion, as a kubelet does; one
//! deleted outright (unbound, finished, forced) takes its host pod with it
//! when the watch reports the deletion, and one missed while the syncer
//! was away is left to the garbage collector ([`crate::gc`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::certificates::v1::{
    ClusterTrustBundle, PodCertificateRequest, PodCertificateRequestSpec,
};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::api::core::v1::{
    Binding, ConfigMap, EnvVar, Node, ObjectReference, Pod, Secret, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{
    DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions,
};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{ObjectRef, store::Writer};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde_json::json;
use tracing::Instrument as _;
use vnest_kube::apply::apply_namespaced;

use crate::context::{
    FIELD_MANAGER, POD_CONCURRENCY, RESYNC, Syncer, release_finalizer, within_deadline,
};
use crate::error::{Error, OnSide, Result, Side, refused_by_host};
use crate::pod_certificates::{self, Outcome};
use crate::pod_status::{end_tenant_pod, sync_status};
use crate::policy::{self, Refusal, Rule};
use crate::translate::{self, pod_secret_name};
use crate::{downward, etc_hosts, network_policy, node_selection, nodes, trust_bundles};
use vnest_api::PodScheduler;
use vnest_api::host_copies::{
    MANAGED_BY, MANAGER, TENANT_UID, host_name, origin, origin_annotations, origin_labels,
};

/// `status.reason` of a pod the policy refused (kubectl shows it as the
/// pod's status).
pub const REFUSED: &str = "Refused";
/// Tokens live a day and are renewed when less than half is left.
const TOKEN_SECONDS: i64 = 86_400;
const TOKEN_EXPIRES: &str = "vnest.dev/token-expires";
/// Label of the host Secrets holding a pod's token (their origin is a pod).
pub const TOKEN_FOR_POD: &str = "vnest.dev/token-for-pod";

/// Runs the pod sync until shutdown; every item of `network_changes` (a
/// tenant namespace or NetworkPolicy changed) re-syncs every pod's labels.
/// The pods of both sides are kept in the stores of `host_pods` and
/// `tenant_pods` ([`crate::context::Watched`]).
pub async fn run(
    syncer: Arc<Syncer>,
    network_changes: impl futures::Stream<Item = ()> + Send + 'static,
    host_pods: Writer<Pod>,
    tenant_pods: Writer<Pod>,
) {
    let tenant: Api<Pod> = Api::all(syncer.tenant.clone());
    let host: Api<Pod> = Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    let ours = watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}"));
    let host_changes = watcher(host, ours)
        .default_backoff()
        .modify(crate::context::lighten)
        .reflect(host_pods)
        .touched_objects();
    let on_delete = syncer.clone();
    let tenant_changes = watcher(tenant, watcher::Config::default())
        .default_backoff()
        .modify(crate::context::lighten)
        .reflect(tenant_pods)
        .inspect(crate::context::follow_deletions(
            on_delete,
            |syncer, gone: Pod| Some(async move { delete_after_tenant(&syncer, &gone).await }),
        ))
        .applied_objects();
    Controller::for_stream(tenant_changes, syncer.watched.tenant_pods.clone())
        .watches_stream(host_changes, |pod: Pod| {
            let (namespace, name) = origin(pod.metadata.annotations.as_ref())?;
            Some(ObjectRef::new(&name).within(&namespace))
        })
        .reconcile_all_on(network_changes)
        .with_config(controller::Config::default().concurrency(POD_CONCURRENCY))
        .shutdown_on_signal()
        .run(reconcile, error_policy, syncer)
        .for_each(|_| async {})
        .await;
}

/// Host pod `name` as the host pod watch last showed it. A pod just made
/// may not be in the store yet: where taking it for absent would do harm
/// (`absence_matters`), the host is asked.
async fn host_pod(syncer: &Syncer, name: &str, absence_matters: bool) -> Result<Option<Pod>> {
    let store = &syncer.watched.host_pods;
    store.wait_until_ready().await?;
    let key = ObjectRef::new(name).within(&syncer.settings.host_namespace);
    if let Some(pod) = store.get(&key) {
        return Ok(Some(pod.as_ref().clone()));
    }
    if !absence_matters {
        return Ok(None);
    }
    let host_pods: Api<Pod> = Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    host_pods.get_opt(name).await.on(Side::Host)
}

async fn reconcile(pod: Arc<Pod>, syncer: Arc<Syncer>) -> Result<Action> {
    let sync = syncer.metrics.start("Pod");
    let (namespace, name) = identity(&pod);
    let span =
        tracing::info_span!("sync", kind = "Pod", object = %format_args!("{namespace}/{name}"));
    let result = within_deadline(sync_one(pod, &syncer))
        .instrument(span)
        .await;
    // Waiting for the host to delete a copy is not a failure.
    sync.finish(match &result {
        Ok(_) | Err(Error::StillDeleting(_)) => None,
        Err(error) => Some(error.metric_label()),
    });
    result
}

async fn sync_one(pod: Arc<Pod>, syncer: &Syncer) -> Result<Action> {
    if pod.metadata.deletion_timestamp.is_some() {
        // Held by its grace period (bound) or by finalizers: the host pod
        // goes first.
        return cleanup(&pod, syncer).await;
    }
    if syncer.own_writes.ahead_of(&pod) {
        // Its watch is about to show the syncer's own last write, and
        // that starts the next sync; the next second's is a fallback.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(syncer.tenant.clone(), &namespace);
    release_finalizer(&api, pod.as_ref()).await?;
    apply(&pod, syncer).await
}

/// Whether the tenant pod `pod` stands for is still the one the tenant
/// store holds (not deleted, nor made again under its name).
fn still_in_tenant(pod: &Pod, syncer: &Syncer) -> bool {
    let (namespace, name) = identity(pod);
    let key = ObjectRef::new(name).within(namespace);
    syncer
        .watched
        .tenant_pods
        .get(&key)
        .is_some_and(|current| current.metadata.uid == pod.metadata.uid)
}

/// Removes the host pod and token Secret of tenant pod `gone`, which the
/// tenant deleted outright: an unbound pod, a finished one, or a forced
/// deletion. (A bound pod deleted gracefully stays until [`cleanup`] has
/// stopped its host pod.) Only the host pod made for this very pod goes,
/// not one of a pod made again under its name.
async fn delete_after_tenant(syncer: &Syncer, gone: &Pod) -> Result<()> {
    syncer.own_writes.forget(gone);
    let (namespace, name) = identity(gone);
    let host_name = host_name(namespace, name);
    let host_pods: Api<Pod> = Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    crate::gc::after_tenant_delete("Pod", namespace, name, || async {
        let Some(host_pod) = host_pod(syncer, &host_name, true).await? else {
            return Ok(());
        };
        if made_for_another(gone, &host_pod) {
            return Ok(());
        }
        delete_host_pod(&host_pods, &host_pod).await?;
        delete_pod_secret(syncer, namespace, name).await
    })
    .await
}

/// Deletes the host Secret with tenant pod `namespace/name`'s tokens, if
/// there is one.
async fn delete_pod_secret(syncer: &Syncer, namespace: &str, name: &str) -> Result<()> {
    let secrets: Api<Secret> =
        Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    match secrets
        .delete(&pod_secret_name(namespace, name), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e).on(Side::Host),
    }
}

/// Whether `host_pod` was made for another tenant pod than `pod` (an
/// earlier one of the same name). Host pods made before they carried
/// the UID are taken for the pod's own.
fn made_for_another(pod: &Pod, host_pod: &Pod) -> bool {
    let made_for = host_pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TENANT_UID));
    made_for.is_some_and(|uid| Some(uid) != pod.metadata.uid.as_ref())
}

/// Deletes `host_pod` itself (by its UID), if it is still there.
async fn delete_host_pod(host_pods: &Api<Pod>, host_pod: &Pod) -> Result<()> {
    let this_one = DeleteParams {
        preconditions: Some(Preconditions {
            uid: host_pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match host_pods
        .delete(
            host_pod.metadata.name.as_deref().unwrap_or_default(),
            &this_one,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(()),
        Err(e) => Err(e).on(Side::Host),
    }
}

/// Whether `pod` is bound to a node.
pub(crate) fn is_bound(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| s.node_name.is_some())
}

pub(crate) fn identity(pod: &Pod) -> (&str, &str) {
    (
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The pod conditions only a kubelet writes.
const KUBELET_CONDITIONS: [&str; 4] = [
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
];

/// Whether the host has run `pod` already: its status came from a host
/// pod's kubelet. A pod created with a `nodeName` is bound from the start
/// with no status; one bound by the tenant's own scheduler has only the
/// `PodScheduled` condition that binding writes (and a preempted one the
/// `DisruptionTarget` its preemption wrote), neither from a host.
fn ran_on_host(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|status| {
        status.start_time.is_some()
            || status.host_ip.is_some()
            || matches!(
                status.phase.as_deref(),
                Some("Running" | "Succeeded" | "Failed")
            )
            || status
                .conditions
                .iter()
                .flatten()
                .any(|c| KUBELET_CONDITIONS.contains(&c.type_.as_str()))
    })
}

async fn apply(pod: &Pod, syncer: &Syncer) -> Result<Action> {
    let (namespace, name) = identity(pod);
    if pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some(REFUSED) {
        return Ok(Action::await_change());
    }
    let host_pods: Api<Pod> = Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    let host_name = host_name(namespace, name);
    let refusals = policy::check(pod, &syncer.policy());
    let bound = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    // Absent, a pod that ran is deleted and one the policy refuses is
    // refused: asked for. Otherwise the create says whether it exists.
    let absence_matters = !refusals.is_empty() || (bound.is_some() && ran_on_host(pod));
    let existing = host_pod(syncer, &host_name, absence_matters).await?;
    // A pod already on the host can only have become refusable through an
    // ephemeral container (the rest of what policy reads is immutable);
    // that container stays off the host, the pod runs on.
    if !refusals.is_empty() && existing.is_none() {
        let placed =
            refusals.iter().all(|r| r.rule == Rule::RuntimeClass) && place(pod, syncer).await?;
        refuse(pod, syncer, &refusals, placed).await?;
        return Ok(Action::await_change());
    }
    let network = network_labels(pod, syncer).await?;
    let host_pod = match existing {
        Some(host_pod) if made_for_another(pod, &host_pod) => {
            // A pod of this name deleted outright and made again while
            // the syncer was away: its host pod is not this one's.
            tracing::info!(
                namespace,
                name,
                "the host pod was made for an earlier pod of this name; removing it"
            );
            delete_host_pod(&host_pods, &host_pod).await?;
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        Some(host_pod) if chooses_otherwise(pod, &host_pod, &syncer.placement()) => {
            tracing::info!(
                namespace,
                name,
                "the tenant's node labels changed where the pod may run; making its host pod again"
            );
            // Only the version seen (still unscheduled): a store behind
            // the host gets a conflict, and the next sync sees it placed.
            let seen = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: host_pod.metadata.resource_version.clone(),
                    uid: host_pod.metadata.uid.clone(),
                }),
                ..DeleteParams::default().grace_period(0)
            };
            match host_pods.delete(&host_name, &seen).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => {}
                Err(e) => return Err(e).on(Side::Host),
            }
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        Some(host_pod) => {
            let labels = translate::pod_labels(pod, &network, syncer.settings.pod_labels);
            let host_pod =
                refresh(pod, host_pod, labels, downward::annotations(pod), syncer).await?;
            add_ephemeral_containers(pod, host_pod, &network, &refusals, syncer).await?
        }
        None if bound.is_some() && ran_on_host(pod) => {
            // It ran on the host and its host pod is gone (deleted there or
            // its node lost): like a pod whose node died, it is deleted;
            // its controller makes a new one. (A pod created with a
            // nodeName has no host pod yet either, and is made below.)
            tracing::info!(namespace, name, "host pod gone; deleting the tenant pod");
            end_tenant_pod(pod, syncer).await?;
            let api: Api<Pod> = Api::namespaced(syncer.tenant.clone(), namespace);
            api.delete(name, &DeleteParams::default().grace_period(0))
                .await
                .on(Side::Tenant)?;
            return Ok(Action::await_change());
        }
        None if bound.is_none() && syncer.settings.scheduler == PodScheduler::Tenant => {
            // The tenant's own scheduler binds it; its binding is the
            // change that brings it here again.
            return Ok(Action::await_change());
        }
        None => {
            // The pod's Secret follows once the host has placed the pod
            // (below): the host pod's kubelet waits for it.
            let links = service_links(pod, syncer).await?;
            let desired = match translate::pod(pod, &syncer.placement(), &network, &links) {
                Ok(mut desired) => {
                    // They follow through the subresource once it runs.
                    if let Some(spec) = desired.spec.as_mut() {
                        spec.ephemeral_containers = None;
                    }
                    desired
                }
                Err(not_yet) => {
                    tracing::info!(namespace, name, %not_yet, "waiting");
                    return Ok(Action::requeue(Duration::from_secs(2)));
                }
            };
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            };
            match host_pods.create(&params, &desired).await {
                // Deleted in the tenant while it was made: the deletion's
                // handler may have looked before it existed.
                Ok(created) if !still_in_tenant(pod, syncer) => {
                    delete_host_pod(&host_pods, &created).await?;
                    return Ok(Action::await_change());
                }
                Ok(created) => created,
                // The host's own admission (Pod Security, quota) refused it.
                Err(kube::Error::Api(status)) if refused_by_host(&status) => {
                    let refusal = Refusal {
                        rule: policy::Rule::HostAdmission,
                        message: format!("the host refused it: {}", status.message),
                    };
                    refuse(pod, syncer, &[refusal], false).await?;
                    return Ok(Action::await_change());
                }
                // Made by an earlier sync; the host pod watch is about to
                // show it (and starts the next sync).
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                Err(e) => return Err(e).on(Side::Host),
            }
        }
    };
    let node = host_pod.spec.as_ref().and_then(|s| s.node_name.clone());
    if let Some(node) = &node
        && bound.is_none()
    {
        nodes::ensure_tenant_node(syncer, node).await?;
        bind(pod, syncer, node).await?;
    }
    // Written once the tenant pod is bound, so that its tokens name the
    // node as a kubelet's do (TokenReview's `node-name` and `node-uid`).
    let mut issuing = false;
    if let Some(node) = &node
        && translate::wants_pod_secret(pod)
    {
        issuing = ensure_pod_secret(pod, syncer, node).await?;
    }
    sync_status(pod, &host_pod, node.is_some(), syncer).await?;
    if issuing {
        // Nothing is watched for the signer's answer: asked again shortly.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::requeue(next_look(pod)))
}

/// Whether unscheduled host pod `host_pod` may run on other nodes than
/// `pod` may now (the tenant labelled its nodes since it was made,
/// [`crate::node_selection`]): its required node affinity differs, or
/// its node selector lacks what is now asked (the host's admission may
/// add to a selector, never take away).
fn chooses_otherwise(pod: &Pod, host_pod: &Pod, placement: &translate::Placement) -> bool {
    let Some(host) = host_pod.spec.as_ref() else {
        return false;
    };
    if host.node_name.is_some() || host_pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let mut wanted = pod.spec.clone().unwrap_or_default();
    translate::choose_nodes(&mut wanted, placement);
    let selector_kept = wanted
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| host.node_selector.as_ref().and_then(|s| s.get(k)) == Some(v));
    !selector_kept || node_selection::required(&wanted) != node_selection::required(host)
}

/// The labels carrying `pod`'s network identity on the host, from the
/// tenant's namespaces and NetworkPolicies as watched.
async fn network_labels(pod: &Pod, syncer: &Syncer) -> Result<BTreeMap<String, String>> {
    let network = &syncer.network;
    network.namespaces.wait_until_ready().await?;
    network.policies.wait_until_ready().await?;
    let (namespace, _) = identity(pod);
    let policies = network.policies.state();
    let governed = network_policy::governed(
        pod.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
        namespace,
        policies.iter().map(AsRef::as_ref),
    );
    let tenant_namespace = network.namespaces.get(&ObjectRef::new(namespace));
    Ok(network_policy::pod_labels(
        tenant_namespace.as_deref(),
        governed,
    ))
}

/// The Service variables of `pod`, from the tenant's Services as watched.
async fn service_links(pod: &Pod, syncer: &Syncer) -> Result<Vec<EnvVar>> {
    let services = &syncer.network.services;
    services.wait_until_ready().await?;
    let all = services.state();
    Ok(crate::service_links::env(
        pod,
        &all.iter().map(|s| &s.0).collect::<Vec<_>>(),
    ))
}

/// `host_pod` with labels `labels`, downward-API annotations `downward`
/// and what the tenant may change in `pod`'s spec ([`spec_updates`]),
/// patched when they differ (a tenant update, or what governs the pod's
/// traffic).
async fn refresh(
    pod: &Pod,
    host_pod: Pod,
    labels: BTreeMap<String, String>,
    downward: BTreeMap<String, String>,
    syncer: &Syncer,
) -> Result<Pod> {
    let current_labels = host_pod.metadata.labels.clone().unwrap_or_default();
    let current_downward: BTreeMap<String, String> = host_pod
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| downward::is_downward_annotation(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let spec = spec_updates(pod, &host_pod);
    let offered = host_pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .and_then(|node| syncer.node_resources(node));
    let resize = resize_updates(pod, &host_pod, offered.as_ref());
    let host_pods: Api<Pod> = Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    let name = host_pod.metadata.name.clone().unwrap_or_default();
    let host_pod = if resize.is_empty() {
        host_pod
    } else {
        let patch = json!({ "spec": { "containers": resize } });
        match host_pods
            .patch_subresource(
                "resize",
                &name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(resized) => resized,
            // The host's quota or LimitRange refused it: the tenant pod
            // keeps asking, and hears why.
            Err(kube::Error::Api(status)) if refused_by_host(&status) => {
                warn_refused(
                    pod,
                    syncer,
                    format!("the host refused the resize: {}", status.message),
                )
                .await;
                host_pod
            }
            Err(e) => return Err(e).on(Side::Host),
        }
    };
    if current_labels == labels && current_downward == downward && spec.is_empty() {
        return Ok(host_pod);
    }
    let mut patch = json!({ "metadata": {
        "labels": merge_patch(&current_labels, labels),
        "annotations": merge_patch(&current_downward, downward),
    } });
    if !spec.is_empty() {
        patch["spec"] = serde_json::Value::Object(spec);
    }
    host_pods
        .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .on(Side::Host)
}

/// `host_pod` with the ephemeral containers `pod` has and it lacks (a
/// tenant's `kubectl debug`), added through the host's
/// `ephemeralcontainers` subresource, unless `refusals` (the pod's policy
/// check) refuses one: then none is added and the tenant gets a Warning
/// event saying why.
async fn add_ephemeral_containers(
    pod: &Pod,
    host_pod: Pod,
    network: &BTreeMap<String, String>,
    refusals: &[Refusal],
    syncer: &Syncer,
) -> Result<Pod> {
    let names = |p: &Pod| -> Vec<String> {
        p.spec
            .iter()
            .flat_map(|s| s.ephemeral_containers.iter().flatten())
            .map(|c| c.name.clone())
            .collect()
    };
    let present = names(&host_pod);
    let missing: Vec<String> = names(pod)
        .into_iter()
        .filter(|n| !present.contains(n))
        .collect();
    if missing.is_empty() {
        return Ok(host_pod);
    }
    if !refusals.is_empty() {
        let message = refusals
            .iter()
            .map(|r| r.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        let note = format!(
            "vnest refused to add ephemeral containers {} on the host: {message}",
            missing.join(", ")
        );
        warn_refused(pod, syncer, note).await;
        return Ok(host_pod);
    }
    let links = service_links(pod, syncer).await?;
    let desired = translate::pod(pod, &syncer.placement(), network, &links)?;
    let mut all = host_pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.clone())
        .unwrap_or_default();
    all.extend(
        desired
            .spec
            .and_then(|s| s.ephemeral_containers)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| missing.contains(&c.name)),
    );
    if let Some(spec) = host_pod.spec.as_ref() {
        etc_hosts::fit_to(spec, &mut all);
    }
    let host_pods: Api<Pod> = Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    let name = host_pod.metadata.name.clone().unwrap_or_default();
    host_pods
        .patch_subresource(
            "ephemeralcontainers",
            &name,
            &PatchParams::default(),
            &Patch::Strategic(json!({ "spec": { "ephemeralContainers": all } })),
        )
        .await
        .on(Side::Host)
}

/// The containers of a `resize` patch bringing the host pod's container
/// resources to the tenant pod's (a tenant's in-place resize): each
/// request and limit the tenant sets, over what the host pod has (the
/// host's LimitRange defaults stay where the tenant sets nothing; on a
/// node offering the resources `offered`, none of the extended resources
/// it lacks, [`translate::keep_offered`]). Empty when they already agree.
fn resize_updates(
    pod: &Pod,
    host_pod: &Pod,
    offered: Option<&BTreeSet<String>>,
) -> Vec<serde_json::Value> {
    let (Some(tenant), Some(host)) = (pod.spec.as_ref(), host_pod.spec.as_ref()) else {
        return Vec::new();
    };
    let mut containers = Vec::new();
    for wanted in &tenant.containers {
        let Some(running) = host.containers.iter().find(|c| c.name == wanted.name) else {
            continue;
        };
        let current = running.resources.clone().unwrap_or_default();
        let mut asked = wanted.resources.clone().unwrap_or_default();
        if let Some(offered) = offered {
            translate::keep_offered(&mut asked, offered);
        }
        let overlay = |current: Option<BTreeMap<String, Quantity>>,
                       asked: Option<BTreeMap<String, Quantity>>| {
            let mut merged = current.unwrap_or_default();
            merged.extend(asked.unwrap_or_default());
            (!merged.is_empty()).then_some(merged)
        };
        let desired = ResourceRequirements {
            requests: overlay(current.requests.clone(), asked.requests),
            limits: overlay(current.limits.clone(), asked.limits),
            claims: None,
        };
        // Both apiservers store quantities in canonical form.
        if desired.requests != current.requests || desired.limits != current.limits {
            containers.push(json!({
                "name": wanted.name,
                "resources": { "requests": desired.requests, "limits": desired.limits },
            }));
        }
    }
    containers
}

/// The part of a strategic merge patch bringing the host pod's spec to
/// the tenant pod's where a pod may change after it is made: its
/// `activeDeadlineSeconds` and its containers' images. (Ephemeral
/// containers go through their subresource, [`add_ephemeral_containers`];
/// resources through `resize`, [`resize_updates`].)
fn spec_updates(pod: &Pod, host_pod: &Pod) -> serde_json::Map<String, serde_json::Value> {
    let mut patch = serde_json::Map::new();
    let (Some(tenant), Some(host)) = (pod.spec.as_ref(), host_pod.spec.as_ref()) else {
        return patch;
    };
    if tenant.active_deadline_seconds.is_some()
        && tenant.active_deadline_seconds != host.active_deadline_seconds
    {
        patch.insert(
            "activeDeadlineSeconds".to_owned(),
            json!(tenant.active_deadline_seconds),
        );
    }
    let images = |wanted: &[k8s_openapi::api::core::v1::Container],
                  running: &[k8s_openapi::api::core::v1::Container]| {
        wanted
            .iter()
            .filter(|w| {
                running
                    .iter()
                    .any(|r| r.name == w.name && r.image != w.image)
            })
            .map(|w| json!({ "name": w.name, "image": w.image }))
            .collect::<Vec<_>>()
    };
    let containers = images(&tenant.containers, &host.containers);
    if !containers.is_empty() {
        patch.insert("containers".to_owned(), json!(containers));
    }
    let init = images(
        tenant.init_containers.as_deref().unwrap_or_default(),
        host.init_containers.as_deref().unwrap_or_default(),
    );
    if !init.is_empty() {
        patch.insert("initContainers".to_owned(), json!(init));
    }
    patch
}

/// A JSON merge patch turning map `current` into `desired`.
fn merge_patch(
    current: &BTreeMap<String, String>,
    desired: BTreeMap<String, String>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut patch = serde_json::Map::new();
    for key in current.keys().filter(|k| !desired.contains_key(*k)) {
        patch.insert(key.clone(), serde_json::Value::Null);
    }
    for (key, value) in desired {
        patch.insert(key, serde_json::Value::String(value));
    }
    patch
}

/// Places a pod refused for its RuntimeClass alone as a cluster places one
/// whose handler its nodes lack: the scheduler binds it (here to the
/// pool's first node, unless it names one), the node never starts it.
/// Whether it is bound.
async fn place(pod: &Pod, syncer: &Syncer) -> Result<bool> {
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some()
    {
        return Ok(true);
    }
    let Some(node) = syncer.policy().pool_nodes.into_iter().next() else {
        return Ok(false);
    };
    bind(pod, syncer, &node).await?;
    Ok(true)
}

/// Marks the tenant pod refused: Pending with reason [`REFUSED`], the
/// reasons in its message and PodScheduled condition (or, for a pod
/// `placed` on a node, its Ready condition), and a Warning event. Pending,
/// not Failed, so that a ReplicaSet does not replace it in a loop.
async fn refuse(pod: &Pod, syncer: &Syncer, refusals: &[Refusal], placed: bool) -> Result<()> {
    let (namespace, name) = identity(pod);
    let reasons: Vec<&str> = refusals.iter().map(|r| r.message.as_str()).collect();
    let message = format!(
        "vnest refused to run this pod on the host: {}",
        reasons.join("; ")
    );
    let rules: Vec<&str> = refusals.iter().map(|r| r.rule.name()).collect();
    tracing::info!(namespace, name, rules = ?rules, "refused");
    for rule in &rules {
        syncer.metrics.refused(rule);
    }
    let api: Api<Pod> = Api::namespaced(syncer.tenant.clone(), namespace);
    let now = Timestamp::now().to_string();
    let conditions = if placed {
        json!([
            { "type": "PodScheduled", "status": "True", "lastTransitionTime": now },
            { "type": "Ready", "status": "False", "reason": REFUSED, "message": message,
              "lastTransitionTime": now },
        ])
    } else {
        json!([{
            "type": "PodScheduled", "status": "False", "reason": REFUSED, "message": message,
            "lastTransitionTime": now,
        }])
    };
    let status = json!({ "status": {
        "phase": "Pending",
        "reason": REFUSED,
        "message": message,
        "conditions": conditions,
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .on(Side::Tenant)?;
    warn_refused(pod, syncer, message).await;
    Ok(())
}

/// A Warning event `Refused` on tenant pod `pod` saying `message`.
async fn warn_refused(pod: &Pod, syncer: &Syncer, message: String) {
    syncer.warn(&pod.object_ref(&()), REFUSED, message).await;
}

/// How long the shortest of `pod`'s tokens lives: they are renewed when
/// less than half of that is left.
fn shortest_token_life(pod: &Pod) -> i64 {
    translate::token_sources(pod)
        .iter()
        .map(|t| t.expiration_seconds.unwrap_or(TOKEN_SECONDS))
        .min()
        .unwrap_or(TOKEN_SECONDS)
}

/// How soon `pod` is looked at again: its resync, or sooner when a token
/// must be renewed before then.
fn next_look(pod: &Pod) -> Duration {
    let half_life = u64::try_from(shortest_token_life(pod) / 2).unwrap_or(0);
    RESYNC.min(Duration::from_secs(half_life.max(60)))
}

/// The pod's Secret ([`pod_secret_name`]), which the host pod mounts
/// where its projected volumes would have had the host's: the tenant
/// ServiceAccount tokens they ask for (one per audience and lifetime,
/// [`translate::token_sources`]), bound to the pod and its node, with the
/// tenant's CA and the pod's namespace; and the trust anchors of their
/// ClusterTrustBundle sources, from the tenant's bundles. Tokens are
/// renewed when half their life is gone; anchors follow the bundles at
/// every look.
async fn ensure_pod_secret(pod: &Pod, syncer: &Syncer, node: &str) -> Result<bool> {
    let (namespace, name) = identity(pod);
    let secret_name = pod_secret_name(namespace, name);
    let host_secrets: Api<Secret> =
        Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    let sources = translate::token_sources(pod);
    let anchors = trust_anchors(pod, syncer).await?;
    let renew_after = Timestamp::now() + SignedDuration::from_secs(shortest_token_life(pod) / 2);
    let existing = host_secrets.get_opt(&secret_name).await.on(Side::Host)?;
    let mut annotations = origin_annotations(namespace, name);
    let mut data = BTreeMap::new();
    let fresh_tokens = existing.as_ref().and_then(|existing| {
        let expires = existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TOKEN_EXPIRES))
            .cloned();
        let held = existing.data.as_ref()?;
        let fresh = sources.is_empty()
            || expires
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_some_and(|t| t > renew_after);
        let complete = sources.iter().all(|t| held.contains_key(&t.key));
        (fresh && complete).then(|| (expires, held.clone()))
    });
    let renewing = fresh_tokens.is_none();
    match fresh_tokens {
        Some((expires, held)) => {
            if let Some(expires) = expires {
                annotations.insert(TOKEN_EXPIRES.to_owned(), expires);
            }
            let kept = |key: &str| {
                sources.iter().any(|t| t.key == key) || key == "ca.crt" || key == "namespace"
            };
            data.extend(held.into_iter().filter(|(key, _)| kept(key)));
        }
        None => {
            let (tokens, expires) = issue_tokens(pod, syncer, &sources).await?;
            data.extend(tokens);
            if let Some(expires) = expires {
                annotations.insert(TOKEN_EXPIRES.to_owned(), expires.to_string());
            }
            let ca = Api::<ConfigMap>::namespaced(syncer.tenant.clone(), namespace)
                .get_opt("kube-root-ca.crt")
                .await
                .on(Side::Tenant)?
                .and_then(|cm| cm.data)
                .and_then(|d| d.get("ca.crt").cloned())
                .unwrap_or_default();
            data.insert("ca.crt".to_owned(), ByteString(ca.into_bytes()));
            data.insert(
                "namespace".to_owned(),
                ByteString(namespace.as_bytes().to_vec()),
            );
        }
    }
    for (key, value) in anchors {
        data.insert(key, ByteString(value.into_bytes()));
    }
    let held = existing
        .as_ref()
        .and_then(|e| e.data.clone())
        .unwrap_or_default();
    let issuing = pod_certificates(pod, syncer, node, &held, &mut data).await?;
    if !renewing && existing.and_then(|e| e.data).as_ref() == Some(&data) {
        return Ok(issuing);
    }
    let mut labels = origin_labels(namespace);
    labels.insert(TOKEN_FOR_POD.to_owned(), "true".to_owned());
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name),
            namespace: Some(syncer.settings.host_namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    };
    apply_namespaced(&syncer.host, FIELD_MANAGER, &secret).await?;
    Ok(issuing)
}

/// The credentials of the pod's podCertificate sources into `data` (the
/// pod's Secret to be; `held` is what it holds now): kept while fresh,
/// taken from the tenant's PodCertificateRequest once issued, requested
/// anew when missing or due ([`pod_certificates`]). Returns whether a
/// request is still waiting for its signer.
async fn pod_certificates(
    pod: &Pod,
    syncer: &Syncer,
    node: &str,
    held: &BTreeMap<String, ByteString>,
    data: &mut BTreeMap<String, ByteString>,
) -> Result<bool> {
    let sources = pod_certificates::sources(pod);
    if sources.is_empty() {
        return Ok(false);
    }
    let (namespace, name) = identity(pod);
    let requests: Api<PodCertificateRequest> = Api::namespaced(syncer.tenant.clone(), namespace);
    let text = |key: &str| {
        held.get(key)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
    };
    let now = Timestamp::now();
    let mut waiting = false;
    for source in sources {
        let keys = pod_certificates::Keys::of(&source.id);
        for key in keys.all() {
            if let Some(value) = held.get(key) {
                data.insert(key.to_owned(), value.clone());
            }
        }
        let due = text(&keys.refresh)
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_none_or(|t| t <= now);
        if !due {
            continue;
        }
        if let (Some(request), Some(key)) = (text(&keys.pending_request), text(&keys.pending_key)) {
            let status = requests
                .get_opt(&request)
                .await
                .on(Side::Tenant)?
                .and_then(|r| r.status);
            match pod_certificates::outcome(status.as_ref()) {
                Outcome::Waiting => waiting = true,
                Outcome::Issued { chain, refresh_at } => {
                    let put =
                        |data: &mut BTreeMap<String, ByteString>, key: &str, value: String| {
                            data.insert(key.to_owned(), ByteString(value.into_bytes()));
                        };
                    put(data, &keys.bundle, format!("{key}{chain}"));
                    put(data, &keys.key, key);
                    put(data, &keys.chain, chain);
                    // Without a refresh time, as the kubelet: in a day.
                    let refresh = refresh_at.unwrap_or(now + SignedDuration::from_hours(24));
                    put(data, &keys.refresh, refresh.to_string());
                    data.remove(&keys.pending_key);
                    data.remove(&keys.pending_request);
                }
                Outcome::Refused(reason) => {
                    data.remove(&keys.pending_key);
                    data.remove(&keys.pending_request);
                    let retry = now + SignedDuration::from_mins(1);
                    data.insert(
                        keys.refresh.clone(),
                        ByteString(retry.to_string().into_bytes()),
                    );
                    warn_refused(
                        pod,
                        syncer,
                        format!("the tenant's signer {} refused the pod certificate of volume source {}: {reason}; asking again in a minute", source.projection.signer_name, source.id),
                    )
                    .await;
                }
            }
            continue;
        }
        let (key, stub_request) = pod_certificates::new_key(&source.projection.key_type)?;
        let account = downward::service_account(pod);
        let account_uid = Api::<ServiceAccount>::namespaced(syncer.tenant.clone(), namespace)
            .get(&account)
            .await
            .on(Side::Tenant)?
            .metadata
            .uid
            .unwrap_or_default();
        let node_uid = Api::<Node>::all(syncer.tenant.clone())
            .get(node)
            .await
            .on(Side::Tenant)?
            .metadata
            .uid
            .unwrap_or_default();
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        let request = PodCertificateRequest {
            metadata: ObjectMeta {
                generate_name: Some("req-".to_owned()),
                namespace: Some(namespace.to_owned()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".to_owned(),
                    kind: "Pod".to_owned(),
                    name: name.to_owned(),
                    uid: pod_uid.clone(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            spec: PodCertificateRequestSpec {
                signer_name: source.projection.signer_name.clone(),
                pod_name: name.to_owned(),
                pod_uid,
                service_account_name: account,
                service_account_uid: account_uid,
                node_name: node.to_owned(),
                node_uid,
                max_expiration_seconds: source.projection.max_expiration_seconds,
                stub_pkc_s10_request: ByteString(stub_request),
                unverified_user_annotations: source.projection.user_annotations.clone(),
            },
            status: None,
        };
        let created = requests
            .create(&PostParams::default(), &request)
            .await
            .on(Side::Tenant)?;
        let request_name = created.metadata.name.unwrap_or_default();
        data.insert(keys.pending_key.clone(), ByteString(key.into_bytes()));
        data.insert(
            keys.pending_request.clone(),
            ByteString(request_name.into_bytes()),
        );
        waiting = true;
    }
    Ok(waiting)
}

/// The anchors of each of the pod's ClusterTrustBundle sources, by the key
/// of the pod's Secret; a source that selects nothing and is not optional
/// has none ([`trust_bundles::anchors`]).
async fn trust_anchors(pod: &Pod, syncer: &Syncer) -> Result<BTreeMap<String, String>> {
    let sources = translate::trust_bundle_sources(pod);
    if sources.is_empty() {
        return Ok(BTreeMap::new());
    }
    let bundles = Api::<ClusterTrustBundle>::all(syncer.tenant.clone())
        .list(&ListParams::default())
        .await
        .on(Side::Tenant)?
        .items;
    Ok(sources
        .into_iter()
        .filter_map(|(key, source)| Some((key, trust_bundles::anchors(&source, &bundles)?)))
        .collect())
}

/// Tenant ServiceAccount tokens for `sources`, bound to the pod (and the
/// node it is bound to), by key, and when the first of them expires.
async fn issue_tokens(
    pod: &Pod,
    syncer: &Syncer,
    sources: &[translate::TokenSource],
) -> Result<(BTreeMap<String, ByteString>, Option<Timestamp>)> {
    let (namespace, name) = identity(pod);
    let account = downward::service_account(pod);
    let accounts: Api<ServiceAccount> = Api::namespaced(syncer.tenant.clone(), namespace);
    let mut data = BTreeMap::new();
    let mut first_expiry: Option<Timestamp> = None;
    for source in sources {
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: source.audience.clone().map(|a| vec![a]),
                expiration_seconds: Some(source.expiration_seconds.unwrap_or(TOKEN_SECONDS)),
                bound_object_ref: Some(BoundObjectReference {
                    kind: Some("Pod".to_owned()),
                    api_version: Some("v1".to_owned()),
                    name: Some(name.to_owned()),
                    uid: pod.metadata.uid.clone(),
                }),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let issued: TokenRequest = accounts
            .create_subresource("token", &account, &PostParams::default(), &request)
            .await
            .on(Side::Tenant)?;
        let status = issued.status.unwrap_or_default();
        if let Some(expires) = status.expiration_timestamp.as_ref().map(|t| t.0) {
            first_expiry = Some(first_expiry.map_or(expires, |f| f.min(expires)));
        }
        data.insert(
            source.key.clone(),
            ByteString(status.token.unwrap_or_default().into_bytes()),
        );
    }
    Ok((data, first_expiry))
}

/// Binds the tenant pod to the node the host scheduled its host pod on, as
/// a scheduler would.
async fn bind(pod: &Pod, syncer: &Syncer, node: &str) -> Result<()> {
    let (namespace, name) = identity(pod);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            kind: Some("Node".to_owned()),
            api_version: Some("v1".to_owned()),
            name: Some(node.to_owned()),
            ..ObjectReference::default()
        },
    };
    let api: Api<Pod> = Api::namespaced(syncer.tenant.clone(), namespace);
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        // Already bound (a concurrent or earlier reconcile) is bound too.
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => return Err(e).on(Side::Tenant),
    }
    syncer.own_writes.bound(pod);
    Ok(())
}

/// Deletes the host pod of `pod`, which is being deleted, with the tenant
/// pod's grace period and waits for it to be gone, then ends the tenant
/// pod's deletion.
async fn cleanup(pod: &Pod, syncer: &Syncer) -> Result<Action> {
    let (namespace, name) = identity(pod);
    let host_pods: Api<Pod> = Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    let host_name = host_name(namespace, name);
    if let Some(host_pod) = host_pod(syncer, &host_name, true).await? {
        if host_pod.metadata.deletion_timestamp.is_none() {
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .and_then(|g| u32::try_from(g).ok());
            let params = DeleteParams {
                grace_period_seconds: grace,
                ..DeleteParams::default()
            };
            host_pods.delete(&host_name, &params).await.on(Side::Host)?;
        }
        // The host kubelet's last word (a terminal phase, exit codes)
        // reaches the tenant pod while the host pod goes.
        sync_status(pod, &host_pod, is_bound(pod), syncer).await?;
        return Err(Error::StillDeleting(host_name));
    }
    if is_bound(pod) {
        end_tenant_pod(pod, syncer).await?;
    }
    delete_pod_secret(syncer, namespace, name).await?;
    let api: Api<Pod> = Api::namespaced(syncer.tenant.clone(), namespace);
    release_finalizer(&api, pod).await?;
    if is_bound(pod) {
        // No kubelet in the tenant finishes a bound pod's deletion; the
        // syncer does, now that the host pod has terminated. (A pod
        // other finalizers hold goes when they are done; this delete
        // is repeated on each of its changes, as a kubelet repeats it.)
        end_deletion(&api, name).await?;
    }
    Ok(Action::await_change())
}

/// The delete with no grace period that ends tenant pod `name`'s deletion
/// once its host pod is gone, as a kubelet's ends it (gone already is
/// fine).
async fn end_deletion(api: &Api<Pod>, name: &str) -> Result<()> {
    match api
        .delete(name, &DeleteParams::default().grace_period(0))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e).on(Side::Tenant),
    }
}

fn error_policy(pod: Arc<Pod>, error: &Error, _: Arc<Syncer>) -> Action {
    let (namespace, name) = identity(&pod);
    match error {
        Error::StillDeleting(_) => Action::requeue(Duration::from_secs(1)),
        _ => {
            tracing::warn!(namespace, name, %error, "pod sync failed; retrying");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn a_host_pod_belongs_to_the_tenant_pod_whose_uid_it_carries() {
        let pod = |uid: &str| Pod {
            metadata: ObjectMeta {
                uid: Some(uid.to_owned()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        let host_pod = |uid: Option<&str>| Pod {
            metadata: ObjectMeta {
                annotations: uid.map(|u| BTreeMap::from([(TENANT_UID.to_owned(), u.to_owned())])),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        assert!(!made_for_another(&pod("a"), &host_pod(Some("a"))));
        assert!(
            made_for_another(&pod("b"), &host_pod(Some("a"))),
            "an earlier pod's"
        );
        assert!(
            !made_for_another(&pod("b"), &host_pod(None)),
            "made before host pods carried the UID"
        );
    }

    #[test]
    fn a_pod_created_with_a_node_name_has_not_run_on_the_host() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "namespace": "n" },
            "spec": { "nodeName": "vnest-node1", "containers": [{ "name": "c" }] },
        }))
        .unwrap();
        assert!(!ran_on_host(&pod));
        pod.status = Some(Default::default());
        assert!(!ran_on_host(&pod));
        // Bound by the tenant's own scheduler, then preempted there.
        pod.status = serde_json::from_value(serde_json::json!({
            "phase": "Pending",
            "conditions": [{ "type": "PodScheduled", "status": "True" },
                           { "type": "DisruptionTarget", "status": "True" }],
        }))
        .unwrap();
        assert!(!ran_on_host(&pod));
        pod.status = serde_json::from_value(serde_json::json!({
            "phase": "Running", "hostIP": "172.30.0.11",
            "conditions": [{ "type": "PodScheduled", "status": "True" }],
        }))
        .unwrap();
        assert!(ran_on_host(&pod));
    }
    use super::*;

    fn pod_spec(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": "p" }, "spec": spec })).unwrap()
    }

    #[test]
    fn a_pending_host_pod_is_made_again_when_the_tenant_relabels_its_nodes() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let pod = pod_spec(json!({ "containers": [], "nodeSelector": { "color": "blue" } }));
        let mut placement = translate::Placement {
            pool_selector: labels(&[("pool", "a")]),
            ..translate::Placement::default()
        };
        placement
            .pool_labels
            .host
            .insert("n1".into(), labels(&[("pool", "a")]));
        placement.pool_labels.tenant = placement.pool_labels.host.clone();
        // Made before the tenant labelled n1: the selector as written.
        let mut spec = pod.spec.clone().unwrap();
        translate::choose_nodes(&mut spec, &placement);
        let mut host_pod = Pod {
            spec: Some(spec),
            ..Pod::default()
        };
        assert!(!chooses_otherwise(&pod, &host_pod, &placement));
        placement
            .pool_labels
            .tenant
            .insert("n1".into(), labels(&[("pool", "a"), ("color", "blue")]));
        assert!(chooses_otherwise(&pod, &host_pod, &placement));
        // Made again: it agrees.
        let mut spec = pod.spec.clone().unwrap();
        translate::choose_nodes(&mut spec, &placement);
        assert!(!chooses_otherwise(
            &pod,
            &Pod {
                spec: Some(spec),
                ..Pod::default()
            },
            &placement
        ));
        // A scheduled host pod stays where it is.
        host_pod.spec.as_mut().unwrap().node_name = Some("n1".into());
        assert!(!chooses_otherwise(&pod, &host_pod, &placement));
    }

    /// A tenant's resize reaches the host pod as the tenant's values over
    /// the host's (LimitRange defaults stay); nothing when they agree.
    #[test]
    fn a_resize_sets_what_the_tenant_asks_and_keeps_the_hosts_defaults() {
        let host = pod_spec(json!({ "containers": [
            { "name": "a", "resources": { "requests": { "cpu": "2m", "memory": "64Mi" }, "limits": { "cpu": "10m", "memory": "512Mi" } } },
            { "name": "b", "resources": { "requests": { "cpu": "50m", "memory": "64Mi" }, "limits": { "memory": "512Mi" } } },
        ] }));
        let tenant = pod_spec(json!({ "containers": [
            { "name": "a", "resources": { "requests": { "cpu": "1m" }, "limits": { "cpu": "5m" } } },
            { "name": "b", "resources": { "requests": { "cpu": "50m" } } },
        ] }));
        assert_eq!(
            resize_updates(&tenant, &host, None),
            [json!({ "name": "a", "resources": {
                "requests": { "cpu": "1m", "memory": "64Mi" },
                "limits": { "cpu": "5m", "memory": "512Mi" },
            } })]
        );
        let unchanged = pod_spec(json!({ "containers": [
            { "name": "a", "resources": { "requests": { "cpu": "2m" }, "limits": { "cpu": "10m" } } },
            { "name": "b" },
        ] }));
        assert!(resize_updates(&unchanged, &host, None).is_empty());
    }

    /// An extended resource the host node lacks (the tenant's own, which
    /// the host pod was made without) is never asked of the host again.
    #[test]
    fn a_resize_asks_nothing_the_node_does_not_offer() {
        let host = pod_spec(json!({ "containers": [
            { "name": "a", "resources": { "requests": { "cpu": "10m", "example.com/gpu": "1" }, "limits": { "example.com/gpu": "1" } } },
        ] }));
        let tenant = pod_spec(json!({ "containers": [
            { "name": "a", "resources": {
                "requests": { "cpu": "10m", "example.com/gpu": "1", "scheduling.k8s.io/foo": "2" },
                "limits": { "example.com/gpu": "1", "scheduling.k8s.io/foo": "2" } } },
        ] }));
        let offered = BTreeSet::from(["cpu".to_owned(), "example.com/gpu".to_owned()]);
        assert!(resize_updates(&tenant, &host, Some(&offered)).is_empty());
        assert_eq!(resize_updates(&tenant, &host, None).len(), 1);
    }

    #[test]
    fn deadline_and_image_updates_reach_the_host_pod_and_nothing_else() {
        let host = pod_spec(json!({
            "containers": [{ "name": "a", "image": "one" }, { "name": "b", "image": "two" }],
            "initContainers": [{ "name": "i", "image": "init" }],
            "nodeName": "host-node", "hostname": "p",
        }));
        let same = pod_spec(json!({
            "containers": [{ "name": "a", "image": "one" }, { "name": "b", "image": "two" }],
            "initContainers": [{ "name": "i", "image": "init" }],
        }));
        assert!(
            spec_updates(&same, &host).is_empty(),
            "placement is the host's own"
        );
        let updated = pod_spec(json!({
            "activeDeadlineSeconds": 5,
            "containers": [{ "name": "a", "image": "one" }, { "name": "b", "image": "three" }],
            "initContainers": [{ "name": "i", "image": "init2" }],
        }));
        assert_eq!(
            serde_json::Value::Object(spec_updates(&updated, &host)),
            json!({
                "activeDeadlineSeconds": 5,
                "containers": [{ "name": "b", "image": "three" }],
                "initContainers": [{ "name": "i", "image": "init2" }],
            })
        );
    }

    fn pod_with_token(expiration: Option<i64>) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "p", "namespace": "n" },
            "spec": { "containers": [{ "name": "c" }], "volumes": [{ "name": "t", "projected": { "sources": [
                { "serviceAccountToken": { "path": "token", "audience": "vault", "expirationSeconds": expiration } },
            ] } }] },
        }))
        .unwrap()
    }

    #[test]
    fn a_short_lived_token_is_renewed_before_it_expires() {
        assert_eq!(shortest_token_life(&pod_with_token(Some(600))), 600);
        assert_eq!(
            next_look(&pod_with_token(Some(600))),
            Duration::from_secs(300)
        );
        assert_eq!(shortest_token_life(&pod_with_token(None)), TOKEN_SECONDS);
        assert_eq!(next_look(&pod_with_token(None)), RESYNC);
    }
}
