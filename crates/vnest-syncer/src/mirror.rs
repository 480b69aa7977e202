//! ConfigMaps, Secrets and Services mirrored down: every one the tenant
//! has, applied to the host under its host name whenever it changes, and
//! deleted there before the tenant's copy goes (a finalizer, so nothing is
//! left behind if the syncer was away when it was deleted).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::DeleteParams;
use kube::runtime::controller::{self, Action};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use vnest_kube::apply::apply_namespaced;

use crate::context::{CONCURRENCY, FIELD_MANAGER, FINALIZER, RESYNC, Syncer};
use crate::error::{Error, OnSide, Result, Side};
use crate::naming::{MANAGED_BY, MANAGER, host_name, origin};
use crate::translate::{self, Placement};

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
    /// What the syncer learns from the host's copy.
    fn observe(_syncer: &Syncer, _tenant: &Self, _host: &Self) {}
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

impl Mirrored for Service {
    fn to_host(&self, placement: &Placement) -> Self {
        translate::service(self, placement)
    }
    /// The tenant DNS Service's host address is what pods get as their
    /// nameserver.
    fn observe(syncer: &Syncer, tenant: &Self, host: &Self) {
        let (ns, name) = &syncer.settings.dns_service;
        if tenant.metadata.namespace.as_ref() == Some(ns)
            && tenant.metadata.name.as_ref() == Some(name)
        {
            let ip = host.spec.as_ref().and_then(|s| s.cluster_ip.clone());
            tracing::info!(ip = ?ip, "the tenant's DNS Service has its host address");
            syncer.set_dns_ip(ip);
        }
    }
}

/// Runs the mirror of kind `K` until shutdown.
pub async fn run<K: Mirrored>(syncer: Arc<Syncer>) {
    let tenant: Api<K> = Api::all(syncer.tenant.clone());
    let host: Api<K> = Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    let ours = watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}"));
    Controller::new(tenant, watcher::Config::default())
        .watches(host, ours, |object: K| {
            let (namespace, name) = origin(object.meta().annotations.as_ref())?;
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
    let sync = syncer.metrics.start(K::kind(&()).as_ref());
    let result = sync_one(object, &syncer).await;
    sync.finish(result.is_ok());
    result
}

async fn sync_one<K: Mirrored>(object: Arc<K>, syncer: &Syncer) -> Result<Action> {
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(syncer.tenant.clone(), &namespace);
    finalizer(&api, FINALIZER, object, |event| async {
        match event {
            Event::Apply(object) => {
                let host = apply_namespaced(
                    &syncer.host,
                    FIELD_MANAGER,
                    &object.to_host(&syncer.placement()),
                )
                .await?;
                K::observe(syncer, &object, &host);
                Ok(Action::requeue(RESYNC))
            }
            Event::Cleanup(object) => {
                delete_host_copy::<K>(syncer, &object).await?;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
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
