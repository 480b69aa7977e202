//! The syncer's own writes to tenant pods, remembered until its watch of
//! them has caught up.
//!
//! A pod's sync binds it and copies its status up; the watch echoes each
//! write, and an echo that arrives while the sync still runs starts the
//! next sync of that pod as soon as this one ends, from a store that may
//! not show the last write yet. That sync would bind again (a 409) and
//! copy the same status again: in a burst of 1000 pods, 0.2 bindings and
//! 0.7 status writes per pod more than needed (docs/benchmarks.md). A sync
//! whose pod the store shows older than the syncer's own last write waits
//! for the echo instead.
//!
//! "Older" compares resourceVersions as numbers. They are opaque to
//! clients in general, but kube-apiserver's are etcd revisions, which only
//! grow; one that is not a number is never taken for older.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;

use crate::pods::is_bound;

/// The last own write to each tenant pod (by UID) the store has not shown
/// yet.
#[derive(Debug, Default)]
pub struct OwnWrites {
    pending: Mutex<HashMap<String, Written>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Written {
    /// The resourceVersion the last write made (a status patch answers
    /// with it).
    resource_version: Option<u64>,
    /// The pod was bound (a binding answers with no resourceVersion).
    bound: bool,
}

fn uid(pod: &Pod) -> Option<&str> {
    pod.metadata.uid.as_deref()
}

fn version(pod: &Pod) -> Option<u64> {
    pod.metadata.resource_version.as_deref()?.parse().ok()
}

impl OwnWrites {
    fn note(&self, pod: &Pod, change: impl FnOnce(&mut Written)) {
        let Some(uid) = uid(pod) else { return };
        if let Ok(mut pending) = self.pending.lock() {
            change(pending.entry(uid.to_owned()).or_default());
        }
    }

    /// `pod` was bound by the syncer.
    pub fn bound(&self, pod: &Pod) {
        self.note(pod, |written| written.bound = true);
    }

    /// The syncer wrote to `pod`, which the write's answer shows as
    /// `written`.
    pub fn wrote(&self, pod: &Pod, written: &Pod) {
        let made = version(written);
        self.note(pod, |last| {
            last.resource_version = made.max(last.resource_version);
        });
    }

    /// Whether `pod`, as the store shows it, is older than the syncer's
    /// own last write to it. Once it is not, the write is forgotten.
    pub fn ahead_of(&self, pod: &Pod) -> bool {
        let Some(uid) = uid(pod) else { return false };
        let Ok(mut pending) = self.pending.lock() else {
            return false;
        };
        let Some(written) = pending.get(uid).copied() else {
            return false;
        };
        let older = match (version(pod), written.resource_version) {
            (Some(seen), Some(made)) => seen < made,
            _ => false,
        };
        if older || (written.bound && !is_bound(pod)) {
            return true;
        }
        pending.remove(uid);
        false
    }

    /// Forgets `pod` (deleted).
    pub fn forget(&self, pod: &Pod) {
        let Some(uid) = uid(pod) else { return };
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(uid);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pod(version: &str, node: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "uid": "u1", "resourceVersion": version },
            "spec": { "containers": [], "nodeName": node },
        }))
        .unwrap()
    }

    #[test]
    fn a_store_behind_the_syncers_own_write_waits_for_its_echo() {
        let writes = OwnWrites::default();
        let seen = pod("10", None);
        assert!(!writes.ahead_of(&seen), "nothing written yet");
        writes.bound(&seen);
        assert!(writes.ahead_of(&seen), "bound, the store shows it unbound");
        writes.wrote(&seen, &pod("12", Some("n")));
        assert!(writes.ahead_of(&pod("11", Some("n"))), "the binding's echo");
        assert!(!writes.ahead_of(&pod("12", Some("n"))), "caught up");
        assert!(
            !writes.ahead_of(&pod("11", Some("n"))),
            "forgotten once caught up"
        );
    }

    #[test]
    fn versions_that_are_not_numbers_are_never_older() {
        let writes = OwnWrites::default();
        let seen = pod("a", Some("n"));
        writes.wrote(&seen, &pod("b", Some("n")));
        assert!(!writes.ahead_of(&seen));
    }

    #[test]
    fn a_deleted_pod_is_forgotten() {
        let writes = OwnWrites::default();
        let seen = pod("10", None);
        writes.bound(&seen);
        writes.forget(&seen);
        assert!(!writes.ahead_of(&seen));
    }
}
