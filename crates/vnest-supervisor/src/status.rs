//! What the supervisor tells the user on the VirtualCluster: one condition
//! per stage with a reason to act on, the phase, and when it expires. Pure
//! functions, so every state a user can see is tested without a server.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use vnest_api::{Phase, VirtualCluster};

use vnest_api::NodePoolMode;
pub use vnest_api::conditions::{
    APISERVER, BACKUP, CERTIFICATES, CLUSTER_DNS, CONTROL_PLANE_PLACEMENT, CONTROLLER_MANAGER,
    DATASTORE, INGRESS_HOSTS, NODE_POOL, PID_LIMIT, READY, SCHEDULER, SYNCER, UPGRADE,
};

use crate::ingress_grants::Held;
use crate::pool_nodes::NodePidLimit;

/// The outcome of one stage of a reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Stage {
    pub fn ok(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ok: true,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
    pub fn waiting(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            ..Self::ok(type_, reason, message)
        }
    }
}

/// The stages the Ready condition needs (the tenant's DNS is not one: its
/// pods run through the syncer, after Ready). The scheduler's stage is
/// there only when the tenant has one.
const READY_NEEDS: [&str; 6] = [
    CERTIFICATES,
    DATASTORE,
    APISERVER,
    CONTROLLER_MANAGER,
    SCHEDULER,
    SYNCER,
];

/// The Ready stage from the others; `paused` and a refused spec override.
pub fn ready(stages: &[Stage], paused: bool) -> Stage {
    if paused {
        return Stage::waiting(
            READY,
            "Paused",
            "the control plane is scaled to zero with its data kept; set spec.paused to false to resume",
        );
    }
    let pending: Vec<&Stage> = stages
        .iter()
        .filter(|s| READY_NEEDS.contains(&s.type_) && !s.ok)
        .collect();
    match pending.first() {
        None => Stage::ok(
            READY,
            "ControlPlaneReady",
            "the tenant control plane is serving",
        ),
        Some(first) => Stage::waiting(
            READY,
            &first.reason,
            format!("{}: {}", first.type_, first.message),
        ),
    }
}

/// The phase shown in `kubectl get vc`.
pub fn phase(stages: &[Stage], paused: bool, refused: bool) -> Phase {
    if refused {
        Phase::Failed
    } else if paused {
        Phase::Paused
    } else if stages.iter().any(|s| s.type_ == READY && s.ok) {
        Phase::Ready
    } else {
        Phase::Provisioning
    }
}

