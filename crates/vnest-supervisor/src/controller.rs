//! The kube-runtime controller: VirtualClusters are reconciled when they
//! change and when the Deployments, StatefulSets or Services vnest made for
//! them change (found by their labels: objects in the host namespaces cannot
//! carry an owner reference to a VirtualCluster in another namespace).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource};
use tracing::Instrument as _;
use vnest_api::VirtualCluster;
use vnest_api::host_names::labels;

use crate::context::{Context, FIELD_MANAGER};
use crate::desired::pods::Settings;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::pool_nodes::KubeletConfigs;
use crate::reconcile;
use crate::tenant_waits::TenantWaits;

/// Runs until the process is told to stop.
pub async fn run(
    client: Client,
    kubelets: KubeletConfigs,
    settings: Settings,
    metrics: Arc<Metrics>,
) {
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let (tenant_waits, tenants_changed) = TenantWaits::new();
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        kubelets,
        settings,
        metrics,
        recently_applied: Default::default(),
        tenant_waits,
    });
    let ours =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    Controller::new(
        Api::<VirtualCluster>::all(client.clone()),
        watcher::Config::default().timeout(VIRTUAL_CLUSTER_WATCH_SECS),
    )
    .trigger_backoff(WatchRetry::default())
    .watches(Api::<Deployment>::all(client.clone()), ours.clone(), |o| {
        owner_of(&o)
    })
    .watches(Api::<StatefulSet>::all(client.clone()), ours.clone(), |o| {
        owner_of(&o)
    })
    .watches(Api::<Service>::all(client), ours, |o| owner_of(&o))
    .reconcile_on(tenants_changed)
    .with_config(controller::Config::default().concurrency(CONCURRENCY))
    .shutdown_on_signal()
    .run(measured, error_policy, context)
    .for_each(|result| async move {
        match result {
            Ok((vc, _)) => {
                tracing::debug!(name = %vc.name, namespace = ?vc.namespace, "reconciled")
            }
            Err(error) => tracing::warn!(%error, "reconcile failed"),
        }
    })
    .await;
}

/// How long one watch of VirtualClusters lasts before it is made again
/// from where it stopped. After the host apiserver was killed, the
/// supervisor's watches of Deployments, StatefulSets and Services resumed,
/// but its watch of VirtualClusters (a custom resource) stayed silent: it
/// heard no change for minutes (until the default 290 s ran out) and acted
/// on none (controller-runtime users report the same: kubernetes-sigs/
/// controller-runtime#1938). Watching again every 30 s bounds that; it
/// costs one request.
const VIRTUAL_CLUSTER_WATCH_SECS: u32 = 30;

/// How soon the controller's watches are made again after an error: from
/// 0.5 s, doubling, at most 5 s, back to 0.5 s once an event comes. The
/// default (up to 30 s, reset only after two quiet minutes) left the
/// supervisor deaf for over a minute after the host apiserver came back
/// from a crash: each watch first failed to connect, then had to list
/// again, each error waiting longer.
#[derive(Debug)]
struct WatchRetry {
    next: Duration,
}

impl WatchRetry {
    const FIRST: Duration = Duration::from_millis(500);
    const MOST: Duration = Duration::from_secs(5);
}

impl Default for WatchRetry {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchRetry {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.next;
        self.next = (wait * 2).min(Self::MOST);
        Some(wait)
    }
}

