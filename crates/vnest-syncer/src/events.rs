//! Events up: what the host says about a synced object's host copy appears
//! on the tenant object, so `kubectl describe` in the tenant tells the
//! story: for pods (scheduled, image pulled, started, probe failed,
//! killed…), claims (waiting for a consumer, provisioning failed), Services
//! and Ingresses (load balancer and controller events). Events about host
//! objects that are not synced copies stay on the host.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::api::{ApiResource, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::context::{CONCURRENCY, FIELD_MANAGER, Syncer};
use crate::error::{OnSide, Result, Side};
use crate::etc_hosts;
use crate::translate::pod_secret_name;
use vnest_api::host_copies::origin;

/// The kinds whose host copies' events go up (the syncer's own copies).
fn synced_kind(kind: &str) -> Option<ApiResource> {
    let (group, version) = match kind {
        "Pod" | "Service" | "PersistentVolumeClaim" | "ConfigMap" | "Secret" => ("", "v1"),
        "Ingress" => ("networking.k8s.io", "v1"),
        "EndpointSlice" => ("discovery.k8s.io", "v1"),
        _ => return None,
    };
    Some(ApiResource::from_gvk(&GroupVersionKind::gvk(
        group, version, kind,
    )))
}

/// Mirrors host events until shutdown; a broken watch is restarted
/// with backoff.
pub async fn run(syncer: Arc<Syncer>) {
    let host: Api<Event> = Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    let stream = watcher(host, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    // Several at once: each is a few requests, and a burst of pods brings
    // a few events each.
    stream
        .for_each_concurrent(usize::from(CONCURRENCY), |event| {
            let syncer = syncer.clone();
            async move {
                match event {
                    Ok(event) => {
                        if let Err(error) = mirror(&syncer, &event).await {
                            tracing::debug!(%error, "mirroring a host event failed");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "watching host events failed"),
                }
            }
        })
        .await;
}

/// The tenant copy of a host event about a synced object, if it is one.
async fn mirror(syncer: &Syncer, event: &Event) -> Result<()> {
    let about = &event.involved_object;
    let Some(resource) = about.kind.as_deref().and_then(synced_kind) else {
        return Ok(());
    };
    if is_routine_of_ours(event) {
        return Ok(());
    }
    let (Some(host_name), Some(host_event_name)) =
        (about.name.as_deref(), event.metadata.name.as_deref())
    else {
        return Ok(());
    };
    let Some((namespace, name)) = origin_of(syncer, &resource, host_name).await? else {
        return Ok(());
    };
    if waits_for_token(event, &namespace, &name) {
        return Ok(());
    }
    let Some(uid) = tenant_uid(syncer, &resource, &namespace, &name).await? else {
        return Ok(());
    };
    let about = ObjectReference {
        kind: Some(resource.kind.clone()),
        api_version: Some(resource.api_version.clone()),
        namespace: Some(namespace),
        name: Some(name),
        uid: Some(uid),
        field_path: event.involved_object.field_path.clone(),
        ..ObjectReference::default()
    };
    record(&syncer.tenant, &tenant_event(event, about, host_event_name)).await
}

/// Writes tenant event `event` as Kubernetes' own event recorders do: a
/// create, and for an event the tenant already has (a repeat, whose count
/// went up, or one listed again after the watch restarted) a merge patch
/// of what a repeat changes. Measured cheaper for the tenant's apiserver
/// than a server-side apply, which tracks fields no one else writes
/// (docs/benchmarks.md).
async fn record(tenant: &Client, event: &Event) -> Result<()> {
    let namespace = event.metadata.namespace.as_deref().unwrap_or_default();
    let name = event.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Event> = Api::namespaced(tenant.clone(), namespace);
    let create = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api.create(&create, event).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let update = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            api.patch(name, &update, &Patch::Merge(&repeat(event)))
                .await
                .on(Side::Tenant)?;
            Ok(())
        }
        Err(error) => Err(error).on(Side::Tenant),
    }
}

