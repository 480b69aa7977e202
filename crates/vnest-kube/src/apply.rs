//! Server-side apply, the one way vnest writes objects it owns: the whole
//! desired object under a field manager, forced, so a second apply of the
//! same object changes nothing and fields vnest stops setting go away.

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("a {kind} to apply has no {field}")]
    Incomplete { kind: String, field: &'static str },
    #[error("applying {kind} {name}: {source}")]
    Api {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

fn name_of<K: Resource<DynamicType = ()>>(object: &K) -> Result<&str, ApplyError> {
    object
        .meta()
        .name
        .as_deref()
        .ok_or_else(|| ApplyError::Incomplete {
            kind: K::kind(&()).into_owned(),
            field: "name",
        })
}

async fn patch<K>(api: Api<K>, manager: &str, name: &str, object: &K) -> Result<K, ApplyError>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
{
    api.patch(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| ApplyError::Api {
        kind: K::kind(&()).into_owned(),
        name: name.to_owned(),
        source,
    })
}

/// Applies a namespaced object (its namespace from its metadata) and returns
/// what the server now holds.
pub async fn apply_namespaced<K>(
    client: &Client,
    manager: &str,
    object: &K,
) -> Result<K, ApplyError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let name = name_of(object)?;
    let namespace = object
        .meta()
        .namespace
        .as_deref()
        .ok_or_else(|| ApplyError::Incomplete {
            kind: K::kind(&()).into_owned(),
            field: "namespace",
        })?;
    patch(
        Api::namespaced(client.clone(), namespace),
        manager,
        name,
        object,
    )
    .await
}

/// Applies a cluster-scoped object and returns what the server now holds.
pub async fn apply_cluster<K>(client: &Client, manager: &str, object: &K) -> Result<K, ApplyError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let name = name_of(object)?;
    patch(Api::all(client.clone()), manager, name, object).await
}

/// Applies every object of a cluster's DNS to the cluster `client` talks to,
/// each before what refers to it.
pub async fn apply_cluster_dns(
    client: &Client,
    manager: &str,
    dns: &vnest_control_plane::cluster_dns::ClusterDns,
) -> Result<(), ApplyError> {
    apply_namespaced(client, manager, &dns.service_account).await?;
    apply_cluster(client, manager, &dns.cluster_role).await?;
    apply_cluster(client, manager, &dns.cluster_role_binding).await?;
    apply_namespaced(client, manager, &dns.config_map).await?;
    apply_namespaced(client, manager, &dns.deployment).await?;
    apply_namespaced(client, manager, &dns.service).await?;
    Ok(())
}
