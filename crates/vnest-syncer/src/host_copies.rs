//! What the syncer knows of one kind's objects in its workloads namespace
//! on the host, kept from a metadata watch instead of read before each
//! write:
//!
//! - which names exist (and their resourceVersions), so the host's object
//!   quotas are counted from memory ([`crate::host_quota`]) rather than by
//!   listing the namespace on every create;
//! - which creates are under way, so concurrent creates are counted before
//!   the watch shows them;
//! - what the syncer last applied to each host copy (a hash of the desired
//!   object and the resourceVersion the write returned), so its own writes
//!   echoed back by the watch start no sync, and a sync whose desired copy
//!   is already there writes nothing.
//!
//! A watch may miss nothing but may lag: the host's quota admission still
//! runs after every count, and any host change the syncer did not make
//! (another resourceVersion) makes it apply again.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kube::Resource;
use kube::runtime::watcher;
use serde::Serialize;

/// A create the watch has not shown after this long is no longer counted
/// as under way (it failed without the syncer hearing, or the object went
/// before the watch caught up).
const CREATE_SEEN_WITHIN: Duration = Duration::from_secs(60);

/// One kind's host copies as far as the syncer knows them.
pub struct HostCopies {
    seen: Mutex<Seen>,
    listed: tokio::sync::watch::Sender<bool>,
}

impl Default for HostCopies {
    fn default() -> Self {
        Self {
            seen: Mutex::default(),
            listed: tokio::sync::watch::Sender::new(false),
        }
    }
}

/// The outcome of [`HostCopies::reserve`].
#[derive(Debug, PartialEq, Eq)]
pub enum Reservation {
    /// The name exists on the host (or is being created): not counted.
    Exists,
    /// Counted as one more; [`HostCopies::release`] it if the create fails.
    Reserved,
    /// One more would pass this limit (in the host admission's words).
    OverQuota(String),
}

#[derive(Default)]
struct Seen {
    /// Name → resourceVersion of every host object of the kind.
    objects: HashMap<String, String>,
    /// The listing under way after the watch (re)started.
    relisting: Option<HashMap<String, String>>,
    /// Creates sent whose objects the watch has not shown yet.
    creating: HashMap<String, Instant>,
    /// What the syncer last wrote to each host copy.
    written: HashMap<String, Written>,
}

