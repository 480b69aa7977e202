//! Garbage collection: host objects whose tenant origin is gone. Deletions
//! the watches report are followed at once; this catches the rest (a tenant
//! object deleted while the syncer was away, a host object made by a
//! syncer that crashed between two writes, host copies of objects a
//! restored snapshot no longer has): a sweep at start and every
//! [`RESYNC`], or [`GRACE_SECONDS`] after a sweep that left an orphan
//! alone for its youth, or within seconds after a sweep that failed.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::context::{RESYNC, Syncer};
use crate::error::{OnSide, Result, Side};
use crate::pods::TOKEN_FOR_POD;
use vnest_api::host_copies::{MANAGED_BY, MANAGER, origin};

/// Host Services younger than this are left alone: the Service-address
/// webhook creates a host copy a moment before the tenant's Service exists
/// (and the tenant apiserver may still refuse it). Other kinds' copies are
/// made only for tenant objects that exist, so an orphan of theirs goes at
/// once.
const GRACE_SECONDS: i64 = 60;

/// How soon a failed sweep is tried again, at first: a sweep fails when
/// either apiserver does not answer for a moment (the tenant's just
/// restored, the host's restarting), and what it would remove (copies of
/// objects a restored snapshot lacks) should not wait for [`RESYNC`]. Each
/// failure in a row doubles it, up to [`RESYNC`].
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(2);

/// The longest wait between tries of [`after_tenant_delete`].
const DELETE_RETRY_MOST: std::time::Duration = std::time::Duration::from_secs(16);

/// Runs `delete`, which removes the host side of tenant object
/// `namespace/name` of `kind` that the tenant deleted. A failure (the host
/// apiserver away for a moment) is tried again for about half a minute,
/// waiting 1, 2, 4, … s; the last one is returned, and the sweep
/// removes what is left. Without it, a copy whose deletion failed waited
/// for the next sweep, up to [`RESYNC`].
pub async fn after_tenant_delete<F, Fut>(
    kind: &str,
    namespace: &str,
    name: &str,
    mut delete: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        let error = match delete().await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if wait > DELETE_RETRY_MOST {
            return Err(error);
        }
        tracing::debug!(kind, namespace, name, %error, retry_in_s = wait.as_secs(), "deleting the host side failed");
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}

pub async fn run(syncer: Arc<Syncer>) {
    let mut retry = RETRY_FIRST;
    loop {
        let next = match sweep(&syncer).await {
            Ok(swept) => {
                retry = RETRY_FIRST;
                if swept.removed > 0 {
                    tracing::info!(
                        removed = swept.removed,
                        "removed host objects whose tenant origin is gone"
                    );
                }
                // Back as soon as one left alone is old enough to go.
                swept.look_again_in.map_or(RESYNC, |wait| wait.min(RESYNC))
            }
            Err(error) => {
                tracing::warn!(%error, ?retry, "garbage collection failed; trying again");
                let now = retry;
                retry = (retry * 2).min(RESYNC);
                now
            }
        };
        tokio::time::sleep(next).await;
    }
}

/// What a sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Orphans deleted.
    pub removed: usize,
    /// Orphans left alone because they are younger than [`GRACE_SECONDS`].
    pub too_young: usize,
    /// When the first of those is old enough to go.
    pub look_again_in: Option<std::time::Duration>,
}

impl std::ops::AddAssign for Swept {
    fn add_assign(&mut self, other: Self) {
        self.removed += other.removed;
        self.too_young += other.too_young;
        self.look_again_in = match (self.look_again_in, other.look_again_in) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Deletes orphaned host copies.
pub async fn sweep(syncer: &Syncer) -> Result<Swept> {
    let mut swept = Swept::default();
    swept += sweep_kind::<Pod, Pod>(syncer, false).await?;
    swept += sweep_kind::<ConfigMap, ConfigMap>(syncer, false).await?;
    swept += sweep_kind::<Service, Service>(syncer, false).await?;
    swept += sweep_kind::<PersistentVolumeClaim, PersistentVolumeClaim>(syncer, false).await?;
    swept += sweep_kind::<Ingress, Ingress>(syncer, false).await?;
    swept += sweep_kind::<EndpointSlice, EndpointSlice>(syncer, false).await?;
    swept += sweep_kind::<NetworkPolicy, NetworkPolicy>(syncer, false).await?;
    // Token Secrets belong to pods; the other Secrets to tenant Secrets.
    swept += sweep_kind::<Secret, Pod>(syncer, true).await?;
    swept += sweep_kind::<Secret, Secret>(syncer, false).await?;
    Ok(swept)
}

/// Host objects of kind `H` whose tenant origin of kind `T` is missing.
/// `tokens` picks the token Secrets (labelled [`TOKEN_FOR_POD`]) or the rest.
async fn sweep_kind<H, T>(syncer: &Syncer, tokens: bool) -> Result<Swept>
where
    H: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
    T: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let host: Api<H> = Api::namespaced(syncer.host.clone(), &syncer.settings.host_namespace);
    let token_filter = if tokens {
        TOKEN_FOR_POD.to_owned()
    } else {
        format!("!{TOKEN_FOR_POD}")
    };
    let selector = format!("{MANAGED_BY}={MANAGER},{token_filter}");
    let mut swept = Swept::default();
    let now = k8s_openapi::jiff::Timestamp::now();
    for object in host
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .on(Side::Host)?
    {
        let age = object
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(GRACE_SECONDS, |t| now.as_second() - t.0.as_second());
        let young = H::kind(&()) == "Service" && age < GRACE_SECONDS;
        let Some((namespace, name)) = origin(object.metadata.annotations.as_ref()) else {
            continue;
        };
        let tenant: Api<T> = Api::namespaced(syncer.tenant.clone(), &namespace);
        if tenant
            .get_metadata_opt(&name)
            .await
            .on(Side::Tenant)?
            .is_some()
        {
            continue;
        }
        if young {
            // One second more, for the clocks' rounding.
            swept += Swept {
                too_young: 1,
                look_again_in: Some(std::time::Duration::from_secs(
                    (GRACE_SECONDS - age + 1).unsigned_abs(),
                )),
                ..Swept::default()
            };
            continue;
        }
        let Some(host_name) = object.metadata.name.clone() else {
            continue;
        };
        match host.delete(&host_name, &DeleteParams::default()).await {
            Ok(_) => swept.removed += 1,
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e).on(Side::Host),
        }
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The sweep comes back as soon as the first orphan left alone may go.
    #[test]
    fn the_next_look_is_the_earliest_of_the_kinds() {
        let young = |secs| Swept {
            too_young: 1,
            look_again_in: Some(Duration::from_secs(secs)),
            ..Swept::default()
        };
        let mut swept = Swept {
            removed: 2,
            ..Swept::default()
        };
        swept += young(40);
        swept += young(5);
        swept += Swept::default();
        assert_eq!(swept.removed, 2);
        assert_eq!(swept.too_young, 2);
        assert_eq!(swept.look_again_in, Some(Duration::from_secs(5)));
    }
}
