//! A tenant pod's status from its host pod's: what the host's kubelet
//! and scheduler say, as the tenant reads it (its own QoS class, the
//! resources it asked for, its generations, the conditions only the
//! tenant sets kept), and the status a pod ends with when its host pod
//! went without a final word.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, Pod, PodCondition, PodSpec, PodStatus,
    ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::context::Syncer;
use crate::error::{OnSide, Result, Side};
use crate::etc_hosts;
use crate::pods::identity;

/// The host pod's status, as the tenant's (phase, conditions, addresses,
/// container states); `bound`: the tenant pod is bound to its node.
pub(crate) async fn sync_status(
    pod: &Pod,
    host_pod: &Pod,
    bound: bool,
    syncer: &Syncer,
) -> Result<()> {
    let Some(mut host_status) = host_pod.status.clone() else {
        return Ok(());
    };
    // Bound, the tenant pod already says it is scheduled (the binding
    // sets the condition): copying the host's word on it alone would be a
    // write that tells nothing, while the pod starts and the next status
    // is on its way.
    if bound && says_only_scheduled(&host_status) {
        return Ok(());
    }
    // The QoS class is fixed when a pod is made, from its own resources; the
    // host's LimitRange may have given the host pod others.
    host_status.qos_class = pod.status.as_ref().and_then(|s| s.qos_class.clone());
    let generations = |observed| {
        tenant_observed_generation(
            observed,
            host_pod.metadata.generation,
            pod.metadata.generation,
        )
    };
    if let Some(statuses) = host_status.init_container_statuses.as_mut() {
        statuses.retain(|c| !etc_hosts::is_ours(&c.name));
    }
    if let Some(spec) = pod.spec.as_ref() {
        resources_as_asked(&mut host_status, spec);
    }
    host_status.observed_generation = generations(host_status.observed_generation);
    for condition in host_status.conditions.iter_mut().flatten() {
        condition.observed_generation = generations(condition.observed_generation);
    }
    host_status.conditions = merged_conditions(
        pod.status.as_ref().and_then(|s| s.conditions.as_deref()),
        host_status.conditions.take(),
    );
    if pod.status.as_ref() == Some(&host_status) {
        return Ok(());
    }
    let (namespace, name) = identity(pod);
    let api: Api<Pod> = Api::namespaced(syncer.tenant.clone(), namespace);
    let written = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": host_status })),
        )
        .await
        .on(Side::Tenant)?;
    syncer.own_writes.wrote(pod, &written);
    Ok(())
}

/// Whether a host pod's status says no more than that the pod was
/// scheduled: pending, no addresses, no containers started, and no
/// condition but `PodScheduled` true.
fn says_only_scheduled(status: &PodStatus) -> bool {
    let none = |statuses: &Option<Vec<_>>| statuses.as_ref().is_none_or(Vec::is_empty);
    matches!(status.phase.as_deref(), None | Some("Pending"))
        && status.host_ip.is_none()
        && status.pod_ip.is_none()
        && status.start_time.is_none()
        && status.message.is_none()
        && status.reason.is_none()
        && none(&status.container_statuses)
        && none(&status.init_container_statuses)
        && none(&status.ephemeral_container_statuses)
        && status
            .conditions
            .iter()
            .flatten()
            .all(|c| c.type_ == "PodScheduled" && c.status == "True")
}

/// The pod conditions a node's kubelet (and the scheduler) own: the host
/// pod's word on them is the tenant pod's, including their absence (a
/// resize that ended drops `PodResizeInProgress`).
const HOST_CONDITIONS: &[&str] = &[
    "PodScheduled",
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
    "PodResizePending",
    "PodResizeInProgress",
];

