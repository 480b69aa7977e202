//! ConfigMaps, Secrets, Services, EndpointSlices (of selector-less
//! Services), Ingresses, PersistentVolumeClaims and NetworkPolicies
//! ([`crate::network_policy`]) mirrored down: every one the tenant has,
//! applied to the host under its host name whenever it changes, and deleted
//! there when the tenant's goes.
//!
//! Only claims carry the syncer's finalizer (their volume is released
//! before the claim goes). The other kinds carry none, as in a cluster
//! without vnest: a client's update right after its create does not
//! conflict with the syncer's write, and a deleted object is gone at once.
//! Their host copies go when the watch reports the deletion; one missed
//! while the syncer was away is left to the garbage collector
//! ([`crate::gc`]).
//!
//! The host side is read from a metadata watch ([`crate::host_copies`]):
//! a host change the syncer did not make starts a sync (the copy is
//! applied again), its own writes echoed back do not, and a sync whose
//! desired copy is already there writes nothing.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::core::Status;
use kube::runtime::controller::{self, Action};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument as _;
use vnest_kube::apply::{ApplyError, apply_namespaced};

use crate::context::{
    CONCURRENCY, FIELD_MANAGER, FINALIZER, RESYNC, Syncer, release_finalizer, within_deadline,
};
use crate::error::{Error, OnSide, Result, Side, refused_by_host};
use crate::host_copies::desired_hash;
use crate::policy::{self, EndpointFence, Refusal};
use crate::statusless::Statusless;
use crate::translate::{self, Placement};
use crate::{host_quota, network_policy, volumes};
use vnest_api::host_copies::{MANAGED_BY, MANAGER, host_name, origin};

/// A lesser host copy, and why the tenant's object gets it.
pub struct Fallback<K> {
    pub object: K,
    /// The Warning event's reason.
    pub reason: &'static str,
    pub note: String,
}

/// How soon an object the host refused is tried again.
const HOST_REFUSAL_RETRY: Duration = Duration::from_secs(60);

