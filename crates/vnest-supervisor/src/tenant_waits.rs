//! What a VirtualCluster's status waits for inside its tenant cluster,
//! which no host watch shows: the tenant's controllers making the
//! `default` ServiceAccount, the last step before Ready. Instead of
//! looking again every 2 s, the reconcile that finds it missing starts a
//! watch of the tenant for it; its arrival reconciles the VirtualCluster
//! at once. The 2 s look stays as a fallback.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;
use vnest_api::VirtualCluster;

/// How long one watch waits before it gives up (the fallback look goes on).
const WAIT_AT_MOST: Duration = Duration::from_secs(120);

/// The watches running, and the channel through which they wake the
/// controller.
#[derive(Clone)]
pub struct TenantWaits {
    wake: mpsc::UnboundedSender<ObjectRef<VirtualCluster>>,
    watching: Arc<Mutex<HashSet<ObjectRef<VirtualCluster>>>>,
}

impl TenantWaits {
    /// The waits, and the VirtualClusters they wake, for the controller's
    /// `reconcile_on`.
    pub fn new() -> (
        Self,
        impl Stream<Item = ObjectRef<VirtualCluster>> + Send + 'static,
    ) {
        let (wake, woken) = mpsc::unbounded_channel();
        let woken = futures::stream::unfold(woken, |mut woken| async move {
            woken.recv().await.map(|vc| (vc, woken))
        });
        let waits = Self {
            wake,
            watching: Arc::default(),
        };
        (waits, woken)
    }

    /// Wakes `vc` once its tenant (`tenant`, as the tenant's admin) has
    /// the `default` ServiceAccount of namespace `default`; nothing if a
    /// watch for it already runs.
    pub fn default_account(&self, vc: ObjectRef<VirtualCluster>, tenant: Client) {
        if !self.start(&vc) {
            return;
        }
        let waits = self.clone();
        tokio::spawn(async move {
            let accounts: Api<ServiceAccount> = Api::namespaced(tenant, "default");
            let mut made = watcher(
                accounts,
                watcher::Config::default().fields("metadata.name=default"),
            )
            .default_backoff()
            .applied_objects()
            .filter_map(|account| async move { account.ok() })
            .boxed();
            let found = tokio::time::timeout(WAIT_AT_MOST, made.next()).await;
            waits.finish(&vc);
            if matches!(found, Ok(Some(_))) {
                // The controller is gone only when the supervisor stops.
                let _ = waits.wake.send(vc);
            }
        });
    }

    /// Whether a watch for `vc` may start (none runs), marking it running.
    fn start(&self, vc: &ObjectRef<VirtualCluster>) -> bool {
        let mut watching = self
            .watching
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        watching.insert(vc.clone())
    }

    fn finish(&self, vc: &ObjectRef<VirtualCluster>) {
        let mut watching = self
            .watching
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        watching.remove(vc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_watch_per_virtual_cluster_at_a_time() {
        let (waits, _woken) = TenantWaits::new();
        let a = ObjectRef::new("a").within("tenants");
        let b = ObjectRef::new("b").within("tenants");
        assert!(waits.start(&a));
        assert!(!waits.start(&a));
        assert!(waits.start(&b));
        waits.finish(&a);
        assert!(waits.start(&a));
    }
}
