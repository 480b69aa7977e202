//! Storage, up: the volumes the host bound to the tenant's claims, and the
//! host's StorageClasses (read-only in spirit: the syncer overwrites them).
//!
//! A claim goes down like a ConfigMap ([`crate::mirror`]). When the host
//! binds its copy, the tenant gets a PersistentVolume of the host volume's
//! name, pre-bound to the tenant claim (its `claimRef` names the claim and
//! its UID), so the tenant's own volume controller binds the claim as it
//! would bind any pre-bound volume. The tenant's volume says what was
//! bound (size, access modes, class) but not where: its source is a CSI
//! handle naming the host volume, not the host's path or device, and its
//! reclaim policy is `Retain` (the host reclaims). When the claim goes,
//! its host copy goes and so does the tenant's volume.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Resource, ResourceExt};

use crate::context::Syncer;
use crate::error::{OnSide, Result, Side};

/// Label on the tenant's volumes and StorageClasses the syncer made.
pub const MIRRORED: &str = "vnest.dev/mirrored-from-host";
/// Annotation on a tenant volume: the tenant claim (`namespace/name`).
pub const TENANT_CLAIM: &str = "vnest.dev/tenant-claim";
/// The CSI driver name tenant volumes carry: "the host holds this volume".
pub const HOST_VOLUME_DRIVER: &str = "host-volume.vnest.dev";
/// How often StorageClasses are mirrored.
pub const CLASS_PERIOD: Duration = Duration::from_secs(60);
pub const CLASS_RETRY: Duration = Duration::from_secs(5);