/// A kind the syncer mirrors down as it is (renamed).
pub trait Mirrored:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    fn to_host(&self, placement: &Placement) -> Self;
    /// Which tenant objects the mirror watches (all by default).
    fn tenant_watch() -> watcher::Config {
        watcher::Config::default()
    }
    /// Whether this tenant object is mirrored at all.
    fn is_mirrored(&self) -> bool {
        true
    }
    /// Whether the host assigns something the next apply must keep (a
    /// Service's address); then the existing copy is read first.
    const KEEPS_ASSIGNED: bool = false;
    /// `desired` adjusted to keep what the host assigned to `existing`.
    fn keep_assigned(_desired: &mut Self, _existing: &Self) {}
    /// A lesser desired copy to try when the host refuses `desired` with
    /// `refusal` (a Service whose address the host gave to another, or
    /// whose node ports it will not open), with the Warning the tenant
    /// object gets.
    fn fallback(_desired: &Self, _refusal: &Status) -> Option<Fallback<Self>> {
        None
    }
    /// Why this tenant object may not go to the host, if it may not (then
    /// its host copy is removed and the tenant gets a Warning event).
    fn refusals(&self, _syncer: &Syncer) -> impl Future<Output = Result<Vec<Refusal>>> + Send {
        async { Ok(Vec::new()) }
    }
    /// What the syncer learns from the host's copy.
    fn observe(_syncer: &Syncer, _tenant: &Self, _host: &Self) {}
    /// What follows up in the tenant from the host's copy (a bound
    /// claim's volume).
    fn after_apply(
        _syncer: &Syncer,
        _tenant: &Self,
        _host: &Self,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
    /// Whether the tenant object keeps the syncer's finalizer until
    /// [`Mirrored::after_delete`] is done.
    const KEEPS_FINALIZER: bool = false;
    /// What goes from the tenant with the host copy (only for kinds that
    /// keep the finalizer).
    fn after_delete(_syncer: &Syncer, _tenant: &Self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

impl Mirrored for EndpointSlice {
    fn to_host(&self, placement: &Placement) -> Self {
        translate::endpoint_slice(self, placement)
    }
    /// Not the slices the tenant derives from selectors (the host derives
    /// its own): no finalizer on them, no work.
    fn tenant_watch() -> watcher::Config {
        watcher::Config::default().labels(&format!(
            "{},{}!={}",
            translate::SERVICE_NAME_LABEL,
            translate::SLICE_MANAGED_BY,
            translate::SELECTOR_SLICES
        ))
    }
    fn is_mirrored(&self) -> bool {
        translate::is_mirrored_slice(self)
    }
    /// Addresses in the host's ranges pass only when they are the tenant's
    /// own pods: a host pod of its workloads namespace has that address.
    async fn refusals(&self, syncer: &Syncer) -> Result<Vec<Refusal>> {
        let mut fence = EndpointFence {
            host: syncer.host_addresses(),
            host_ranges: syncer.settings.network.host_ranges.clone(),
            own_pods: Default::default(),
        };
        let host_pods: Api<Pod> =
            Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
        for ip in fence.in_host_ranges(self) {
            let at = ListParams::default().fields(&format!("status.podIP={ip}"));
            if !host_pods
                .list_metadata(&at)
                .await
                .on(Side::Host)?
                .items
                .is_empty()
            {
                fence.own_pods.insert(ip);
            }
        }
        Ok(policy::check_endpoints(self, &fence))
    }
}

impl Mirrored for Ingress {
    fn to_host(&self, placement: &Placement) -> Self {
        translate::ingress(self, placement)
    }
    fn refusals(&self, syncer: &Syncer) -> impl Future<Output = Result<Vec<Refusal>>> + Send {
        let refusals = policy::check_ingress(self, &syncer.settings.ingress);
        async { Ok(refusals) }
    }
    /// The addresses the host's ingress controller published.
    fn after_apply(
        syncer: &Syncer,
        tenant: &Self,
        host: &Self,
    ) -> impl Future<Output = Result<()>> + Send {
        status_up(syncer, tenant, host.status.clone())
    }
}

impl Mirrored for PersistentVolumeClaim {
    const KEEPS_FINALIZER: bool = true;
    fn to_host(&self, placement: &Placement) -> Self {
        translate::persistent_volume_claim(self, placement)
    }
    fn after_apply(
        syncer: &Syncer,
        tenant: &Self,
        host: &Self,
    ) -> impl Future<Output = Result<()>> + Send {
        volumes::bind_up(syncer, tenant, host)
    }
    fn after_delete(syncer: &Syncer, tenant: &Self) -> impl Future<Output = Result<()>> + Send {
        volumes::release(syncer, tenant)
    }
}

impl Mirrored for NetworkPolicy {
    fn to_host(&self, placement: &Placement) -> Self {
        network_policy::translate(self, placement)
    }
    fn refusals(&self, _syncer: &Syncer) -> impl Future<Output = Result<Vec<Refusal>>> + Send {
        let refusals = network_policy::refusals(self);
        async { Ok(refusals) }
    }
}

impl Mirrored for ConfigMap {
    fn to_host(&self, placement: &Placement) -> Self {
        translate::config_map(self, placement)
    }
}

impl Mirrored for Secret {
    fn to_host(&self, placement: &Placement) -> Self {
        translate::secret(self, placement)
    }
}

/// Read without their status ([`Statusless`]), which the syncer never uses.
impl Mirrored for Statusless<Service> {
    fn to_host(&self, placement: &Placement) -> Self {
        Statusless(translate::service(&self.0, placement))
    }
    fn is_mirrored(&self) -> bool {
        translate::is_mirrored_service(&self.0)
    }
    const KEEPS_ASSIGNED: bool = true;
    fn keep_assigned(desired: &mut Self, existing: &Self) {
        if let (Some(desired), Some(existing)) = (desired.0.spec.as_mut(), existing.0.spec.as_ref())
        {
            desired.cluster_ip = existing.cluster_ip.clone();
        }
    }
    /// A NodePort the host will not open (its quota has no node ports for
    /// the tenant, or the port is another's) stays a ClusterIP copy; an
    /// address the host gave to another is left to the host.
    fn fallback(desired: &Self, refusal: &Status) -> Option<Fallback<Self>> {
        if translate::is_node_port(&desired.0) && matches!(refusal.code, 403 | 422) {
            return Some(Fallback {
                object: Statusless(translate::without_node_ports(&desired.0)),
                reason: "NodePortsNotOpened",
                note: format!(
                    "the host did not open this Service's node ports ({}); it is reachable at its cluster address only",
                    refusal.message
                ),
            });
        }
        (refusal.code == 422)
            .then(|| translate::without_address(&desired.0))
            .flatten()
            .map(|object| Fallback {
                object: Statusless(object),
                reason: "HostAddressTaken",
                note: format!(
                    "the host could not give this Service the address it asked for ({}); it gets one the host picks, so clients using the tenant's address will not reach it",
                    refusal.message
                ),
            })
    }
    /// The tenant DNS Service's host address is what pods get as their
    /// nameserver.
    fn observe(syncer: &Syncer, tenant: &Self, host: &Self) {
        let (ns, name) = &syncer.settings.dns_service;
        if tenant.0.metadata.namespace.as_ref() == Some(ns)
            && tenant.0.metadata.name.as_ref() == Some(name)
        {
            let ip = host.0.spec.as_ref().and_then(|s| s.cluster_ip.clone());
            tracing::info!(ip = ?ip, "the tenant's DNS Service has its host address");
            syncer.set_dns_ip(ip);
        }
    }
}

/// Tells the tenant, with a Warning event on `object`, why it stays off the
/// host.
async fn refuse<K: Mirrored>(syncer: &Syncer, object: &K, refusals: &[Refusal]) {
    for refusal in refusals {
        syncer.metrics.refused(refusal.rule.name());
    }
    let note = refusals
        .iter()
        .map(|r| r.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    tracing::info!(
        kind = K::kind(&()).as_ref(),
        name = object.meta().name.as_deref().unwrap_or_default(),
        %note,
        "refused"
    );
    syncer.warn(&object.object_ref(&()), "Refused", note).await;
}

/// Writes the host copy's `status` onto `tenant` when it differs.
async fn status_up<K: Mirrored, S: Serialize + PartialEq + Send + Sync>(
    syncer: &Syncer,
    tenant: &K,
    status: Option<S>,
) -> Result<()> {
    let current = serde_json::to_value(tenant)
        .ok()
        .and_then(|mut v| v.get_mut("status").map(serde_json::Value::take));
    let wanted = serde_json::to_value(&status).ok();
    if status.is_none() || current == wanted {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(
        syncer.tenant.clone(),
        tenant.meta().namespace.as_deref().unwrap_or_default(),
    );
    api.patch_status(
        tenant.meta().name.as_deref().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .on(Side::Tenant)?;
    Ok(())
}

/// Runs the mirror of kind `K` until shutdown.
pub async fn run<K: Mirrored>(syncer: Arc<Syncer>) {
    let tenant: Api<K> = Api::all(syncer.tenant.clone());
    // Every object of the kind (the quotas count them all), by metadata.
    let host: Api<PartialObjectMeta<K>> =
        Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    let copies = syncer.host_copies.of::<K>();
    let seen = copies.clone();
    let host_changes = watcher(host, watcher::Config::default())
        .default_backoff()
        .inspect(move |event| {
            if let Ok(event) = event {
                seen.observe(event);
            }
        })
        .touched_objects()
        .filter(move |object| {
            let foreign = object.as_ref().map_or(true, |object| {
                let meta = &object.metadata;
                is_ours(meta.labels.as_ref())
                    && !copies.is_own_write(
                        meta.name.as_deref().unwrap_or_default(),
                        meta.resource_version.as_deref(),
                    )
            });
            futures::future::ready(foreign)
        });
    let (store, writer) = reflector::store();
    let on_delete = syncer.clone();
    let tenant_objects = watcher(tenant, K::tenant_watch())
        .default_backoff()
        .modify(crate::context::lighten)
        .reflect(writer)
        .inspect(crate::context::follow_deletions(
            on_delete,
            // A kind that keeps its finalizer is held until the sync has
            // cleaned up.
            |syncer, gone: K| {
                (!K::KEEPS_FINALIZER)
                    .then_some(async move { delete_after_tenant(&syncer, &gone).await })
            },
        ))
        .applied_objects();
    Controller::for_stream(tenant_objects, store)
        .watches_stream(host_changes, |object| {
            let (namespace, name) = origin(object.metadata.annotations.as_ref())?;
            Some(ObjectRef::new(&name).within(&namespace))
        })
        .with_config(controller::Config::default().concurrency(CONCURRENCY))
        .shutdown_on_signal()
        .run(reconcile::<K>, error_policy::<K>, syncer)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(kind = K::kind(&()).as_ref(), %error, "sync failed");
            }
        })
        .await;
}

async fn reconcile<K: Mirrored>(object: Arc<K>, syncer: Arc<Syncer>) -> Result<Action> {
    let kind = K::kind(&());
    let sync = syncer.metrics.start(kind.as_ref());
    let span = tracing::info_span!(
        "sync",
        kind = kind.as_ref(),
        object = %format_args!(
            "{}/{}",
            object.meta().namespace.as_deref().unwrap_or_default(),
            object.name_any()
        )
    );
    let result = within_deadline(sync_one(object, &syncer))
        .instrument(span)
        .await;
    sync.finish(result.as_ref().err().map(Error::metric_label));
    result
}

async fn sync_one<K: Mirrored>(object: Arc<K>, syncer: &Syncer) -> Result<Action> {
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(syncer.tenant.clone(), &namespace);
    if K::KEEPS_FINALIZER {
        return finalizer(&api, FINALIZER, object, |event| async {
            match event {
                Event::Apply(object) => mirror_one(object.as_ref(), syncer).await,
                Event::Cleanup(object) => {
                    delete_host_copy::<K>(syncer, &object).await?;
                    K::after_delete(syncer, &object).await?;
                    Ok(Action::await_change())
                }
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)));
    }
    if object.meta().deletion_timestamp.is_some() {
        // Held by finalizers of the tenant's own: its copy goes now.
        delete_host_copy::<K>(syncer, &object).await?;
        release_finalizer(&api, object.as_ref()).await?;
        return Ok(Action::await_change());
    }
    release_finalizer(&api, object.as_ref()).await?;
    mirror_one(object.as_ref(), syncer).await
}

/// Applies `object`'s host copy (or refuses it, telling the tenant).
async fn mirror_one<K: Mirrored>(object: &K, syncer: &Syncer) -> Result<Action> {
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    if !object.is_mirrored() {
        // It may have been (a Service changed to ExternalName).
        delete_host_copy::<K>(syncer, object).await?;
        return Ok(Action::await_change());
    }
    let refusals = object.refusals(syncer).await?;
    if !refusals.is_empty() {
        delete_host_copy::<K>(syncer, object).await?;
        refuse(syncer, object, &refusals).await;
        return Ok(Action::requeue(RESYNC));
    }
    let name = host_name(
        &namespace,
        object.meta().name.as_deref().unwrap_or_default(),
    );
    let desired = object.to_host(&syncer.placement());
    let desired_hash = desired_hash(&desired);
    let copies = syncer.host_copies.of::<K>();
    if copies.holds(&name, desired_hash) {
        return Ok(Action::requeue(resync(&name)));
    }
    let applied =
        host_quota::within::<K, _, _>(syncer, &name, apply_host_copy(syncer, object, desired))
            .await;
    let refused = match applied {
        Ok(Ok(host)) => Ok(host),
        Ok(Err(over_quota)) => Err(over_quota),
        // The host's admission refused it (over quota, an invalid field):
        // the tenant is told, and it is tried again later (quota may free
        // up).
        Err(Error::Apply(ApplyError::Api {
            source: kube::Error::Api(status),
            ..
        })) if refused_by_host(&status) => Err(status.message),
        Err(e) => return Err(e),
    };
    let host = match refused {
        // A lesser copy is not what was desired: the next sync tries the
        // desired one again.
        Ok((host, fell_back)) => {
            let version = host.meta().resource_version.as_deref();
            copies.wrote(&name, desired_hash, version.filter(|_| !fell_back));
            host
        }
        Err(message) => {
            let refusal = Refusal {
                rule: policy::Rule::HostAdmission,
                message: format!("the host refused it: {message}"),
            };
            refuse(syncer, object, &[refusal]).await;
            return Ok(Action::requeue(HOST_REFUSAL_RETRY));
        }
    };
    K::observe(syncer, object, &host);
    K::after_apply(syncer, object, &host).await?;
    Ok(Action::requeue(resync(&name)))
}

/// Whether a host object is one of the syncer's copies.
fn is_ours(labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    labels.and_then(|l| l.get(MANAGED_BY)).map(String::as_str) == Some(MANAGER)
}

/// When an object is looked at again: [`RESYNC`] plus up to a tenth more,
/// spread by name so that objects created together are not all looked at
/// together again.
fn resync(name: &str) -> Duration {
    let spread = RESYNC.as_millis() as u64 / 10;
    RESYNC + Duration::from_millis(desired_hash(&name) % spread.max(1))
}

/// Applies the host copy of `object`, keeping what the host assigned and
/// falling back (with a Warning event on the tenant object) when the host
/// refuses what was asked for: the host's copy, and whether it is a lesser
/// one.
async fn apply_host_copy<K: Mirrored>(
    syncer: &Syncer,
    object: &K,
    mut desired: K,
) -> Result<(K, bool)> {
    if K::KEEPS_ASSIGNED {
        let host: Api<K> = Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
        let name = desired.meta().name.clone().unwrap_or_default();
        if let Some(existing) = host.get_opt(&name).await.on(Side::Host)? {
            K::keep_assigned(&mut desired, &existing);
        }
    }
    // Each fallback is lesser than the one before; a Service has two.
    let mut desired_fell_back = false;
    for _ in 0..3 {
        let error = match apply_namespaced(&syncer.host, FIELD_MANAGER, &desired).await {
            Ok(host) => return Ok((host, desired_fell_back)),
            Err(error) => error,
        };
        let fallback = match &error {
            ApplyError::Api {
                source: kube::Error::Api(status),
                ..
            } => K::fallback(&desired, status),
            _ => None,
        };
        let Some(fallback) = fallback else {
            return Err(error.into());
        };
        tracing::warn!(name = object.meta().name.as_deref().unwrap_or_default(), note = %fallback.note, "fallback");
        syncer
            .warn(&object.object_ref(&()), fallback.reason, fallback.note)
            .await;
        desired = fallback.object;
        desired_fell_back = true;
    }
    Ok((
        apply_namespaced(&syncer.host, FIELD_MANAGER, &desired).await?,
        desired_fell_back,
    ))
}

/// Deletes the host copy of `object`, if there is one.
pub async fn delete_host_copy<K: Mirrored>(syncer: &Syncer, object: &K) -> Result<()> {
    let meta = object.meta();
    let name = host_name(
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    );
    let host: Api<K> = Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    match host.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e).on(Side::Host),
    }
}