/// Conditions for `stages`, keeping each one's last transition time while
/// its status stays the same (so `kubectl describe` says since when).
pub fn conditions(
    previous: &[Condition],
    stages: &[Stage],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    stages
        .iter()
        .map(|stage| {
            let status = if stage.ok { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c.type_ == stage.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: stage.type_.to_owned(),
                status: status.to_owned(),
                reason: stage.reason.clone(),
                message: stage.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// Whether the pool has what its mode promises: a Dedicated pool nodes no
/// other VirtualCluster's pool takes; a Shared one says with whom it shares.
pub fn node_pool(mode: NodePoolMode, nodes: usize, shared_with: &[(String, Vec<String>)]) -> Stage {
    if nodes == 0 {
        return Stage::waiting(
            NODE_POOL,
            "NoPoolNodes",
            "no node carries the labels of spec.nodePool.nodeSelector: the tenant's pods cannot run",
        );
    }
    let sharing = shared_with
        .iter()
        .map(|(other, nodes)| format!("{other} ({})", nodes.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    match mode {
        NodePoolMode::Dedicated if !shared_with.is_empty() => Stage::waiting(
            NODE_POOL,
            "NodesShared",
            format!(
                "the pool is Dedicated, but other VirtualClusters' pools take its nodes: {sharing}; give each pool node labels of its own, or make both Shared with a sandbox RuntimeClass"
            ),
        ),
        NodePoolMode::Dedicated => Stage::ok(
            NODE_POOL,
            "Dedicated",
            format!("{nodes} nodes, no other VirtualCluster's pool takes any of them"),
        ),
        NodePoolMode::Shared if shared_with.is_empty() => Stage::ok(
            NODE_POOL,
            "Shared",
            format!("{nodes} nodes, shared with no other VirtualCluster yet"),
        ),
        NodePoolMode::Shared => Stage::ok(
            NODE_POOL,
            "Shared",
            format!("{nodes} nodes, shared with {sharing}"),
        ),
    }
}

/// Whether the control plane's pods (on `nodes`) run apart from other
/// VirtualClusters' pools (`others`, with the nodes they share): a tenant
/// escaping its container there would reach this cluster's CA keys.
/// Whether the ingress hosts granted are this cluster's to claim.
pub fn ingress_hosts(held: &Held) -> Stage {
    if held.withheld.is_empty() {
        return Stage::ok(
            INGRESS_HOSTS,
            "Held",
            format!("the tenant's Ingresses may claim {}", held.hosts.join(", ")),
        );
    }
    let withheld = held
        .withheld
        .iter()
        .map(|(pattern, other)| format!("{pattern} (held by {other})"))
        .collect::<Vec<_>>()
        .join(", ");
    let kept = if held.hosts.is_empty() {
        "none".to_owned()
    } else {
        held.hosts.join(", ")
    };
    Stage::waiting(
        INGRESS_HOSTS,
        "HeldByOlderCluster",
        format!(
            "granted patterns overlap older VirtualClusters' and stay theirs: {withheld}; the tenant's Ingresses may claim {kept}"
        ),
    )
}

pub fn control_plane_placement(nodes: &[String], others: &[(String, Vec<String>)]) -> Stage {
    if nodes.is_empty() {
        return Stage::waiting(
            CONTROL_PLANE_PLACEMENT,
            "NotScheduled",
            "the control plane's pods are on no node yet",
        );
    }
    if others.is_empty() {
        return Stage::ok(
            CONTROL_PLANE_PLACEMENT,
            "ApartFromTenants",
            format!(
                "the control plane runs on {}, where no other VirtualCluster's pool runs",
                nodes.join(", ")
            ),
        );
    }
    let sharing = others
        .iter()
        .map(|(other, nodes)| format!("{other} ({})", nodes.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    Stage::waiting(
        CONTROL_PLANE_PLACEMENT,
        "OnTenantNodes",
        format!(
            "the control plane (which holds this cluster's CA keys) runs on {}, nodes other VirtualClusters' pools take: {sharing}; a container escape there reaches it. Set spec.controlPlane.nodeSelector to nodes outside every pool",
            nodes.join(", ")
        ),
    )
}

/// Whether every pool node limits a pod to `wanted` processes or fewer,
/// naming the nodes that do not (or could not be read).
pub fn pid_limit(wanted: i64, nodes: &[NodePidLimit]) -> Stage {
    if nodes.is_empty() {
        return Stage::waiting(
            PID_LIMIT,
            "NoPoolNodes",
            "no node matches spec.nodePool.nodeSelector, so nothing enforces spec.isolation.pidLimit yet",
        );
    }
    let mut loose = Vec::new();
    let mut unknown = Vec::new();
    for (node, limit) in nodes {
        match limit {
            Ok(Some(limit)) if *limit <= wanted => {}
            Ok(Some(limit)) => loose.push(format!("{node} (podPidsLimit {limit})")),
            Ok(None) => loose.push(format!("{node} (no podPidsLimit)")),
            Err(why) => unknown.push(format!("{node} ({why})")),
        }
    }
    if !loose.is_empty() {
        return Stage::waiting(
            PID_LIMIT,
            "NotEnforced",
            format!(
                "pods may run more than spec.isolation.pidLimit {wanted} processes on {}: set the kubelet's podPidsLimit to {wanted} or less on the pool's nodes",
                loose.join(", ")
            ),
        );
    }
    if !unknown.is_empty() {
        return Stage::waiting(
            PID_LIMIT,
            "Unknown",
            format!(
                "could not read the kubelet configuration of {} (the supervisor needs get on nodes/configz and to reach the kubelet port)",
                unknown.join(", ")
            ),
        );
    }
    Stage::ok(
        PID_LIMIT,
        "Enforced",
        format!(
            "every pool node limits a pod to {wanted} processes or fewer ({} nodes)",
            nodes.len()
        ),
    )
}

/// Whether the scheduled snapshots are taken, from their CronJob's status
/// (`None` before the CronJob exists).
pub fn backup(
    schedule: &str,
    keep: i32,
    paused: bool,
    cron_job: Option<&k8s_openapi::api::batch::v1::CronJobStatus>,
) -> Stage {
    let last_success = cron_job.and_then(|s| s.last_successful_time.as_ref());
    let last_run = cron_job.and_then(|s| s.last_schedule_time.as_ref());
    let running = cron_job.is_some_and(|s| s.active.as_ref().is_some_and(|a| !a.is_empty()));
    let last = last_success.map_or_else(
        || "none has succeeded yet".to_owned(),
        |t| format!("the last was taken at {}", t.0),
    );
    if paused {
        return Stage::waiting(
            BACKUP,
            "Paused",
            format!("the cluster is paused, so no snapshot is taken ({last})"),
        );
    }
    if running {
        return Stage::ok(
            BACKUP,
            "Running",
            format!("a snapshot is being taken now; {last}"),
        );
    }
    match (last_run, last_success) {
        (None, None) => Stage::waiting(
            BACKUP,
            "NotYet",
            format!("no snapshot yet; the first is due on the schedule {schedule:?} (UTC)"),
        ),
        (Some(run), success) if success.is_none_or(|s| s.0 < run.0) => Stage::waiting(
            BACKUP,
            "LastRunFailed",
            format!(
                "the run of {} did not succeed ({last}); its Job in the control-plane namespace says why (`kubectl logs job/NAME`)",
                run.0
            ),
        ),
        _ => Stage::ok(
            BACKUP,
            "Taken",
            format!(
                "{last}; the next is due on the schedule {schedule:?} (UTC), the newest {keep} are kept"
            ),
        ),
    }
}

/// When `vc` expires: `spec.expiresAt`, or its creation time plus
/// `spec.ttl`. `Err` says why the TTL cannot be read (the schema's pattern
/// lets through numbers too large for a duration).
pub fn expires_at(vc: &VirtualCluster) -> Result<Option<Timestamp>, String> {
    if let Some(at) = &vc.spec.expires_at {
        return Ok(Some(at.0));
    }
    let Some(ttl) = &vc.spec.ttl else {
        return Ok(None);
    };
    let created = vc
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or_else(Timestamp::now, |t| t.0);
    let duration = vnest_api::ttl::parse(ttl).map_err(|e| e.to_string())?;
    let duration = SignedDuration::try_from(duration).map_err(|e| format!("ttl {ttl:?}: {e}"))?;
    created
        .checked_add(duration)
        .map(Some)
        .map_err(|_| format!("ttl {ttl:?} ends past the year 9999"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn all_ok() -> Vec<Stage> {
        READY_NEEDS
            .iter()
            .map(|t| Stage::ok(t, "Running", "fine"))
            .collect()
    }

    #[test]
    fn ready_waits_for_the_first_pending_stage_and_says_which() {
        let mut stages = all_ok();
        assert!(ready(&stages, false).ok);
        stages[1] = Stage::waiting(DATASTORE, "EtcdStarting", "0/1 etcd members ready");
        let r = ready(&stages, false);
        assert!(!r.ok);
        assert_eq!(r.reason, "EtcdStarting");
        assert_eq!(r.message, "Datastore: 0/1 etcd members ready");
        assert_eq!(ready(&all_ok(), true).reason, "Paused");
    }

    #[test]
    fn transition_times_move_only_when_the_status_does() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let first = conditions(
            &[],
            &[Stage::waiting(APISERVER, "Starting", "")],
            Some(1),
            t0,
        );
        let same = conditions(
            &first,
            &[Stage::waiting(APISERVER, "Still", "")],
            Some(1),
            t1,
        );
        assert_eq!(same[0].last_transition_time, Time(t0));
        let flipped = conditions(&same, &[Stage::ok(APISERVER, "Running", "")], Some(2), t1);
        assert_eq!(flipped[0].last_transition_time, Time(t1));
        assert_eq!(flipped[0].observed_generation, Some(2));
    }

    #[test]
    fn phase_follows_refusal_pause_and_readiness() {
        let mut stages = all_ok();
        stages.push(ready(&stages, false));
        assert_eq!(phase(&stages, false, false), Phase::Ready);
        assert_eq!(phase(&stages, true, false), Phase::Paused);
        assert_eq!(phase(&stages, false, true), Phase::Failed);
        assert_eq!(phase(&all_ok(), false, false), Phase::Provisioning);
    }

    #[test]
    fn the_pid_limit_holds_only_when_every_pool_node_is_at_or_below_it() {
        let node = |name: &str, limit: Result<Option<i64>, String>| (name.to_owned(), limit);
        let held = pid_limit(256, &[node("n1", Ok(Some(256))), node("n2", Ok(Some(100)))]);
        assert!(held.ok && held.reason == "Enforced", "{held:?}");
        let loose = pid_limit(
            256,
            &[
                node("n1", Ok(Some(4096))),
                node("n2", Ok(None)),
                node("n3", Ok(Some(10))),
                node("n4", Err("refused".into())),
            ],
        );
        assert_eq!(loose.reason, "NotEnforced");
        assert!(
            loose
                .message
                .contains("n1 (podPidsLimit 4096), n2 (no podPidsLimit)")
        );
        assert!(!loose.message.contains("n3"));
        let unknown = pid_limit(
            256,
            &[node("n1", Ok(Some(1))), node("n4", Err("refused".into()))],
        );
        assert_eq!(unknown.reason, "Unknown");
        assert!(unknown.message.contains("n4 (refused)"));
        assert_eq!(pid_limit(256, &[]).reason, "NoPoolNodes");
    }

    #[test]
    fn the_backup_condition_tells_the_last_snapshot_or_the_failed_run() {
        use k8s_openapi::api::batch::v1::CronJobStatus;
        use k8s_openapi::api::core::v1::ObjectReference;
        let at = |s: &str| Time(s.parse().unwrap());
        let status = |run: Option<&str>, success: Option<&str>, active: bool| CronJobStatus {
            last_schedule_time: run.map(at),
            last_successful_time: success.map(at),
            active: active.then(|| vec![ObjectReference::default()]),
        };
        let t1 = "2026-12-05T03:00:00Z";
        let t2 = "2026-12-06T03:00:00Z";
        let stage = |s: Option<&CronJobStatus>| backup("0 3 * * *", 7, false, s);
        assert_eq!(stage(None).reason, "NotYet");
        let taken = stage(Some(&status(Some(t1), Some(t1), false)));
        assert!(taken.ok && taken.reason == "Taken", "{taken:?}");
        assert!(taken.message.contains("newest 7"), "{}", taken.message);
        let failed = stage(Some(&status(Some(t2), Some(t1), false)));
        assert!(!failed.ok && failed.reason == "LastRunFailed", "{failed:?}");
        assert!(
            failed.message.contains("2026-12-06T03:00:00Z"),
            "{}",
            failed.message
        );
        let never = stage(Some(&status(Some(t1), None, false)));
        assert_eq!(never.reason, "LastRunFailed");
        let running = stage(Some(&status(Some(t2), Some(t1), true)));
        assert!(running.ok && running.reason == "Running", "{running:?}");
        let paused = backup(
            "0 3 * * *",
            7,
            true,
            Some(&status(Some(t1), Some(t1), false)),
        );
        assert_eq!(paused.reason, "Paused");
    }

    #[test]
    fn a_control_plane_on_another_tenants_pool_says_whose_and_what_to_do() {
        let nodes = ["n1".to_owned(), "n2".to_owned()];
        let apart = control_plane_placement(&nodes, &[]);
        assert!(apart.ok);
        assert_eq!(apart.reason, "ApartFromTenants");
        let others = [("t/b".to_owned(), vec!["n2".to_owned()])];
        let shared = control_plane_placement(&nodes, &others);
        assert!(!shared.ok);
        assert_eq!(shared.reason, "OnTenantNodes");
        assert!(shared.message.contains("t/b (n2)"), "{}", shared.message);
        assert!(shared.message.contains("spec.controlPlane.nodeSelector"));
        assert_eq!(control_plane_placement(&[], &[]).reason, "NotScheduled");
    }

    #[test]
    fn a_dedicated_pool_whose_nodes_another_pool_takes_says_so() {
        let shared = [("t/b".to_owned(), vec!["n1".to_owned()])];
        let taken = node_pool(NodePoolMode::Dedicated, 2, &shared);
        assert!(!taken.ok);
        assert_eq!(taken.reason, "NodesShared");
        assert!(taken.message.contains("t/b (n1)"), "{}", taken.message);
        assert!(node_pool(NodePoolMode::Dedicated, 2, &[]).ok);
        assert!(node_pool(NodePoolMode::Shared, 2, &shared).ok);
        assert_eq!(
            node_pool(NodePoolMode::Dedicated, 0, &[]).reason,
            "NoPoolNodes"
        );
    }

    #[test]
    fn expiry_comes_from_ttl_or_expires_at() {
        let mut vc = VirtualCluster::new("a", Default::default());
        assert_eq!(expires_at(&vc).unwrap(), None);
        vc.metadata.creation_timestamp = Some(Time(Timestamp::from_second(0).unwrap()));
        vc.spec.ttl = Some("1h30m".into());
        assert_eq!(
            expires_at(&vc).unwrap(),
            Some(Timestamp::from_second(5400).unwrap())
        );
        vc.spec.ttl = Some("2d".into());
        assert_eq!(
            expires_at(&vc).unwrap(),
            Some(Timestamp::from_second(172_800).unwrap())
        );
        vc.spec.ttl = Some("99999999999999999999d".into());
        assert!(expires_at(&vc).unwrap_err().contains("ttl"));
        vc.spec.ttl = None;
        vc.spec.expires_at = Some(Time(Timestamp::from_second(7).unwrap()));
        assert_eq!(
            expires_at(&vc).unwrap(),
            Some(Timestamp::from_second(7).unwrap())
        );
    }
}