/// What a repeat of `event` changes on the tenant's copy.
fn repeat(event: &Event) -> serde_json::Value {
    serde_json::json!({
        "count": event.count,
        "message": event.message,
        "lastTimestamp": event.last_timestamp,
    })
}

/// The tenant object whose copy host object `host_name` (of kind
/// `resource`) is; a pod's from the host pod watch when it has the pod.
async fn origin_of(
    syncer: &Syncer,
    resource: &ApiResource,
    host_name: &str,
) -> Result<Option<(String, String)>> {
    if resource.kind == "Pod" {
        let key = ObjectRef::new(host_name).within(&syncer.settings.host_namespace);
        if let Some(pod) = syncer.watched.host_pods.get(&key) {
            return Ok(origin(pod.metadata.annotations.as_ref()));
        }
    }
    let host: Api<DynamicObject> = Api::namespaced_with(
        syncer.host.clone(),
        &syncer.settings.host_namespace,
        resource,
    );
    let copy = host.get_opt(host_name).await.on(Side::Host)?;
    Ok(copy.and_then(|copy| origin(copy.metadata.annotations.as_ref())))
}

/// The UID of tenant object `namespace/name`, if it exists; a pod's from
/// the tenant pod watch when it has the pod.
async fn tenant_uid(
    syncer: &Syncer,
    resource: &ApiResource,
    namespace: &str,
    name: &str,
) -> Result<Option<String>> {
    if resource.kind == "Pod"
        && let Some(pod) = syncer
            .watched
            .tenant_pods
            .get(&ObjectRef::new(name).within(namespace))
    {
        return Ok(pod.metadata.uid.clone());
    }
    let tenant: Api<DynamicObject> =
        Api::namespaced_with(syncer.tenant.clone(), namespace, resource);
    let object = tenant.get_opt(name).await.on(Side::Tenant)?;
    Ok(object.and_then(|object| object.metadata.uid))
}

/// Whether `event` is the kubelet's routine word (pulled, created,
/// started) on a container the syncer added ([`etc_hosts`]); its warnings
/// go up, they tell why a pod waits.
fn is_routine_of_ours(event: &Event) -> bool {
    event.type_.as_deref() == Some("Normal")
        && event
            .involved_object
            .field_path
            .as_deref()
            .is_some_and(etc_hosts::is_about_ours)
}

/// Whether `event` is the host kubelet saying it is waiting for the token
/// Secret of tenant pod `namespace/pod`: the syncer writes that Secret
/// only once the host has placed the pod, so a kubelet may look for it
/// first. It is the syncer's doing, and names a host object; the tenant
/// pod shows it as ContainerCreating, as any pod whose volumes are not
/// ready.
fn waits_for_token(event: &Event, namespace: &str, pod: &str) -> bool {
    event.reason.as_deref() == Some("FailedMount")
        && event
            .message
            .as_deref()
            .is_some_and(|m| m.contains(&format!("\"{}\"", pod_secret_name(namespace, pod))))
}

