//! The host's object-count quotas, kept exactly for what the syncer
//! creates.
//!
//! The host's quota admission is eventually consistent: it counts a create
//! in the quota's status before the object is stored, and the quota
//! controller's recount (after any pod or object of the namespace goes, or
//! every few minutes) reads a cache that may not hold that object yet and
//! writes the lower number back; the next create then gets through
//! (kubernetes/kubernetes#24494). A tenant creating objects while others
//! come and go gets more than its quota. The syncer is the only writer of
//! the mirrored kinds in its workloads namespace, so it counts them itself
//! before each create, from its watches of the host's objects and quotas
//! ([`crate::host_copies`]) with the creates it has under way, and refuses
//! in the words of the host's own admission. The host's admission still
//! runs after it (compute, storage, node ports, scoped quotas).

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Resource;
use vnest_api::quota_keys::count_keys;

use crate::context::Syncer;
use crate::error::Result;
use crate::host_copies::Reservation;

/// The object-count limits on `keys` (quota name, key, limit), by quota
/// name. Quotas with scopes are left to the host (their scopes select pods
/// only), and so are limits that are not whole counts.
pub fn limits<'q>(
    quotas: impl IntoIterator<Item = &'q ResourceQuota>,
    keys: &[String],
) -> Vec<(&'q str, String, u64)> {
    let mut limits: Vec<(&str, String, u64)> = quotas
        .into_iter()
        .filter_map(|quota| {
            let spec = quota.spec.as_ref()?;
            let scoped = spec.scopes.as_ref().is_some_and(|s| !s.is_empty())
                || spec.scope_selector.is_some();
            (!scoped).then_some((
                quota.metadata.name.as_deref().unwrap_or_default(),
                spec.hard.as_ref()?,
            ))
        })
        .flat_map(|(name, hard)| {
            keys.iter()
                .filter_map(move |key| Some((name, key.clone(), count(hard.get(key)?)?)))
        })
        .collect();
    limits.sort();
    limits
}

/// The first limit that `used` objects already fill, in the host
/// admission's words; `None` if one more fits.
pub fn exceeded(limits: &[(&str, String, u64)], used: usize) -> Option<String> {
    limits
        .iter()
        .find(|(_, _, limit)| used as u64 >= *limit)
        .map(|(quota, key, limit)| {
            format!(
                "exceeded quota: {quota}, requested: {key}=1, used: {key}={used}, limited: {key}={limit}"
            )
        })
}

/// An object count as a quota writes it (`"100"`, `"1k"`); `None` for what
/// is not a whole count, which the host's admission then judges.
fn count(quantity: &Quantity) -> Option<u64> {
    let text = quantity.0.trim();
    let (digits, factor) = match text.strip_suffix('k') {
        Some(digits) => (digits, 1000),
        None => (text, 1),
    };
    digits.parse::<u64>().ok().map(|n| n * factor)
}

/// Runs `create` (which creates or updates the host object `name` of kind
/// `K`) unless it would create one more than a host quota allows, in which
/// case the refusal is returned as `Ok(Err(message))`. Updates of an
/// existing object are not counted; creates under way are, until the
/// host's watch shows them or they fail.
pub async fn within<K, T, F>(syncer: &Syncer, name: &str, create: F) -> Result<Result<T, String>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    F: Future<Output = Result<T>>,
{
    let copies = syncer.host_copies.of::<K>();
    copies.listed().await;
    syncer.watched.host_quotas.wait_until_ready().await?;
    let quotas = syncer.watched.host_quotas.state();
    let limits = limits(
        quotas.iter().map(AsRef::as_ref),
        &count_keys(&K::plural(&()), &K::group(&())),
    );
    match copies.reserve(name, std::time::Instant::now(), |used| {
        exceeded(&limits, used)
    }) {
        Reservation::OverQuota(message) => Ok(Err(message)),
        Reservation::Exists => create.await.map(Ok),
        Reservation::Reserved => {
            let created = create.await;
            if created.is_err() {
                copies.release(name);
            }
            created.map(Ok)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{ResourceQuotaSpec, ScopeSelector};
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn quota(name: &str, hard: &[(&str, &str)]) -> ResourceQuota {
        ResourceQuota {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(ResourceQuotaSpec {
                hard: Some(
                    hard.iter()
                        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..ResourceQuotaSpec::default()
            }),
            ..ResourceQuota::default()
        }
    }

    #[test]
    fn one_more_fits_until_the_count_is_reached() {
        let quotas = [quota("vnest-tenant", &[("services", "3"), ("pods", "1")])];
        let limits = limits(&quotas, &count_keys("services", ""));
        assert_eq!(exceeded(&limits, 2), None);
        assert_eq!(
            exceeded(&limits, 3).as_deref(),
            Some(
                "exceeded quota: vnest-tenant, requested: services=1, used: services=3, limited: services=3"
            )
        );
    }

    #[test]
    fn either_spelling_and_the_tightest_quota_count() {
        let quotas = [
            quota("b-loose", &[("configmaps", "10")]),
            quota("a-tight", &[("count/configmaps", "2k")]),
            quota("c-tight", &[("count/configmaps", "2")]),
        ];
        let limits = limits(&quotas, &count_keys("configmaps", ""));
        assert_eq!(limits.len(), 3);
        let message = exceeded(&limits, 10).unwrap();
        assert!(message.starts_with("exceeded quota: b-loose"), "{message}");
        assert!(
            exceeded(&limits, 2)
                .unwrap()
                .starts_with("exceeded quota: c-tight")
        );
        assert_eq!(exceeded(&limits, 1), None);
    }

    #[test]
    fn other_kinds_scoped_quotas_and_non_counts_are_left_to_the_host() {
        let keys = count_keys("services", "");
        assert!(limits(&[quota("q", &[("configmaps", "0")])], &keys).is_empty());
        let mut scoped = quota("q", &[("services", "0")]);
        scoped.spec.as_mut().unwrap().scope_selector = Some(ScopeSelector::default());
        assert!(limits(&[scoped], &keys).is_empty());
        assert!(limits(&[quota("q", &[("services", "1500m")])], &keys).is_empty());
        assert_eq!(
            limits(&[quota("q", &[("count/services", "7")])], &keys),
            [("q", "count/services".to_owned(), 7)]
        );
    }
}