impl kube::runtime::utils::Backoff for WatchRetry {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// VirtualClusters reconciled at once. Unbounded, a supervisor starting
/// with 100 VirtualClusters reconciled them all together, each holding a
/// list of every VirtualCluster and the host's facts, and was OOM-killed
/// at its 256 MiB limit within 5 s, again at every restart.
const CONCURRENCY: u16 = 8;

/// How long one reconcile may take. A reconcile holds its VirtualCluster:
/// while it waits, changes to it (a renewal asked for, a pause) queue
/// behind it. A reconcile makes a few dozen calls, each normally answered
/// in milliseconds; one to an apiserver that died mid-request may hang
/// until the client's read timeout (minutes), so it is cut off here and
/// tried again.
const RECONCILE_DEADLINE: Duration = Duration::from_secs(60);

/// [`reconcile::reconcile`] in a span naming its VirtualCluster, counted
/// by outcome and timed, with the phase it saw (until it writes another).
async fn measured(vc: Arc<VirtualCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = format!(
        "{}/{}",
        vc.metadata.namespace.as_deref().unwrap_or_default(),
        vc.metadata.name.as_deref().unwrap_or_default()
    );
    let phase = vc.metadata.deletion_timestamp.is_none().then(|| {
        vc.status
            .as_ref()
            .and_then(|s| s.phase)
            .map_or_else(|| "Pending".to_owned(), |p| format!("{p:?}"))
    });
    // The phase seen now; a status the reconcile writes replaces it.
    ctx.metrics.phase(key.clone(), phase);
    let started = Instant::now();
    let span = tracing::info_span!("reconcile", virtualcluster = %key);
    let result = tokio::time::timeout(RECONCILE_DEADLINE, reconcile::reconcile(vc, ctx.clone()))
        .instrument(span)
        .await
        .unwrap_or(Err(Error::TimedOut(RECONCILE_DEADLINE)));
    let outcome = result.as_ref().map_or_else(Error::kind, |_| "ok");
    ctx.metrics.reconciled(outcome, started.elapsed());
    result
}

/// The VirtualCluster a host object of vnest's belongs to, by its labels.
pub(crate) fn owner_of<K: Resource>(object: &K) -> Option<ObjectRef<VirtualCluster>> {
    let labels = object.meta().labels.as_ref()?;
    let name = labels.get(labels::VIRTUAL_CLUSTER)?;
    let namespace = labels.get(labels::VIRTUAL_CLUSTER_NAMESPACE)?;
    Some(ObjectRef::new(name).within(namespace))
}

/// How soon a failed reconcile runs again: a deletion waiting for the host
/// (namespaces going, volumes being emptied) looks again within seconds,
/// anything else in 10 s. Errors of the cleanup come wrapped by the
/// finalizer.
fn retry_after(error: &Error) -> Duration {
    use kube::runtime::finalizer::Error as Finalizer;
    let inner = match error {
        Error::Finalizer(wrapped) => match wrapped.as_ref() {
            Finalizer::ApplyFailed(inner) | Finalizer::CleanupFailed(inner) => inner,
            _ => error,
        },
        _ => error,
    };
    match inner {
        Error::Stopping(_) | Error::Wiping(_) => Duration::from_secs(1),
        _ => Duration::from_secs(10),
    }
}

/// Transient failures are retried soon; the condition already tells the
/// user what failed.
fn error_policy(vc: Arc<VirtualCluster>, error: &Error, _: Arc<Context>) -> Action {
    let retry = retry_after(error);
    tracing::info!(
        name = vc.metadata.name.as_deref().unwrap_or_default(),
        namespace = vc.metadata.namespace.as_deref().unwrap_or_default(),
        %error,
        retry_in_s = retry.as_secs(),
        "will retry"
    );
    Action::requeue(retry)
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    #[test]
    fn watches_are_made_again_within_five_seconds() {
        use kube::runtime::utils::Backoff as _;
        let mut retry = WatchRetry::default();
        let waits: Vec<u64> = retry
            .by_ref()
            .take(6)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000]);
        retry.reset();
        assert_eq!(retry.next(), Some(Duration::from_millis(500)));
    }
    use kube::runtime::finalizer::Error as Finalizer;

    #[test]
    fn a_waiting_deletion_looks_again_soon_even_wrapped() {
        let wrapped = |e| Error::Finalizer(Box::new(Finalizer::CleanupFailed(e)));
        assert_eq!(
            retry_after(&wrapped(Error::Wiping("cp".into()))),
            Duration::from_secs(1)
        );
        assert_eq!(
            retry_after(&wrapped(Error::Stopping("wl".into()))),
            Duration::from_secs(1)
        );
        assert_eq!(
            retry_after(&wrapped(Error::Incomplete("name"))),
            Duration::from_secs(10)
        );
    }
}
