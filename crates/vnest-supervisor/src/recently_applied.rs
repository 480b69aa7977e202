//! What the supervisor applied to each tenant cluster lately, so that a
//! reconcile does not write the same objects again. A cluster that is not
//! settled is reconciled every 2 s; applying CoreDNS's six objects each
//! time was most of what the supervisor asked of a tenant apiserver that
//! was still starting.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an apply is trusted: after this it is made again, which
/// repairs what the tenant changed or deleted.
pub const TRUSTED_FOR: Duration = Duration::from_secs(300);

/// By tenant (a VirtualCluster's UID): the hash of what was applied, and
/// when.
#[derive(Default)]
pub struct RecentlyApplied {
    applied: Mutex<HashMap<String, (u64, Instant)>>,
}

/// The hash of `objects` as they would be sent.
pub fn hash_of(objects: &impl serde::Serialize) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(objects)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

impl RecentlyApplied {
    /// Whether `hash` was applied to `tenant` less than [`TRUSTED_FOR`]
    /// before `now`.
    pub fn holds(&self, tenant: &str, hash: u64, now: Instant) -> bool {
        self.applied
            .lock()
            .map(|applied| {
                applied.get(tenant).is_some_and(|(applied, at)| {
                    *applied == hash && now.duration_since(*at) < TRUSTED_FOR
                })
            })
            .unwrap_or(false)
    }

    /// Notes that `hash` was applied to `tenant` at `at`.
    pub fn record(&self, tenant: &str, hash: u64, at: Instant) {
        if let Ok(mut applied) = self.applied.lock() {
            applied.insert(tenant.to_owned(), (hash, at));
        }
    }

    /// Forgets `tenant`: its apiserver stopped serving (paused, rolling,
    /// restored, deleted), and what it holds is to be applied again.
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
    fn an_apply_is_trusted_for_a_while_and_only_for_the_same_objects() {
        let memo = RecentlyApplied::default();
        let start = Instant::now();
        let dns = hash_of(&serde_json::json!({ "image": "coredns:1" }));
        assert!(!memo.holds("a", dns, start), "nothing applied yet");
        memo.record("a", dns, start);
        assert!(memo.holds("a", dns, start + Duration::from_secs(10)));
        assert!(!memo.holds("b", dns, start), "another tenant");
        let changed = hash_of(&serde_json::json!({ "image": "coredns:2" }));
        assert!(!memo.holds("a", changed, start), "other objects");
        assert!(
            !memo.holds("a", dns, start + TRUSTED_FOR),
            "applied again after a while"
        );
        memo.forget("a");
        assert!(!memo.holds("a", dns, start));
    }
}
