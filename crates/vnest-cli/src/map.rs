//! `vnest map`: which host object a tenant object became, and back.
//!
//! Tenant → host is computed (the syncer's naming scheme,
//! `vnest_api::host_copies`) and then looked up on the host, so the answer
//! also says whether the copy exists. Host → tenant reads the origin the
//! syncer wrote on the host object and the VirtualCluster labels of its
//! namespace.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kube::Api;
use kube::api::{ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use vnest_api::host_copies;
use vnest_api::host_names::{HostNamespaceRole, host_namespace, labels};

use crate::host::HostArgs;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    vnest map pod/web-7d9f -n default --cluster shop --cluster-namespace tenants\n  \
    vnest map --host pod/web-7d9f-default-3f2a9c01de -n vnest-tenants-shop-8c1f0e2b7a-wl\n\n\
Exit codes: 0 found, 3 the host copy does not exist (now), 1 error.")]
pub(crate) struct MapArgs {
    /// KIND/NAME: pod, service (svc), configmap (cm), secret or
    /// persistentvolumeclaim (pvc).
    object: String,
    /// The object's namespace: in the tenant, or with --host on the host.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// The VirtualCluster the tenant object is in (tenant → host).
    #[arg(long, required_unless_present = "host")]
    cluster: Option<String>,
    /// The VirtualCluster's namespace on the host.
    #[arg(long, default_value = "default")]
    cluster_namespace: String,
    /// OBJECT is a host object: tell the tenant object it mirrors.
    #[arg(long, conflicts_with = "cluster")]
    host: bool,
    #[command(flatten)]
    connection: HostArgs,
}

/// The kinds the syncer mirrors by name, as the host API knows them.
fn resource(kind: &str) -> anyhow::Result<ApiResource> {
    let kind = match kind.to_ascii_lowercase().as_str() {
        "pod" | "pods" | "po" => "Pod",
        "service" | "services" | "svc" => "Service",
        "configmap" | "configmaps" | "cm" => "ConfigMap",
        "secret" | "secrets" => "Secret",
        "persistentvolumeclaim" | "persistentvolumeclaims" | "pvc" => "PersistentVolumeClaim",
        other => bail!(
            "the syncer does not mirror {other:?} by name; use pod, service, configmap, secret or persistentvolumeclaim"
        ),
    };
    Ok(ApiResource::from_gvk(&GroupVersionKind::gvk(
        "", "v1", kind,
    )))
}

fn split(object: &str) -> anyhow::Result<(&str, &str)> {
    match object.split_once('/') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok((kind, name)),
        _ => bail!("{object:?} is not KIND/NAME (for example pod/web-0)"),
    }
}

pub(crate) async fn run(args: MapArgs) -> anyhow::Result<ExitCode> {
    let (kind, name) = split(&args.object)?;
    let resource = resource(kind)?;
    let client = args.connection.client().await?;
    if args.host {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &args.namespace, &resource);
        let object = api
            .get_opt(name)
            .await
            .with_context(|| format!("reading {kind}/{name} in {} on the host", args.namespace))?
            .with_context(|| {
                format!(
                    "there is no {kind}/{name} in namespace {} on the host",
                    args.namespace
                )
            })?;
        let Some((tenant_namespace, tenant_name)) =
            host_copies::origin(object.metadata.annotations.as_ref())
        else {
            bail!(
                "{kind}/{name} in {} is not a copy the syncer made (no vnest.dev/tenant-name annotation)",
                args.namespace
            );
        };
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
        let owner = namespaces
            .get_opt(&args.namespace)
            .await
            .context("reading the host namespace")?
            .and_then(|ns| ns.metadata.labels)
            .and_then(|l| {
                Some(format!(
                    "{}/{}",
                    l.get(labels::VIRTUAL_CLUSTER_NAMESPACE)?,
                    l.get(labels::VIRTUAL_CLUSTER)?
                ))
            });
        println!(
            "{}/{tenant_name} in namespace {tenant_namespace} of VirtualCluster {}",
            resource.kind.to_ascii_lowercase(),
            owner.as_deref().unwrap_or("(unknown)")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let cluster = args.cluster.as_deref().unwrap_or_default();
    let host_ns = host_namespace(
        &args.cluster_namespace,
        cluster,
        HostNamespaceRole::Workloads,
    );
    let host_name = host_copies::host_name(&args.namespace, name);
    let api: Api<DynamicObject> = Api::namespaced_with(client, &host_ns, &resource);
    let exists = api
        .get_opt(&host_name)
        .await
        .with_context(|| format!("looking up {host_name} in {host_ns} on the host"))?
        .is_some();
    println!(
        "{}/{host_name} in namespace {host_ns} on the host{}",
        resource.kind.to_ascii_lowercase(),
        if exists { "" } else { " (not there now)" }
    );
    Ok(if exists {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_kind_slash_name_of_a_mirrored_kind() {
        assert!(split("pod/web").is_ok());
        assert!(split("web").is_err());
        assert!(split("pod/").is_err());
        assert!(resource("svc").is_ok_and(|r| r.kind == "Service"));
        let refused = resource("deployment")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("does not mirror"), "{refused}");
    }
}
