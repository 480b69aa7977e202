//! What the supervisor tells the user on the VirtualCluster: one condition
//! per stage with a reason to act on, the phase, and when it expires. Pure
//! functions, so every state a user can see is tested without a server.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use vnest_api::{Phase, VirtualCluster};

pub use vnest_api::conditions::{
    APISERVER, CERTIFICATES, CLUSTER_DNS, CONTROLLER_MANAGER, DATASTORE, READY, SYNCER,
};

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
/// pods run through the syncer, after Ready).
const READY_NEEDS: [&str; 5] = [
    CERTIFICATES,
    DATASTORE,
    APISERVER,
    CONTROLLER_MANAGER,
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
    let duration = humantime::parse_duration(ttl).map_err(|e| format!("ttl {ttl:?}: {e}"))?;
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
