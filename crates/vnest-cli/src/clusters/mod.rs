//! The commands about virtual clusters on a host: each speaks to the host
//! only through `VirtualCluster` objects (what GitOps can do too), with
//! kubectl's conventions for reaching the host (`--kubeconfig`,
//! `--context`, `-n`).

pub(crate) mod backups;
pub(crate) mod connect;
pub(crate) mod create;
pub(crate) mod describe;
mod forward;
mod helper_pods;
pub(crate) mod kubeconfig;
pub(crate) mod lifecycle;
pub(crate) mod list;
pub(crate) mod renew;
pub(crate) mod restore;
pub(crate) mod run;
pub(crate) mod snapshot;
pub(crate) mod verify;
mod wait;

use std::time::Duration;

use anyhow::anyhow;
use kube::Api;
use vnest_api::VirtualCluster;

use crate::exit::Failure;

/// How long `--wait` waits unless told.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) fn api(client: &kube::Client, namespace: &str) -> Api<VirtualCluster> {
    Api::namespaced(client.clone(), namespace)
}

/// There is no VirtualCluster `namespace/name` (exit code 3), and where to
/// look for the right one.
pub(crate) fn not_found(namespace: &str, name: &str) -> anyhow::Error {
    Failure::NotFound(format!(
        "there is no VirtualCluster {name} in namespace {namespace}; `vnest list -A` shows them all"
    ))
    .into()
}

/// VirtualCluster `namespace/name`, or why it cannot be had.
pub(crate) async fn get(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<VirtualCluster> {
    api(client, namespace)
        .get_opt(name)
        .await
        .map_err(|e| {
            explain(
                e,
                &format!("reading VirtualCluster {namespace}/{name}"),
                namespace,
            )
        })?
        .ok_or_else(|| not_found(namespace, name))
}

/// Key `key` of Secret `namespace/name` (holding `what`) as text; the
/// error says which Secret and key, and what to do about access.
pub(crate) async fn secret_text(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
    what: &str,
) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), namespace);
    let secret = secrets.get(name).await.map_err(|e| {
        explain(
            e,
            &format!("reading {what} (Secret {namespace}/{name})"),
            namespace,
        )
    })?;
    let bytes = secret
        .data
        .and_then(|mut d| d.remove(key))
        .with_context(|| format!("Secret {namespace}/{name} has no {key} key"))?;
    String::from_utf8(bytes.0)
        .with_context(|| format!("{what} in Secret {namespace}/{name} is not text"))
}

/// Whether a 404 means the VirtualCluster type is unknown to the host (a
/// GET says "could not find the requested resource", a LIST answers
/// "404 page not found"), not that one object is missing.
pub(crate) fn crd_missing(status: &kube::core::Status) -> bool {
    status.code == 404
        && (status
            .message
            .contains("could not find the requested resource")
            || status.message.contains("page not found"))
}

/// What went wrong talking to the host, said so that the admin knows what
/// to do. `what` names the attempt ("creating VirtualCluster tenants/a").
pub(crate) fn explain(error: kube::Error, what: &str, namespace: &str) -> anyhow::Error {
    match &error {
        kube::Error::Api(status) => match status.code {
            404 if crd_missing(status) => Failure::NotInstalled(format!(
                "{what}: vnest is not installed on this host (no VirtualCluster CRD); run `vnest install` as a host admin"
            ))
            .into(),
            404 => Failure::NotFound(format!("{what}: {}", status.message)).into(),
            401 => Failure::Unreachable(format!(
                "{what}: the host refused your credentials (401 Unauthorized); check --kubeconfig/--context"
            ))
            .into(),
            403 => Failure::Forbidden(format!(
                "{what}: your host identity may not do this in namespace {namespace} ({}); ask the host admin for RBAC on virtualclusters.vnest.dev there",
                status.message
            ))
            .into(),
            409 => anyhow!("{what}: {}; pick another name or delete the old one (`vnest delete`)", status.message),
            422 => anyhow!("{what}: the host refused the spec: {}", status.message),
            _ => anyhow!("{what}: {} ({})", status.message, status.code),
        },
        _ => Failure::Unreachable(format!(
            "{what}: the host cluster is unreachable ({error}); check --kubeconfig/--context and that the host is up"
        ))
        .into(),
    }
}