impl Seen {
    /// Whether `name` exists, or a create of it sent before `now` is
    /// still counted as under way.
    fn exists(&self, name: &str, now: Instant) -> bool {
        self.objects.contains_key(name)
            || self
                .creating
                .get(name)
                .is_some_and(|since| now.duration_since(*since) < CREATE_SEEN_WITHIN)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Written {
    desired: u64,
    resource_version: String,
}

impl HostCopies {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        // A panic while holding the lock left plain maps behind; they are
        // still usable.
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes in one event of the kind's host watch.
    pub fn observe<K: Resource>(&self, event: &watcher::Event<K>) {
        let mut seen = self.seen();
        match event {
            watcher::Event::Init => seen.relisting = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                let (name, version) = name_and_version(object);
                seen.relisting
                    .get_or_insert_with(HashMap::new)
                    .insert(name, version);
            }
            watcher::Event::InitDone => {
                let listed = seen.relisting.take().unwrap_or_default();
                seen.objects = listed;
                let Seen {
                    objects, creating, ..
                } = &mut *seen;
                creating.retain(|name, _| !objects.contains_key(name));
                drop(seen);
                self.listed.send_replace(true);
            }
            watcher::Event::Apply(object) => {
                let (name, version) = name_and_version(object);
                seen.creating.remove(&name);
                seen.objects.insert(name, version);
            }
            watcher::Event::Delete(object) => {
                let (name, _) = name_and_version(object);
                seen.creating.remove(&name);
                seen.written.remove(&name);
                seen.objects.remove(&name);
            }
        }
    }

    /// Waits until the watch has listed the kind once.
    pub async fn listed(&self) {
        let mut listed = self.listed.subscribe();
        // The sender lives as long as `self`.
        let _ = listed.wait_for(|listed| *listed).await;
    }

    /// Counts a create of `name` against `exceeded` (which gets how many
    /// objects exist or are being created, and says whether one more is
    /// over a limit).
    pub fn reserve(
        &self,
        name: &str,
        now: Instant,
        exceeded: impl FnOnce(usize) -> Option<String>,
    ) -> Reservation {
        let mut seen = self.seen();
        seen.creating
            .retain(|_, since| now.duration_since(*since) < CREATE_SEEN_WITHIN);
        if seen.exists(name, now) {
            return Reservation::Exists;
        }
        let used = seen.objects.len() + seen.creating.len();
        if let Some(message) = exceeded(used) {
            return Reservation::OverQuota(message);
        }
        seen.creating.insert(name.to_owned(), now);
        Reservation::Reserved
    }

    /// Whether host object `name` exists (or is being created), as far as
    /// the watch and the syncer's own creates show.
    pub fn has(&self, name: &str) -> bool {
        self.seen().exists(name, Instant::now())
    }

    /// Forgets a reserved create that failed.
    pub fn release(&self, name: &str) {
        self.seen().creating.remove(name);
    }

    /// Records that the syncer wrote `desired` (see [`desired_hash`]) to
    /// host copy `name`, which the host stored as `resource_version`.
    pub fn wrote(&self, name: &str, desired: u64, resource_version: Option<&str>) {
        let mut seen = self.seen();
        match resource_version {
            Some(version) => {
                seen.written.insert(
                    name.to_owned(),
                    Written {
                        desired,
                        resource_version: version.to_owned(),
                    },
                );
            }
            None => {
                seen.written.remove(name);
            }
        }
    }

    /// Whether this version of host copy `name` is the syncer's own last
    /// write (its watch event needs no sync).
    pub fn is_own_write(&self, name: &str, resource_version: Option<&str>) -> bool {
        let seen = self.seen();
        seen.written
            .get(name)
            .is_some_and(|w| Some(w.resource_version.as_str()) == resource_version)
    }

    /// Whether host copy `name` is, as far as the watch shows, exactly what
    /// the syncer last wrote there and that was `desired`: then nothing
    /// needs writing.
    pub fn holds(&self, name: &str, desired: u64) -> bool {
        let seen = self.seen();
        match (seen.written.get(name), seen.objects.get(name)) {
            (Some(written), Some(version)) => {
                written.desired == desired && &written.resource_version == version
            }
            _ => false,
        }
    }
}

fn name_and_version<K: Resource>(object: &K) -> (String, String) {
    let meta = object.meta();
    (
        meta.name.clone().unwrap_or_default(),
        meta.resource_version.clone().unwrap_or_default(),
    )
}

/// A hash of a desired host object, to compare with the last one written.
pub fn desired_hash<K: Serialize>(desired: &K) -> u64 {
    let mut hasher = DefaultHasher::new();
    // Serializing plain Kubernetes objects does not fail; an empty
    // rendering only makes every hash the same, which is never `holds`
    // after a change of resourceVersion.
    serde_json::to_vec(desired)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// Every kind's [`HostCopies`], by kind (plural and group).
#[derive(Default)]
pub struct ByKind(Mutex<HashMap<(String, String), Arc<HostCopies>>>);

impl ByKind {
    pub fn of<K: Resource<DynamicType = ()>>(&self) -> Arc<HostCopies> {
        let key = (K::plural(&()).into_owned(), K::group(&()).into_owned());
        let mut kinds = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kinds.entry(key).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    use kube::api::ObjectMeta;

    fn object(name: &str, version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                resource_version: Some(version.to_owned()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn listed(copies: &HostCopies, objects: &[(&str, &str)]) {
        copies.observe::<ConfigMap>(&watcher::Event::Init);
        for (name, version) in objects {
            copies.observe(&watcher::Event::InitApply(object(name, version)));
        }
        copies.observe::<ConfigMap>(&watcher::Event::InitDone);
    }

    fn at_most(limit: usize) -> impl FnOnce(usize) -> Option<String> {
        move |used| (used >= limit).then(|| format!("used {used}"))
    }

    #[test]
    fn creates_under_way_count_until_the_watch_shows_them() {
        let copies = HostCopies::default();
        listed(&copies, &[("a", "1")]);
        let now = Instant::now();
        assert_eq!(copies.reserve("b", now, at_most(3)), Reservation::Reserved);
        assert_eq!(copies.reserve("c", now, at_most(3)), Reservation::Reserved);
        assert_eq!(
            copies.reserve("d", now, at_most(3)),
            Reservation::OverQuota("used 3".into())
        );
        // The watch shows b: still three.
        copies.observe(&watcher::Event::Apply(object("b", "2")));
        assert!(matches!(
            copies.reserve("d", now, at_most(3)),
            Reservation::OverQuota(_)
        ));
        // c failed: one more fits.
        copies.release("c");
        assert_eq!(copies.reserve("d", now, at_most(3)), Reservation::Reserved);
    }

    #[test]
    fn existing_names_and_names_being_created_are_not_counted_again() {
        let copies = HostCopies::default();
        listed(&copies, &[("a", "1")]);
        let now = Instant::now();
        assert_eq!(copies.reserve("a", now, at_most(0)), Reservation::Exists);
        assert_eq!(copies.reserve("b", now, at_most(5)), Reservation::Reserved);
        assert_eq!(copies.reserve("b", now, at_most(0)), Reservation::Exists);
    }

    #[test]
    fn deletions_free_room_and_creates_never_seen_expire() {
        let copies = HostCopies::default();
        listed(&copies, &[("a", "1"), ("b", "1")]);
        let now = Instant::now();
        assert!(matches!(
            copies.reserve("c", now, at_most(2)),
            Reservation::OverQuota(_)
        ));
        copies.observe(&watcher::Event::Delete(object("a", "3")));
        assert_eq!(copies.reserve("c", now, at_most(2)), Reservation::Reserved);
        assert!(matches!(
            copies.reserve("d", now, at_most(2)),
            Reservation::OverQuota(_)
        ));
        let later = now + CREATE_SEEN_WITHIN;
        assert_eq!(
            copies.reserve("d", later, at_most(2)),
            Reservation::Reserved
        );
    }

    #[test]
    fn a_relisting_replaces_what_was_seen_and_settles_creates_it_shows() {
        let copies = HostCopies::default();
        listed(&copies, &[("a", "1"), ("b", "1")]);
        let now = Instant::now();
        assert_eq!(copies.reserve("c", now, at_most(9)), Reservation::Reserved);
        // The watch restarts: b went, c arrived, while it was away.
        listed(&copies, &[("a", "1"), ("c", "4")]);
        assert!(matches!(
            copies.reserve("d", now, at_most(2)),
            Reservation::OverQuota(m) if m == "used 2"
        ));
    }

    #[tokio::test]
    async fn counting_waits_for_the_first_listing() {
        let copies = Arc::new(HostCopies::default());
        let waiting = tokio::spawn({
            let copies = copies.clone();
            async move { copies.listed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        listed(&copies, &[]);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn own_writes_are_recognised_and_a_held_copy_needs_no_write() {
        let copies = HostCopies::default();
        listed(&copies, &[]);
        let desired = desired_hash(&object("a", ""));
        copies.wrote("a", desired, Some("7"));
        assert!(copies.is_own_write("a", Some("7")));
        // The watch has not shown it yet: not known to be there.
        assert!(!copies.holds("a", desired));
        copies.observe(&watcher::Event::Apply(object("a", "7")));
        assert!(copies.holds("a", desired));
        // The tenant changed it: write.
        let mut changed = object("a", "");
        changed.data = Some([("k".to_owned(), "v".to_owned())].into());
        assert!(!copies.holds("a", desired_hash(&changed)));
        // Someone else changed the host copy: not ours, write again.
        copies.observe(&watcher::Event::Apply(object("a", "8")));
        assert!(!copies.is_own_write("a", Some("8")));
        assert!(!copies.holds("a", desired));
        // Deleted on the host: write again.
        copies.wrote("a", desired, Some("9"));
        copies.observe(&watcher::Event::Delete(object("a", "10")));
        assert!(!copies.holds("a", desired));
        assert!(!copies.is_own_write("a", Some("9")));
    }

    #[test]
    fn kinds_are_kept_apart() {
        let kinds = ByKind::default();
        let config_maps = kinds.of::<ConfigMap>();
        assert!(Arc::ptr_eq(&config_maps, &kinds.of::<ConfigMap>()));
        assert!(!Arc::ptr_eq(&config_maps, &kinds.of::<Service>()));
    }
}
