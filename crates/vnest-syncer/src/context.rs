//! What every sync loop of one tenant's syncer shares: both clients, the
//! fixed settings, and what it learns while running (the pool's nodes, the
//! host's node addresses, the tenant DNS Service's host address).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::RwLock;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{Namespace, Pod, ResourceQuota, Service, Toleration};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use vnest_api::{IngressGrant, PodLabels, PodScheduler, PodSecurityLevel};

use crate::host_copies::ByKind;
use crate::metrics::Metrics;
use crate::network_policy::NetworkScope;
use crate::node_selection::PoolLabels;
use crate::own_writes::OwnWrites;
use crate::policy::Policy;
use crate::statusless::Statusless;
use crate::translate::Placement;

/// The field manager and finalizer of everything the syncer writes.
pub const FIELD_MANAGER: &str = "vnest-syncer";
pub const FINALIZER: &str = "vnest.dev/syncer";
/// Removes [`FINALIZER`] from `object`, which syncers before this one put
/// on every pod and mirrored object; now only claims keep it.
pub async fn release_finalizer<K>(api: &kube::Api<K>, object: &K) -> crate::error::Result<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    use crate::error::{OnSide, Side};
    let Some(finalizers) = object.meta().finalizers.as_ref() else {
        return Ok(());
    };
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let kept: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
    // With its resourceVersion the patch fails (409, tried again) if the
    // list changed since it was read.
    let patch = serde_json::json!({ "metadata": {
        "finalizers": kept,
        "resourceVersion": object.meta().resource_version,
    } });
    api.patch(
        object.meta().name.as_deref().unwrap_or_default(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(patch),
    )
    .await
    .on(Side::Tenant)?;
    Ok(())
}

/// At most this many objects of one kind are synced at once (each is a
/// few requests to either apiserver).
pub const CONCURRENCY: u16 = 16;
/// Pods are synced this many at once: a pod takes several reconciles with
/// a write each (host create, binding, status), each waiting on
/// an apiserver, so the pod sync is bound by how many wait at once. When
/// all are busy, kube-runtime holds the pods that come due in no order:
/// with 64, a burst of 1000 pods left some 27 s from their host copy (p99;
/// 2.7–6.8 s with 256), for 12–16 MiB more at the peak
/// (docs/benchmarks.md).
pub const POD_CONCURRENCY: u16 = 256;
/// What the syncer keeps of a watched object: all but its managed fields,
/// which it never reads and which are often the largest part of an
/// object (one entry per writer). Set to none, not to an empty list: an
/// empty list written back would clear them on the server.
pub fn lighten<K: kube::Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// For a tenant watch's `inspect`: for every object the watch reports
/// deleted, the deletion `delete` makes of it (its host copy's, without a
/// finalizer having held it; `None`: nothing to do) is spawned; a failure
/// is logged, and the garbage collector ([`crate::gc`]) removes what is
/// missed.
pub fn follow_deletions<K, F, Fut>(
    syncer: std::sync::Arc<Syncer>,
    delete: F,
) -> impl Fn(&Result<kube::runtime::watcher::Event<K>, kube::runtime::watcher::Error>)
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + 'static,
    F: Fn(std::sync::Arc<Syncer>, K) -> Option<Fut>,
    Fut: Future<Output = crate::error::Result<()>> + Send + 'static,
{
    move |event| {
        if let Ok(kube::runtime::watcher::Event::Delete(gone)) = event
            && let Some(deletion) = delete(syncer.clone(), gone.clone())
        {
            let kind = K::kind(&()).into_owned();
            let namespace = gone.meta().namespace.clone().unwrap_or_default();
            let name = gone.meta().name.clone().unwrap_or_default();
            tokio::spawn(async move {
                if let Err(error) = deletion.await {
                    tracing::warn!(
                        kind,
                        namespace,
                        name,
                        %error,
                        "deleting the host copy failed; the garbage collector will"
                    );
                }
            });
        }
    }
}

/// Every synced object is looked at again this often, repairing drift the
/// watches did not report.
pub const RESYNC: std::time::Duration = std::time::Duration::from_secs(300);