/// The tenant volume for `tenant` claim once the host bound its copy
/// `host`, or `None` while it is unbound.
pub fn tenant_volume(
    tenant: &PersistentVolumeClaim,
    host: &PersistentVolumeClaim,
) -> Option<PersistentVolume> {
    let status = host.status.as_ref()?;
    if status.phase.as_deref() != Some("Bound") {
        return None;
    }
    let volume = host.spec.as_ref()?.volume_name.clone()?;
    let namespace = tenant.namespace()?;
    let name = tenant.name_any();
    let spec = tenant.spec.clone().unwrap_or_default();
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(volume.clone()),
            labels: Some(BTreeMap::from([(MIRRORED.to_owned(), "true".to_owned())])),
            annotations: Some(BTreeMap::from([(
                TENANT_CLAIM.to_owned(),
                format!("{namespace}/{name}"),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: status.capacity.clone(),
            access_modes: status.access_modes.clone(),
            volume_mode: host.spec.as_ref().and_then(|s| s.volume_mode.clone()),
            storage_class_name: spec.storage_class_name,
            persistent_volume_reclaim_policy: Some("Retain".to_owned()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("PersistentVolumeClaim".to_owned()),
                namespace: Some(namespace),
                name: Some(name),
                uid: tenant.uid(),
                ..ObjectReference::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: HOST_VOLUME_DRIVER.to_owned(),
                volume_handle: volume,
                ..CSIPersistentVolumeSource::default()
            }),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    })
}

/// Gives the tenant the volume the host bound to `host` (once).
pub async fn bind_up(
    syncer: &Syncer,
    tenant: &PersistentVolumeClaim,
    host: &PersistentVolumeClaim,
) -> Result<()> {
    let Some(volume) = tenant_volume(tenant, host) else {
        return Ok(());
    };
    let api: Api<PersistentVolume> = Api::all(syncer.tenant.clone());
    let name = volume.name_any();
    match api.get_opt(&name).await.on(Side::Tenant)? {
        Some(existing) if existing.labels().contains_key(MIRRORED) => Ok(()),
        Some(_) => {
            tracing::warn!(
                volume = name,
                "the tenant has a volume of that name of its own; not replacing it"
            );
            Ok(())
        }
        None => match api.create(&PostParams::default(), &volume).await {
            Ok(_) => {
                tracing::info!(volume = name, claim = ?volume.annotations().get(TENANT_CLAIM), "host volume bound; the tenant sees it");
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(error) => Err(error).on(Side::Tenant),
        },
    }
}

/// Removes the tenant volumes the syncer made for `tenant` claim.
pub async fn release(syncer: &Syncer, tenant: &PersistentVolumeClaim) -> Result<()> {
    let claim = format!(
        "{}/{}",
        tenant.namespace().unwrap_or_default(),
        tenant.name_any()
    );
    let api: Api<PersistentVolume> = Api::all(syncer.tenant.clone());
    let ours = api
        .list(&ListParams::default().labels(&format!("{MIRRORED}=true")))
        .await
        .on(Side::Tenant)?;
    for volume in ours {
        if volume.annotations().get(TENANT_CLAIM) == Some(&claim) {
            match api
                .delete(&volume.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error).on(Side::Tenant),
            }
        }
    }
    Ok(())
}

/// The tenant's copy of host StorageClass `class`: the same provisioner,
/// parameters, binding mode and default marker, so claims name the host's
/// classes and the tenant's default-class admission picks the host's
/// default.
pub fn tenant_class(class: &StorageClass) -> StorageClass {
    let mut labels = BTreeMap::from([(MIRRORED.to_owned(), "true".to_owned())]);
    labels.extend(class.labels().clone());
    let annotations: BTreeMap<String, String> = class
        .annotations()
        .iter()
        .filter(|(k, _)| k.ends_with("is-default-class"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    StorageClass {
        metadata: ObjectMeta {
            name: class.meta().name.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        provisioner: class.provisioner.clone(),
        parameters: class.parameters.clone(),
        reclaim_policy: class.reclaim_policy.clone(),
        volume_binding_mode: class.volume_binding_mode.clone(),
        allow_volume_expansion: class.allow_volume_expansion,
        mount_options: class.mount_options.clone(),
        allowed_topologies: None,
    }
}

/// Mirrors the host's StorageClasses up every [`CLASS_PERIOD`], retrying
/// a failed round after [`CLASS_RETRY`].
pub async fn run_classes(syncer: Arc<Syncer>) {
    loop {
        let wait = match mirror_classes(&syncer).await {
            Ok(()) => CLASS_PERIOD,
            Err(error) => {
                tracing::warn!(%error, "mirroring StorageClasses failed; retrying");
                CLASS_RETRY
            }
        };
        tokio::time::sleep(wait).await;
    }
}

async fn mirror_classes(syncer: &Syncer) -> Result<()> {
    let host: Api<StorageClass> = Api::all(syncer.host.clone());
    let tenant: Api<StorageClass> = Api::all(syncer.tenant.clone());
    let classes = host
        .list(&ListParams::default())
        .await
        .on(Side::Host)?
        .items;
    let names: BTreeSet<String> = classes.iter().map(ResourceExt::name_any).collect();
    for class in &classes {
        vnest_kube::apply::apply_cluster(
            &syncer.tenant,
            crate::context::FIELD_MANAGER,
            &tenant_class(class),
        )
        .await?;
    }
    let mirrored = tenant
        .list(&ListParams::default().labels(&format!("{MIRRORED}=true")))
        .await
        .on(Side::Tenant)?;
    for class in mirrored {
        if !names.contains(&class.name_any()) {
            tenant
                .delete(&class.name_any(), &DeleteParams::default())
                .await
                .on(Side::Tenant)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn claims() -> (PersistentVolumeClaim, PersistentVolumeClaim) {
        let tenant = serde_json::from_value(json!({
            "metadata": { "name": "data", "namespace": "db", "uid": "t-uid" },
            "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } }, "storageClassName": "local" }
        }))
        .unwrap();
        let host = serde_json::from_value(json!({
            "metadata": { "name": "data-db-0123456789", "namespace": "t-wl", "uid": "h-uid" },
            "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } }, "storageClassName": "local", "volumeName": "local-node1-3" },
            "status": { "phase": "Bound", "capacity": { "storage": "10Gi" }, "accessModes": ["ReadWriteOnce"] }
        }))
        .unwrap();
        (tenant, host)
    }

    #[test]
    fn a_bound_host_claim_gives_the_tenant_a_volume_prebound_to_its_claim() {
        let (tenant, host) = claims();
        let volume = tenant_volume(&tenant, &host).unwrap();
        assert_eq!(volume.name_any(), "local-node1-3");
        let spec = volume.spec.unwrap();
        let claim = spec.claim_ref.unwrap();
        assert_eq!(
            (
                claim.namespace.as_deref(),
                claim.name.as_deref(),
                claim.uid.as_deref()
            ),
            (Some("db"), Some("data"), Some("t-uid"))
        );
        assert_eq!(spec.capacity.unwrap()["storage"].0, "10Gi");
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain")
        );
        let source = spec.csi.unwrap();
        assert_eq!(
            (source.driver.as_str(), source.volume_handle.as_str()),
            (HOST_VOLUME_DRIVER, "local-node1-3")
        );
        assert!(
            spec.local.is_none() && spec.host_path.is_none(),
            "the host's path stays on the host"
        );
    }

    #[test]
    fn an_unbound_host_claim_gives_nothing_yet() {
        let (tenant, mut host) = claims();
        host.status.as_mut().unwrap().phase = Some("Pending".into());
        assert!(tenant_volume(&tenant, &host).is_none());
    }

    #[test]
    fn classes_keep_what_claims_need_and_the_default_marker() {
        let class: StorageClass = serde_json::from_value(json!({
            "metadata": { "name": "local", "annotations": { "storageclass.kubernetes.io/is-default-class": "true", "kubectl.kubernetes.io/last-applied-configuration": "{}" } },
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer"
        }))
        .unwrap();
        let copy = tenant_class(&class);
        assert_eq!(copy.provisioner, "kubernetes.io/no-provisioner");
        assert_eq!(
            copy.volume_binding_mode.as_deref(),
            Some("WaitForFirstConsumer")
        );
        let annotations = copy.metadata.annotations.unwrap();
        assert_eq!(annotations.len(), 1);
        assert_eq!(copy.metadata.labels.unwrap()[MIRRORED], "true");
    }
}