/// The host pod's conditions, and those the tenant's own controllers and
/// API set that the host has no word on (`DisruptionTarget` from an
/// eviction, readiness gates): a status copied up replaces the list, so
/// those are kept by type.
fn merged_conditions(
    tenant: Option<&[PodCondition]>,
    host: Option<Vec<PodCondition>>,
) -> Option<Vec<PodCondition>> {
    let mut merged = host.unwrap_or_default();
    for condition in tenant.into_iter().flatten() {
        let hosts = HOST_CONDITIONS.contains(&condition.type_.as_str());
        if !hosts && !merged.iter().any(|c| c.type_ == condition.type_) {
            merged.push(condition.clone());
        }
    }
    (!merged.is_empty()).then_some(merged)
}

/// The status a deleted pod ends with when its host pod went without a
/// final word (deleted, its node lost): `Failed`, every container not yet
/// terminated marked as a kubelet marks one it can no longer find; `None`
/// when the pod already ended. Controllers that wait for a terminal phase
/// (the Job controller's finalizer) can then let it go.
fn terminal_status(pod: &Pod) -> Option<PodStatus> {
    let mut status = pod.status.clone().unwrap_or_default();
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    status.phase = Some("Failed".to_owned());
    let lost = ContainerStateTerminated {
        exit_code: 137,
        reason: Some("ContainerStatusUnknown".to_owned()),
        message: Some("The container could not be located when the pod was terminated".to_owned()),
        ..ContainerStateTerminated::default()
    };
    for containers in [
        status.init_container_statuses.iter_mut().flatten(),
        status.container_statuses.iter_mut().flatten(),
    ] {
        for container in containers {
            let state = container.state.get_or_insert_with(Default::default);
            if state.terminated.is_none() {
                container.last_state = Some(state.clone());
                *state = ContainerState {
                    terminated: Some(lost.clone()),
                    ..ContainerState::default()
                };
                container.ready = false;
                container.started = Some(false);
            }
        }
    }
    for condition in status.conditions.iter_mut().flatten() {
        if ["Ready", "ContainersReady"].contains(&condition.type_.as_str()) {
            condition.status = "False".to_owned();
        }
    }
    Some(status)
}

/// Writes [`terminal_status`] to the tenant pod, if it has not ended.
pub(crate) async fn end_tenant_pod(pod: &Pod, syncer: &Syncer) -> Result<()> {
    let Some(status) = terminal_status(pod) else {
        return Ok(());
    };
    let (namespace, name) = identity(pod);
    let api: Api<Pod> = Api::namespaced(syncer.tenant.clone(), namespace);
    match api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e).on(Side::Tenant),
    }
}

/// The resources in container statuses as the tenant asked for them: only
/// the requests and limits the tenant's containers name (the host's
/// LimitRange may have added others to the host pod).
fn resources_as_asked(status: &mut PodStatus, spec: &PodSpec) {
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let asked: BTreeMap<&str, ResourceRequirements> = containers
        .map(|c| (c.name.as_str(), c.resources.clone().unwrap_or_default()))
        .collect();
    let keep = |values: &mut Option<BTreeMap<String, Quantity>>,
                names: &Option<BTreeMap<String, Quantity>>| {
        if let Some(map) = values.as_mut() {
            map.retain(|name, _| names.as_ref().is_some_and(|n| n.contains_key(name)));
            if map.is_empty() {
                *values = None;
            }
        }
    };
    let statuses = status
        .container_statuses
        .iter_mut()
        .flatten()
        .chain(status.init_container_statuses.iter_mut().flatten());
    for container in statuses {
        let Some(asked) = asked.get(container.name.as_str()) else {
            continue;
        };
        keep(&mut container.allocated_resources, &asked.requests);
        if let Some(resources) = container.resources.as_mut() {
            keep(&mut resources.requests, &asked.requests);
            keep(&mut resources.limits, &asked.limits);
        }
    }
    // The pod's own totals: only what the pod or one of its containers
    // names (a sum may still hold a LimitRange default of a container
    // that did not name it).
    let named = |pick: fn(&ResourceRequirements) -> &Option<BTreeMap<String, Quantity>>| {
        let mut names: BTreeMap<String, Quantity> = BTreeMap::new();
        for resources in asked.values().chain(spec.resources.iter()) {
            for name in pick(resources).iter().flatten().map(|(k, _)| k) {
                names.insert(name.clone(), Quantity::default());
            }
        }
        Some(names)
    };
    let requests = named(|r| &r.requests);
    let limits = named(|r| &r.limits);
    keep(&mut status.allocated_resources, &requests);
    if let Some(resources) = status.resources.as_mut() {
        keep(&mut resources.requests, &requests);
        keep(&mut resources.limits, &limits);
        if resources.requests.is_none() && resources.limits.is_none() {
            status.resources = None;
        }
    }
}