/// The host event re-addressed to the tenant object `about`. Its name
/// derives from the host event's, so repeats of that event update one
/// tenant event.
pub fn tenant_event(event: &Event, about: ObjectReference, host_event_name: &str) -> Event {
    let suffix = host_event_name
        .rsplit('.')
        .next()
        .unwrap_or(host_event_name);
    let name = about.name.clone().unwrap_or_default();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{suffix}")),
            namespace: about.namespace.clone(),
            ..ObjectMeta::default()
        },
        involved_object: about,
        reason: event.reason.clone(),
        message: event.message.clone(),
        type_: event.type_.clone(),
        count: event.count,
        first_timestamp: event.first_timestamp.clone(),
        last_timestamp: event.last_timestamp.clone(),
        event_time: event.event_time.clone(),
        source: event.source.clone(),
        reporting_component: Some(FIELD_MANAGER.to_owned()),
        reporting_instance: event.reporting_instance.clone(),
        action: event.action.clone(),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn events_of_synced_kinds_go_up_and_others_stay() {
        for kind in ["Pod", "Service", "PersistentVolumeClaim", "Ingress"] {
            assert!(synced_kind(kind).is_some(), "{kind}");
        }
        assert_eq!(
            synced_kind("Ingress").unwrap().api_version,
            "networking.k8s.io/v1"
        );
        for kind in ["Node", "Deployment", "ReplicaSet", "PersistentVolume"] {
            assert!(synced_kind(kind).is_none(), "{kind}");
        }
    }

    #[test]
    fn a_host_event_is_readdressed_to_the_tenant_pod() {
        let event: Event = serde_json::from_value(json!({
            "metadata": { "name": "web-abc-default-0123456789.18a2b3c4d5", "namespace": "vnest-t-a-x-wl" },
            "involvedObject": { "kind": "Pod", "name": "web-abc-default-0123456789", "namespace": "vnest-t-a-x-wl",
                                "fieldPath": "spec.containers{web}" },
            "reason": "Started", "message": "Started container web", "type": "Normal", "count": 1,
            "source": { "component": "kubelet", "host": "vnest-node1" },
        }))
        .unwrap();
        let about = ObjectReference {
            kind: Some("Pod".into()),
            api_version: Some("v1".into()),
            namespace: Some("default".into()),
            name: Some("web-abc".into()),
            uid: Some("u-1".into()),
            field_path: event.involved_object.field_path.clone(),
            ..ObjectReference::default()
        };
        let copy = tenant_event(&event, about, "web-abc-default-0123456789.18a2b3c4d5");
        assert_eq!(copy.metadata.name.as_deref(), Some("web-abc.18a2b3c4d5"));
        assert_eq!(copy.involved_object.name.as_deref(), Some("web-abc"));
        assert_eq!(copy.involved_object.uid.as_deref(), Some("u-1"));
        assert_eq!(
            copy.involved_object.field_path.as_deref(),
            Some("spec.containers{web}")
        );
        assert_eq!(copy.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(copy.reason.as_deref(), Some("Started"));
        assert_eq!(copy.source.unwrap().host.as_deref(), Some("vnest-node1"));
    }

    #[test]
    fn a_repeat_changes_the_count_message_and_last_time_only() {
        let event: Event = serde_json::from_value(json!({
            "metadata": { "name": "web.1", "namespace": "default" },
            "involvedObject": { "kind": "Pod", "name": "web" },
            "reason": "BackOff", "message": "Back-off restarting", "type": "Warning", "count": 4,
            "firstTimestamp": "2026-12-06T10:00:00Z", "lastTimestamp": "2026-12-06T10:05:00Z",
        }))
        .unwrap();
        assert_eq!(
            repeat(&event),
            json!({ "count": 4, "message": "Back-off restarting", "lastTimestamp": "2026-12-06T10:05:00Z" })
        );
    }

    #[test]
    fn only_the_wait_for_a_pods_own_token_stays_on_the_host() {
        let failed_mount = |message: String| -> Event {
            serde_json::from_value(json!({
                "metadata": { "name": "p.1" }, "involvedObject": { "kind": "Pod" },
                "reason": "FailedMount", "type": "Warning", "message": message,
            }))
            .unwrap()
        };
        let own = pod_secret_name("default", "web");
        let waiting = failed_mount(format!(
            "MountVolume.SetUp failed for volume \"kube-api-access-x\" : secret \"{own}\" not found"
        ));
        assert!(waits_for_token(&waiting, "default", "web"));
        assert!(!waits_for_token(&waiting, "default", "other"));
        let tenants_secret = failed_mount(
            "MountVolume.SetUp failed for volume \"data\" : secret \"creds-default-0123456789\" not found"
                .to_owned(),
        );
        assert!(!waits_for_token(&tenants_secret, "default", "web"));
        let mut started = waiting.clone();
        started.reason = Some("Started".to_owned());
        assert!(!waits_for_token(&started, "default", "web"));
    }
}
