//! Events up: what the host says about a tenant pod's host copy (scheduled,
//! image pulled, started, probe failed, killed…) appears on the tenant pod,
//! so `kubectl describe pod` in the tenant tells the story. Events about
//! other host objects stay on the host.

use std::sync::Arc;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use kube::Api;
use kube::api::ObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use vnest_kube::apply::apply_namespaced;

use crate::context::{FIELD_MANAGER, Syncer};
use crate::error::{OnSide, Result, Side};
use crate::naming::origin;

/// Mirrors host pod events until shutdown; a broken watch is restarted
/// with backoff.
pub async fn run(syncer: Arc<Syncer>) {
    let host: Api<Event> = Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    let stream = watcher(host, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    loop {
        match stream.try_next().await {
            Ok(Some(event)) => {
                if let Err(error) = mirror(&syncer, &event).await {
                    tracing::debug!(%error, "mirroring a host event failed");
                }
            }
            Ok(None) => return,
            Err(error) => tracing::warn!(%error, "watching host events failed"),
        }
    }
}

/// The tenant copy of a host event about a synced pod, if it is one.
async fn mirror(syncer: &Syncer, event: &Event) -> Result<()> {
    let about = &event.involved_object;
    if about.kind.as_deref() != Some("Pod") {
        return Ok(());
    }
    let Some(host_pod_name) = about.name.as_deref() else {
        return Ok(());
    };
    let host_pods: Api<Pod> = Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    let Some(host_pod) = host_pods.get_opt(host_pod_name).await.on(Side::Host)? else {
        return Ok(());
    };
    let Some((namespace, name)) = origin(host_pod.metadata.annotations.as_ref()) else {
        return Ok(());
    };
    let tenant_pods: Api<Pod> = Api::namespaced(syncer.tenant.clone(), &namespace);
    let Some(tenant_pod) = tenant_pods.get_opt(&name).await.on(Side::Tenant)? else {
        return Ok(());
    };
    let Some(host_event_name) = event.metadata.name.as_deref() else {
        return Ok(());
    };
    let copy = tenant_event(event, &tenant_pod, host_event_name, &namespace, &name);
    apply_namespaced(&syncer.tenant, FIELD_MANAGER, &copy).await?;
    Ok(())
}

/// The host event re-addressed to the tenant pod. Its name derives from
/// the host event's, so repeats of that event update one tenant event.
pub fn tenant_event(
    event: &Event,
    pod: &Pod,
    host_event_name: &str,
    namespace: &str,
    name: &str,
) -> Event {
    let suffix = host_event_name
        .rsplit('.')
        .next()
        .unwrap_or(host_event_name);
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{suffix}")),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".to_owned()),
            api_version: Some("v1".to_owned()),
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            uid: pod.metadata.uid.clone(),
            field_path: event.involved_object.field_path.clone(),
            ..ObjectReference::default()
        },
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
    fn a_host_event_is_readdressed_to_the_tenant_pod() {
        let event: Event = serde_json::from_value(json!({
            "metadata": { "name": "web-abc-default-0123456789.18a2b3c4d5", "namespace": "vnest-t-a-x-wl" },
            "involvedObject": { "kind": "Pod", "name": "web-abc-default-0123456789", "namespace": "vnest-t-a-x-wl",
                                "fieldPath": "spec.containers{web}" },
            "reason": "Started", "message": "Started container web", "type": "Normal", "count": 1,
            "source": { "component": "kubelet", "host": "vnest-node1" },
        }))
        .unwrap();
        let pod: Pod = serde_json::from_value(
            json!({ "metadata": { "name": "web-abc", "namespace": "default", "uid": "u-1" } }),
        )
        .unwrap();
        let copy = tenant_event(
            &event,
            &pod,
            "web-abc-default-0123456789.18a2b3c4d5",
            "default",
            "web-abc",
        );
        assert_eq!(copy.metadata.name.as_deref(), Some("web-abc.18a2b3c4d5"));
        assert_eq!(copy.involved_object.name.as_deref(), Some("web-abc"));
        assert_eq!(copy.involved_object.uid.as_deref(), Some("u-1"));
        assert_eq!(
            copy.involved_object.field_path.as_deref(),
            Some("spec.containers{web}")
        );
        assert_eq!(copy.reason.as_deref(), Some("Started"));
        assert_eq!(copy.source.unwrap().host.as_deref(), Some("vnest-node1"));
    }
}
