//! What the supervisor applied for each tenant lately, so that a reconcile
//! does not write the same objects again. A cluster that is not settled is
//! reconciled every 2 s, and each reconcile applied every host object of
//! the tenant and CoreDNS's six objects in the tenant cluster: dozens of
//! server-side applies every 2 s per starting cluster, on the host
//! apiserver and on a tenant apiserver still starting, with nothing
//! changed.
//!
//! Only what no watch of the supervisor covers is left out this way: a
//! change to a watched object (Deployments, StatefulSets, Services) starts
//! a reconcile that must apply it again, so those are always applied.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an apply is trusted: after this it is made again, which
/// repairs what someone else changed or deleted (as often as a settled
/// cluster is reconciled anyway).
pub const TRUSTED_FOR: Duration = Duration::from_secs(300);

/// One tenant's objects: the hash of what was applied, and when.
type Applied = HashMap<String, (u64, Instant)>;

/// By tenant (a VirtualCluster's UID), what was applied lately.
#[derive(Default)]
pub struct RecentlyApplied {
    applied: Mutex<HashMap<String, Applied>>,
}

/// The hash of `object` as it would be sent.
pub fn hash_of(object: &impl serde::Serialize) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(object)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

impl RecentlyApplied {
    /// Whether `hash` was applied as `object` of `tenant` less than
    /// [`TRUSTED_FOR`] before `now`.
    pub fn holds(&self, tenant: &str, object: &str, hash: u64, now: Instant) -> bool {
        self.applied
            .lock()
            .map(|applied| {
                applied
                    .get(tenant)
                    .and_then(|objects| objects.get(object))
                    .is_some_and(|(applied, at)| {
                        *applied == hash && now.duration_since(*at) < TRUSTED_FOR
                    })
            })
            .unwrap_or(false)
    }

    /// Notes that `hash` was applied as `object` of `tenant` at `at`.
    pub fn record(&self, tenant: &str, object: &str, hash: u64, at: Instant) {
        if let Ok(mut applied) = self.applied.lock() {
            applied
                .entry(tenant.to_owned())
                .or_default()
                .insert(object.to_owned(), (hash, at));
        }
    }

    /// Forgets `object` of `tenant`.
    pub fn forget_object(&self, tenant: &str, object: &str) {
        if let Ok(mut applied) = self.applied.lock()
            && let Some(objects) = applied.get_mut(tenant)
        {
            objects.remove(object);
        }
    }

    /// Forgets what of `tenant`'s is not in `kept` (no longer desired:
    /// applied again if it is desired again).
    pub fn keep_only(&self, tenant: &str, kept: &std::collections::BTreeSet<String>) {
        if let Ok(mut applied) = self.applied.lock()
            && let Some(objects) = applied.get_mut(tenant)
        {
            objects.retain(|object, _| kept.contains(object));
        }
    }

    /// Forgets all of `tenant`'s (deleted), to be applied again.
    pub fn forget(&self, tenant: &str) {
        if let Ok(mut applied) = self.applied.lock() {
            applied.remove(tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apply_is_trusted_for_a_while_and_only_for_the_same_object() {
        let memo = RecentlyApplied::default();
        let start = Instant::now();
        let dns = hash_of(&serde_json::json!({ "image": "coredns:1" }));
        assert!(!memo.holds("a", "dns", dns, start), "nothing applied yet");
        memo.record("a", "dns", dns, start);
        assert!(memo.holds("a", "dns", dns, start + Duration::from_secs(10)));
        assert!(!memo.holds("b", "dns", dns, start), "another tenant");
        assert!(!memo.holds("a", "other", dns, start), "another object");
        let changed = hash_of(&serde_json::json!({ "image": "coredns:2" }));
        assert!(!memo.holds("a", "dns", changed, start), "changed");
        assert!(
            !memo.holds("a", "dns", dns, start + TRUSTED_FOR),
            "applied again after a while"
        );
        memo.record("a", "other", dns, start);
        memo.forget_object("a", "dns");
        assert!(!memo.holds("a", "dns", dns, start));
        assert!(memo.holds("a", "other", dns, start));
        memo.record("a", "dns", dns, start);
        memo.keep_only("a", &["dns".to_owned()].into());
        assert!(memo.holds("a", "dns", dns, start));
        assert!(!memo.holds("a", "other", dns, start), "no longer desired");
        memo.forget("a");
        assert!(!memo.holds("a", "dns", dns, start));
    }
}
