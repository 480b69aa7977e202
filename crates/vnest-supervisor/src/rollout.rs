//! Whether every pod of a control-plane workload runs its current
//! template, judged as `kubectl rollout status` does, and no pod of an
//! older one is still stopping. Replicas available are not enough: while a
//! Deployment surges, the old pod is the available one and the new pod may
//! not serve yet; while a StatefulSet rolls, its members are ready on the
//! old template; and a stopping apiserver serves its open connections for
//! its shutdown delay. Pure, so each case is tested.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, StatefulSet, StatefulSetStatus};

/// How far a rollout is, in words for a condition's message.
#[derive(Debug, PartialEq, Eq)]
pub struct Rollout {
    /// Every pod runs the current template and is available (ready).
    pub done: bool,
    pub message: String,
}

/// A Deployment of `what` (`kube-apiserver`): done when the controller saw
/// the current template, every wanted replica runs it and is available,
/// and no pod of an older template is left, stopping ones included (the
/// status counts those where the host has the beta
/// DeploymentReplicaSetTerminatingReplicas on, as v1.37 has by default).
pub fn deployment(what: &str, deployment: &Deployment) -> Rollout {
    let want = deployment.spec.replicas.unwrap_or(1);
    let DeploymentStatus {
        available_replicas,
        updated_replicas,
        replicas,
        observed_generation,
        terminating_replicas,
        ..
    } = deployment.status.clone().unwrap_or_default();
    let available = available_replicas.unwrap_or(0);
    let updated = updated_replicas.unwrap_or(0);
    let old = replicas.unwrap_or(0).saturating_sub(updated).max(0);
    let stopping = terminating_replicas.unwrap_or(0);
    let current = observed_generation >= deployment.metadata.generation;
    let mut message = format!("{available}/{want} {what} replicas available, {updated} updated");
    if old > 0 {
        message.push_str(&format!(", {old} of the previous template still running"));
    }
    if stopping > 0 {
        message.push_str(&format!(", {stopping} stopping"));
    }
    Rollout {
        done: current && updated >= want && old == 0 && stopping == 0 && available >= want,
        message,
    }
}

/// A StatefulSet of `what` (`etcd members`) wanting `want` ready: done
/// when the controller saw the current template, every member is ready
/// and runs it (the current revision is the update revision).
pub fn stateful_set(what: &str, want: i32, stateful_set: &StatefulSet) -> Rollout {
    let StatefulSetStatus {
        ready_replicas,
        updated_replicas,
        observed_generation,
        current_revision,
        update_revision,
        ..
    } = stateful_set.status.clone().unwrap_or_default();
    let ready = ready_replicas.unwrap_or(0);
    let updated = updated_replicas.unwrap_or(0);
    let current = observed_generation >= stateful_set.metadata.generation;
    let on_new_revision = current_revision == update_revision;
    let mut message = format!("{ready}/{want} {what} ready");
    if !on_new_revision || updated < want {
        message.push_str(&format!(", {updated} updated"));
    }
    Rollout {
        done: current && ready >= want && updated >= want && on_new_revision,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, StatefulSetSpec};
    use kube::api::ObjectMeta;

    fn deployment_at(
        generation: i64,
        observed: i64,
        (replicas, updated, available, stopping): (i32, i32, i32, i32),
    ) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            spec: DeploymentSpec {
                replicas: Some(1),
                ..DeploymentSpec::default()
            },
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                replicas: Some(replicas),
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                terminating_replicas: Some(stopping),
                ..DeploymentStatus::default()
            }),
        }
    }

    /// A renewal's roll of a 1-replica Deployment, step by step as the
    /// host reports it: only the last step is done.
    #[test]
    fn a_surging_deployment_is_done_only_once_the_new_pod_serves_alone() {
        let steps = [
            // The new template applied; the controller has not seen it.
            (deployment_at(2, 1, (1, 1, 1, 0)), false),
            // The new pod made: the available one is the old pod.
            (deployment_at(2, 2, (2, 1, 1, 0)), false),
            // Both available; the old one not yet stopping.
            (deployment_at(2, 2, (2, 1, 2, 0)), false),
            // The old pod stopping: it still serves its connections.
            (deployment_at(2, 2, (1, 1, 1, 1)), false),
            // The old pod gone.
            (deployment_at(2, 2, (1, 1, 1, 0)), true),
        ];
        for (i, (step, done)) in steps.iter().enumerate() {
            let rollout = deployment("kube-apiserver", step);
            assert_eq!(rollout.done, *done, "step {i}: {rollout:?}");
        }
        assert_eq!(
            deployment("kube-apiserver", &steps[1].0).message,
            "1/1 kube-apiserver replicas available, 1 updated, 1 of the previous template still running"
        );
        assert_eq!(
            deployment("kube-apiserver", &steps[3].0).message,
            "1/1 kube-apiserver replicas available, 1 updated, 1 stopping"
        );
        assert_eq!(
            deployment("kube-apiserver", &steps[4].0).message,
            "1/1 kube-apiserver replicas available, 1 updated"
        );
        // Nothing reported yet (a Deployment just made).
        assert!(!deployment("kube-apiserver", &Deployment::default()).done);
    }

    fn etcd(ready: i32, updated: i32, revisions: (&str, &str)) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                generation: Some(3),
                ..ObjectMeta::default()
            },
            spec: StatefulSetSpec::default(),
            status: Some(StatefulSetStatus {
                observed_generation: Some(3),
                ready_replicas: Some(ready),
                updated_replicas: Some(updated),
                current_revision: Some(revisions.0.to_owned()),
                update_revision: Some(revisions.1.to_owned()),
                ..StatefulSetStatus::default()
            }),
        }
    }

    #[test]
    fn a_rolling_stateful_set_is_done_once_every_member_is_ready_on_the_new_revision() {
        // Three members ready on the old template: the roll has not begun.
        let rolling = stateful_set("etcd members", 3, &etcd(3, 0, ("a", "b")));
        assert_eq!(
            rolling,
            Rollout {
                done: false,
                message: "3/3 etcd members ready, 0 updated".into()
            }
        );
        assert!(!stateful_set("etcd members", 3, &etcd(2, 3, ("a", "b"))).done);
        assert!(!stateful_set("etcd members", 3, &etcd(3, 3, ("a", "b"))).done);
        let done = stateful_set("etcd members", 3, &etcd(3, 3, ("b", "b")));
        assert_eq!(
            done,
            Rollout {
                done: true,
                message: "3/3 etcd members ready".into()
            }
        );
        assert!(!stateful_set("etcd members", 1, &StatefulSet::default()).done);
    }
}