/// The longest one object's sync may take. The client waits for an
/// apiserver's answer without a limit (kube 5 sets no read timeout), and a
/// sync that waits forever holds its object: the controller never
/// reconciles it again. A host apiserver restarted under the syncer left
/// 13 of 200 pods without host copies that way; past this a sync is
/// abandoned (every step is idempotent) and tried again.
pub const SYNC_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// `sync` abandoned after [`SYNC_DEADLINE`].
pub async fn within_deadline<T>(
    sync: impl Future<Output = crate::error::Result<T>>,
) -> crate::error::Result<T> {
    tokio::time::timeout(SYNC_DEADLINE, sync)
        .await
        .unwrap_or(Err(crate::error::Error::Stalled(SYNC_DEADLINE)))
}

/// How this syncer was configured (by the supervisor, from the
/// VirtualCluster).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub host_namespace: String,
    pub pool_selector: BTreeMap<String, String>,
    pub pool_taint_key: String,
    pub runtime_class: Option<String>,
    pub level: PodSecurityLevel,
    pub apiserver_host: String,
    pub apiserver_port: u16,
    pub cluster_domain: String,
    /// The tenant Service whose host address pods use as their DNS server.
    pub dns_service: (String, String),
    /// Where the tenant apiserver reaches the kubelet proxy (host name and
    /// port), which the tenant's Nodes advertise as their kubelet; `None`
    /// leaves the host nodes' own addresses.
    pub kubelet_endpoint: Option<(String, u16)>,
    /// The host apiserver's addresses as this pod sees them (its Service
    /// address); with the nodes' addresses, what endpoints may not name.
    pub host_apiserver: Vec<IpAddr>,
    /// Where the tenant's NetworkPolicies may lead on the host.
    pub network: NetworkScope,
    /// How tenant pod labels appear on host pods.
    pub pod_labels: PodLabels,
    /// Who binds tenant pods to nodes.
    pub scheduler: PodScheduler,
    /// What the tenant's Ingresses may claim on the host.
    pub ingress: IngressGrant,
    /// vnest's image, for pods' `/etc/hosts` ([`crate::etc_hosts`]).
    pub etc_hosts_image: Option<String>,
}

/// The tenant's namespaces, NetworkPolicies and Services as watched: a
/// host pod's labels depend on the first two
/// ([`crate::network_policy::pod_labels`]), its Service variables on the
/// last ([`crate::service_links`]).
#[derive(Clone)]
pub struct TenantNetwork {
    pub namespaces: Store<Namespace>,
    pub policies: Store<NetworkPolicy>,
    pub services: Store<Statusless<Service>>,
}

/// What the syncer reads from watches instead of asking for it: the host's
/// quotas in the workloads namespace ([`crate::host_quota`]), and the
/// pods on both sides ([`crate::pods`], [`crate::events`]). A store may
/// lag its cluster: what must not be missed (a host pod gone) is asked
/// for when the store lacks it.
#[derive(Clone)]
pub struct Watched {
    pub host_quotas: Store<ResourceQuota>,
    /// The syncer's host pods.
    pub host_pods: Store<Pod>,
    pub tenant_pods: Store<Pod>,
}

#[derive(Clone, Debug, Default)]
struct Learned {
    /// The pool's nodes, each with the names of the resources it offers
    /// (its allocatable's).
    pool_nodes: BTreeMap<String, BTreeSet<String>>,
    pool_labels: PoolLabels,
    dns_ip: Option<String>,
    node_addresses: BTreeSet<IpAddr>,
}

pub struct Syncer {
    pub metrics: Metrics,
    pub tenant: Client,
    pub host: Client,
    pub settings: Settings,
    pub recorder: Recorder,
    pub network: TenantNetwork,
    /// The host copies of each mirrored kind, as watched
    /// ([`crate::host_copies`]).
    pub host_copies: ByKind,
    pub watched: Watched,
    /// Its own writes to tenant pods its watch has not shown yet.
    pub own_writes: OwnWrites,
    learned: RwLock<Learned>,
}

impl Syncer {
    pub fn new(
        tenant: Client,
        host: Client,
        settings: Settings,
        recorder: Recorder,
        network: TenantNetwork,
        watched: Watched,
    ) -> Self {
        Self {
            metrics: Metrics::default(),
            tenant,
            host,
            settings,
            recorder,
            network,
            host_copies: ByKind::default(),
            watched,
            own_writes: OwnWrites::default(),
            learned: RwLock::new(Learned::default()),
        }
    }

