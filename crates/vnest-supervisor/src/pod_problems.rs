//! Why a control-plane component is not coming up, in the words its pods
//! give: unschedulable (and why), an image that cannot be pulled, a
//! container that keeps crashing. Appended to a waiting condition so that
//! `kubectl describe vc` says what to fix without digging into the host.

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::desired::pods::COMPONENT;

/// Container waiting reasons that need a person, not more time.
const STUCK: [&str; 6] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// The first problem of `component`'s pods in `namespace`, if any.
pub async fn first_problem(client: &Client, namespace: &str, component: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = ListParams::default().labels(&format!("{COMPONENT}={component}"));
    let list = pods.list(&selector).await.ok()?;
    list.items.iter().find_map(problem)
}

/// What is wrong with one pod, if anything needs a person.
pub fn problem(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod.status.as_ref()?;
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    if let Some(c) = unschedulable {
        return Some(format!(
            "pod {name} cannot be scheduled: {}",
            c.message.as_deref().unwrap_or("no reason given")
        ));
    }
    for container in status.container_statuses.iter().flatten() {
        let waiting = container.state.as_ref().and_then(|s| s.waiting.as_ref());
        let Some(reason) = waiting.and_then(|w| w.reason.as_deref()) else {
            continue;
        };
        if !STUCK.contains(&reason) {
            continue;
        }
        let message = waiting
            .and_then(|w| w.message.as_deref())
            .unwrap_or_default();
        let exit = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| format!(" (last exit code {})", t.exit_code))
            .unwrap_or_default();
        return Some(
            format!("pod {name}: {reason}{exit} {message}")
                .trim_end()
                .to_owned(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": "apiserver-1" }, "status": status }))
            .unwrap()
    }

    #[test]
    fn problems_that_need_a_person_are_named_with_their_reason() {
        let cases = [
            (json!({ "phase": "Running" }), None),
            (
                json!({ "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector." }] }),
                Some(
                    "pod apiserver-1 cannot be scheduled: 0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
                ),
            ),
            (
                json!({ "containerStatuses": [{ "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                        "state": { "waiting": { "reason": "ImagePullBackOff", "message": "Back-off pulling image \"x:v1.36.0\"" } } }] }),
                Some("pod apiserver-1: ImagePullBackOff Back-off pulling image \"x:v1.36.0\""),
            ),
            (
                json!({ "containerStatuses": [{ "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 3,
                        "state": { "waiting": { "reason": "CrashLoopBackOff" } },
                        "lastState": { "terminated": { "exitCode": 1 } } }] }),
                Some("pod apiserver-1: CrashLoopBackOff (last exit code 1)"),
            ),
            (
                json!({ "containerStatuses": [{ "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                        "state": { "waiting": { "reason": "ContainerCreating" } } }] }),
                None,
            ),
        ];
        for (i, (status, want)) in cases.into_iter().enumerate() {
            assert_eq!(problem(&pod(status)).as_deref(), want, "case {i}");
        }
    }
}