/// Deletes the host copy of `gone`, which the tenant deleted, unless the
/// tenant has made an object of that name again meanwhile (its sync owns
/// the copy then).
async fn delete_after_tenant<K: Mirrored>(syncer: &Syncer, gone: &K) -> Result<()> {
    let namespace = gone.meta().namespace.clone().unwrap_or_default();
    let name = gone.meta().name.clone().unwrap_or_default();
    let tenant: Api<K> = Api::namespaced(syncer.tenant.clone(), &namespace);
    let mut first = true;
    crate::gc::after_tenant_delete(K::kind(&()).as_ref(), &namespace, &name, || {
        let again = !std::mem::replace(&mut first, false);
        let tenant = tenant.clone();
        let name = name.clone();
        async move {
            if again
                && tenant
                    .get_metadata_opt(&name)
                    .await
                    .on(Side::Tenant)?
                    .is_some()
            {
                return Ok(());
            }
            delete_host_copy(syncer, gone).await
        }
    })
    .await
}

fn error_policy<K: Mirrored>(object: Arc<K>, error: &Error, _: Arc<Syncer>) -> Action {
    tracing::warn!(
        kind = K::kind(&()).as_ref(),
        namespace = object.meta().namespace.as_deref().unwrap_or_default(),
        name = object.meta().name.as_deref().unwrap_or_default(),
        %error,
        "sync failed; retrying"
    );
    Action::requeue(Duration::from_secs(5))
}