    /// A Warning event on tenant object `object` (a failure to record it
    /// is logged, never the sync's).
    pub async fn warn(&self, object: &ObjectReference, reason: &str, note: String) {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Sync".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, object).await {
            tracing::debug!(%error, reason, "recording an event failed");
        }
    }

    fn learned(&self) -> Learned {
        self.learned.read().map(|l| l.clone()).unwrap_or_default()
    }

    /// The pool's nodes, each with the names of the resources it offers.
    pub fn set_pool_nodes(&self, nodes: BTreeMap<String, BTreeSet<String>>) {
        if let Ok(mut learned) = self.learned.write() {
            learned.pool_nodes = nodes;
        }
    }

    /// The host's labels of the pool's nodes, by node.
    pub fn set_host_node_labels(&self, labels: BTreeMap<String, BTreeMap<String, String>>) {
        if let Ok(mut learned) = self.learned.write() {
            learned.pool_labels.host = labels;
        }
    }

    /// The names of the resources pool node `name` offers, if it is one.
    pub fn node_resources(&self, name: &str) -> Option<BTreeSet<String>> {
        self.learned
            .read()
            .ok()
            .and_then(|l| l.pool_nodes.get(name).cloned())
    }

    /// The tenant's labels of its copy of node `name` (`None`: deleted);
    /// whether they changed.
    pub fn set_tenant_node_labels(
        &self,
        name: String,
        labels: Option<BTreeMap<String, String>>,
    ) -> bool {
        let Ok(mut learned) = self.learned.write() else {
            return false;
        };
        let tenant = &mut learned.pool_labels.tenant;
        match labels {
            Some(labels) => tenant.insert(name, labels.clone()) != Some(labels),
            None => tenant.remove(&name).is_some(),
        }
    }

    /// Whether the tenant has a copy of node `name`, as its watch last
    /// showed.
    pub fn tenant_has_node(&self, name: &str) -> bool {
        self.learned
            .read()
            .is_ok_and(|l| l.pool_labels.tenant.contains_key(name))
    }

    pub fn set_node_addresses(&self, addresses: BTreeSet<IpAddr>) {
        if let Ok(mut learned) = self.learned.write() {
            learned.node_addresses = addresses;
        }
    }

    /// The host's own addresses: every node's, and the host apiserver's.
    pub fn host_addresses(&self) -> BTreeSet<IpAddr> {
        let mut addresses = self.learned().node_addresses;
        addresses.extend(self.settings.host_apiserver.iter().copied());
        addresses
    }

    pub fn set_dns_ip(&self, ip: Option<String>) {
        if let Ok(mut learned) = self.learned.write() {
            learned.dns_ip = ip;
        }
    }

    pub fn pool_toleration(&self) -> Option<Toleration> {
        let value = self
            .settings
            .pool_selector
            .get(&self.settings.pool_taint_key)?;
        Some(Toleration {
            key: Some(self.settings.pool_taint_key.clone()),
            operator: Some("Equal".to_owned()),
            value: Some(value.clone()),
            effect: Some("NoSchedule".to_owned()),
            ..Toleration::default()
        })
    }

    pub fn placement(&self) -> Placement {
        let s = &self.settings;
        let learned = self.learned();
        Placement {
            host_namespace: s.host_namespace.clone(),
            pool_selector: s.pool_selector.clone(),
            pool_toleration: self.pool_toleration(),
            runtime_class: s.runtime_class.clone(),
            apiserver_host: s.apiserver_host.clone(),
            apiserver_port: s.apiserver_port,
            dns_ip: learned.dns_ip,
            cluster_domain: s.cluster_domain.clone(),
            network: s.network.clone(),
            pod_labels: s.pod_labels,
            etc_hosts_image: s.etc_hosts_image.clone(),
            pool_labels: learned.pool_labels,
            node_resources: learned.pool_nodes,
        }
    }

    pub fn policy(&self) -> Policy {
        let s = &self.settings;
        Policy {
            level: s.level,
            pool_selector: s.pool_selector.clone(),
            pool_nodes: self.learned().pool_nodes.into_keys().collect(),
            pool_taint_key: s.pool_taint_key.clone(),
            runtime_class: s.runtime_class.clone(),
        }
    }
}