/// `observedGeneration` as the tenant reads it: the tenant pod's
/// generation once the host's kubelet has seen the host pod's latest spec
/// (which carries the tenant's latest, [`crate::pods`]'s spec updates), one less while it
/// has not.
fn tenant_observed_generation(
    observed: Option<i64>,
    host_generation: Option<i64>,
    tenant_generation: Option<i64>,
) -> Option<i64> {
    let observed = observed?;
    if Some(observed) >= host_generation {
        tenant_generation
    } else {
        tenant_generation.map(|g| (g - 1).max(1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pod_spec(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": "p" }, "spec": spec })).unwrap()
    }

    #[test]
    fn a_host_status_saying_only_scheduled_tells_a_bound_pod_nothing() {
        let status =
            |value: serde_json::Value| -> PodStatus { serde_json::from_value(value).unwrap() };
        let scheduled = json!({"phase": "Pending", "qosClass": "BestEffort", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-06T07:00:00Z"}
        ]});
        assert!(says_only_scheduled(&status(scheduled.clone())));
        assert!(says_only_scheduled(&status(json!({"phase": "Pending"}))));
        let unschedulable = json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes are available"}
        ]});
        assert!(
            !says_only_scheduled(&status(unschedulable)),
            "why it waits is news"
        );
        let mut starting = scheduled.clone();
        starting["hostIP"] = json!("10.0.0.1");
        assert!(!says_only_scheduled(&status(starting)));
        let mut creating = scheduled.clone();
        creating["containerStatuses"] = json!([{"name": "c", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]);
        assert!(!says_only_scheduled(&status(creating)));
        let mut initialized = scheduled;
        initialized["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!(
                {"type": "Initialized", "status": "True"}
            ));
        assert!(!says_only_scheduled(&status(initialized)));
        assert!(!says_only_scheduled(&status(
            json!({"phase": "Failed", "reason": "Evicted"})
        )));
    }

    #[test]
    fn conditions_only_the_tenant_sets_survive_a_status_copied_up() {
        let condition = |type_: &str, status: &str| PodCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            ..PodCondition::default()
        };
        let tenant = [
            condition("DisruptionTarget", "True"),
            condition("Ready", "True"),
            condition("PodResizeInProgress", "True"),
        ];
        let host = vec![
            condition("Ready", "False"),
            condition("PodScheduled", "True"),
        ];
        let merged = merged_conditions(Some(&tenant), Some(host)).unwrap();
        let seen: Vec<(&str, &str)> = merged
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("Ready", "False"),
                ("PodScheduled", "True"),
                ("DisruptionTarget", "True")
            ]
        );
        assert_eq!(merged_conditions(None, None), None);
    }

    #[test]
    fn a_pod_whose_host_copy_went_ends_failed_unless_it_ended() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "namespace": "n" },
            "spec": { "nodeName": "vnest-node1", "containers": [{ "name": "c" }, { "name": "d" }] },
            "status": {
                "phase": "Running",
                "conditions": [{ "type": "Ready", "status": "True" }, { "type": "DisruptionTarget", "status": "True" }],
                "containerStatuses": [
                    { "name": "c", "ready": true, "restartCount": 0, "image": "i", "imageID": "",
                      "state": { "running": { "startedAt": "2026-12-04T10:00:00Z" } } },
                    { "name": "d", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                      "state": { "terminated": { "exitCode": 3 } } },
                ],
            },
        }))
        .unwrap();
        let ended = terminal_status(&pod).unwrap();
        assert_eq!(ended.phase.as_deref(), Some("Failed"));
        let containers = ended.container_statuses.unwrap();
        let terminated = |i: usize| containers[i].state.clone().unwrap().terminated.unwrap();
        let c = terminated(0);
        assert_eq!(
            (c.exit_code, c.reason.as_deref()),
            (137, Some("ContainerStatusUnknown"))
        );
        assert!(containers[0].last_state.as_ref().unwrap().running.is_some());
        assert_eq!(
            terminated(1).exit_code,
            3,
            "what had ended keeps its exit code"
        );
        let conditions = ended.conditions.unwrap();
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions[1].type_, "DisruptionTarget");
        pod.status.as_mut().unwrap().phase = Some("Succeeded".to_owned());
        assert_eq!(terminal_status(&pod), None);
    }

    /// Container statuses show the resources the tenant named, not the
    /// host LimitRange's additions.
    #[test]
    fn status_resources_are_the_ones_the_tenant_asked_for() {
        let tenant = pod_spec(json!({ "containers": [
            { "name": "a", "resources": { "requests": { "cpu": "1m" }, "limits": { "cpu": "5m" } } },
            { "name": "b" },
        ] }));
        let mut status: PodStatus = serde_json::from_value(json!({
          "allocatedResources": { "cpu": "51m", "memory": "128Mi" },
          "resources": { "requests": { "cpu": "51m", "memory": "128Mi" }, "limits": { "cpu": "5m", "memory": "1Gi" } },
          "containerStatuses": [
            { "name": "a", "image": "", "imageID": "", "ready": true, "restartCount": 0,
              "allocatedResources": { "cpu": "1m", "memory": "64Mi" },
              "resources": { "requests": { "cpu": "1m", "memory": "64Mi" }, "limits": { "cpu": "5m", "memory": "512Mi" } } },
            { "name": "b", "image": "", "imageID": "", "ready": true, "restartCount": 0,
              "allocatedResources": { "cpu": "50m", "memory": "64Mi" },
              "resources": { "requests": { "cpu": "50m", "memory": "64Mi" }, "limits": { "memory": "512Mi" } } },
        ] }))
        .unwrap();
        resources_as_asked(&mut status, tenant.spec.as_ref().unwrap());
        let value = serde_json::to_value(&status).unwrap();
        let statuses = &value["containerStatuses"];
        assert_eq!(statuses[0]["allocatedResources"], json!({ "cpu": "1m" }));
        assert_eq!(
            statuses[0]["resources"],
            json!({ "requests": { "cpu": "1m" }, "limits": { "cpu": "5m" } })
        );
        assert_eq!(statuses[1].get("allocatedResources"), None);
        assert_eq!(statuses[1]["resources"], json!({}));
        assert_eq!(value["allocatedResources"], json!({ "cpu": "51m" }));
        assert_eq!(
            value["resources"],
            json!({ "requests": { "cpu": "51m" }, "limits": { "cpu": "5m" } })
        );
    }

    #[test]
    fn observed_generation_is_the_tenants_once_the_host_caught_up() {
        assert_eq!(
            tenant_observed_generation(Some(3), Some(3), Some(2)),
            Some(2)
        );
        assert_eq!(
            tenant_observed_generation(Some(2), Some(3), Some(2)),
            Some(1)
        );
        assert_eq!(
            tenant_observed_generation(Some(1), Some(2), Some(1)),
            Some(1)
        );
        assert_eq!(tenant_observed_generation(None, Some(3), Some(2)), None);
    }
}
