//! `vnest install` and `vnest uninstall`: vnest itself on the host — the
//! VirtualCluster CRD, the supervisor's namespace, ServiceAccount, RBAC and
//! Deployment — from the same files as `kubectl apply -k manifests/`
//! (built into the binary, so an installed `vnest` needs no checkout).
//! Install is server-side apply under field manager `vnest-cli`: running it
//! again changes nothing, and a newer `vnest` upgrades in place.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::{Api, ResourceExt as _};
use serde::Deserialize as _;
use vnest_api::VirtualCluster;

use crate::clusters::explain;
use crate::exit::{Failure, TIMED_OUT};
use crate::host::HostArgs;

const FIELD_MANAGER: &str = "vnest-cli";
/// The supervisor's namespace and Deployment, as the manifests name them.
const NAMESPACE: &str = "vnest-system";
const SUPERVISOR: &str = "vnest-supervisor";
const CRD: &str = "virtualclusters.vnest.dev";
/// The image the manifests name, which `--image` replaces.
const MANIFEST_IMAGE: &str = "vnest.local/vnest:0.1.0";

/// `manifests/`, in the order of its kustomization.yaml.
const MANIFESTS: &[(&str, &str)] = &[
    (
        "crd/virtualcluster.yaml",
        include_str!("../../../manifests/crd/virtualcluster.yaml"),
    ),
    (
        "supervisor/namespace.yaml",
        include_str!("../../../manifests/supervisor/namespace.yaml"),
    ),
    (
        "supervisor/serviceaccount.yaml",
        include_str!("../../../manifests/supervisor/serviceaccount.yaml"),
    ),
    (
        "supervisor/rbac.yaml",
        include_str!("../../../manifests/supervisor/rbac.yaml"),
    ),
    (
        "supervisor/syncer-rbac.yaml",
        include_str!("../../../manifests/supervisor/syncer-rbac.yaml"),
    ),
    (
        "supervisor/flow-control.yaml",
        include_str!("../../../manifests/supervisor/flow-control.yaml"),
    ),
    (
        "supervisor/deployment.yaml",
        include_str!("../../../manifests/supervisor/deployment.yaml"),
    ),
    (
        "supervisor/network-policy.yaml",
        include_str!("../../../manifests/supervisor/network-policy.yaml"),
    ),
];

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    vnest install\n  \
    vnest install --dry-run\n  \
    vnest install --image registry.example/vnest:0.1.0 --context prod-host\n\n\
Needs cluster-admin on the host (it creates a CRD, ClusterRoles and a namespace). \
Same objects as `kubectl apply -k manifests/`.")]
pub(crate) struct InstallArgs {
    /// Show what would change; change nothing (the host validates it all).
    #[arg(long)]
    dry_run: bool,
    /// vnest's image (supervisor and syncers), where the host pulls it from.
    #[arg(long, default_value = MANIFEST_IMAGE)]
    image: String,
    /// How long to wait for the supervisor to be available.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    timeout: Duration,
    #[command(flatten)]
    connection: HostArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  vnest uninstall\n  vnest uninstall --force   # deletes every VirtualCluster first"
)]
pub(crate) struct UninstallArgs {
    /// Delete every VirtualCluster (and its control plane) first.
    #[arg(long)]
    force: bool,
    /// How long to wait for VirtualClusters and vnest's namespace to go.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    timeout: Duration,
    #[command(flatten)]
    connection: HostArgs,
}

/// Every object of the manifests, with `image` as vnest's image.
fn objects(image: &str) -> anyhow::Result<Vec<DynamicObject>> {
    let mut objects = Vec::new();
    for (file, text) in MANIFESTS {
        for document in serde_yaml_ng::Deserializer::from_str(text) {
            let value = serde_json::Value::deserialize(document)
                .with_context(|| format!("manifests/{file} is not YAML"))?;
            if value.is_null() {
                continue;
            }
            let text = serde_json::to_string(&value)
                .context("re-encoding a manifest")?
                .replace(MANIFEST_IMAGE, image);
            objects.push(
                serde_json::from_str(&text)
                    .with_context(|| format!("manifests/{file} holds no Kubernetes object"))?,
            );
        }
    }
    Ok(objects)
}

fn kind_name(object: &DynamicObject) -> String {
    let kind = object
        .types
        .as_ref()
        .map(|t| t.kind.to_lowercase())
        .unwrap_or_default();
    format!("{kind}/{}", object.name_any())
}

async fn api_for(
    client: &kube::Client,
    object: &DynamicObject,
) -> anyhow::Result<Api<DynamicObject>> {
    let types = object
        .types
        .as_ref()
        .context("a manifest without apiVersion/kind")?;
    let gvk = GroupVersionKind::try_from(types).context("a manifest's apiVersion")?;
    let (resource, capabilities): (ApiResource, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| {
            explain(
                e,
                &format!("looking up {} on the host", types.kind),
                NAMESPACE,
            )
        })?;
    Ok(match (capabilities.scope, object.namespace()) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), &ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    })
}

pub(crate) async fn run_install(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client().await?;
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    params.dry_run = args.dry_run;
    let suffix = if args.dry_run { " (dry run)" } else { "" };
    for object in objects(&args.image)? {
        let what = kind_name(&object);
        // The CRD must exist before anything names it; the namespace
        // before what lives in it. A dry run sees neither, so it stops at
        // what the host cannot check yet.
        let api = api_for(&client, &object).await?;
        let before = api
            .get_opt(&object.name_any())
            .await
            .map_err(|e| install_error(e, &what))?;
        let applied = api
            .patch(&object.name_any(), &params, &Patch::Apply(&object))
            .await;
        let applied = match applied {
            Err(kube::Error::Api(status)) if args.dry_run && status.code == 404 => {
                println!("{what} created{suffix} (its namespace does not exist yet)");
                continue;
            }
            other => other.map_err(|e| install_error(e, &what))?,
        };
        let verdict = match before {
            None => "created",
            Some(before) if before.resource_version() == applied.resource_version() => "unchanged",
            Some(_) => "configured",
        };
        println!("{what} {verdict}{suffix}");
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    eprintln!("waiting for the supervisor ({NAMESPACE}/{SUPERVISOR}) to be available");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    loop {
        let deployment = deployments
            .get(SUPERVISOR)
            .await
            .map_err(|e| explain(e, "reading the supervisor's Deployment", NAMESPACE))?;
        let status = deployment.status.unwrap_or_default();
        let generation = deployment.metadata.generation.unwrap_or_default();
        let current = status.observed_generation.unwrap_or_default() >= generation
            && status.updated_replicas.unwrap_or_default() >= 1
            && status.available_replicas.unwrap_or_default() >= 1
            && status.unavailable_replicas.unwrap_or_default() == 0;
        if current {
            eprintln!(
                "[{:>6.1}s] the supervisor is available",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        if started.elapsed() > args.timeout {
            eprintln!(
                "error: timed out after {} waiting for the supervisor to be available; `kubectl -n {NAMESPACE} describe deployment {SUPERVISOR}` and its pods' events tell why (an image the nodes cannot pull: pass --image)",
                humantime::format_duration(args.timeout)
            );
            return Ok(ExitCode::from(TIMED_OUT));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "vnest is installed; create a virtual cluster with: vnest create NAME --pool KEY=VALUE --wait"
    );
    Ok(ExitCode::SUCCESS)
}

fn install_error(error: kube::Error, what: &str) -> anyhow::Error {
    match &error {
        kube::Error::Api(status) if status.code == 403 => Failure::Forbidden(format!(
            "applying {what}: forbidden ({}); installing vnest needs cluster-admin on the host (it creates a CRD, ClusterRoles and a namespace)",
            status.message
        ))
        .into(),
        _ => explain(error, &format!("applying {what}"), NAMESPACE),
    }
}

pub(crate) async fn run_uninstall(args: UninstallArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client().await?;
    let started = Instant::now();
    let clusters: Api<VirtualCluster> = Api::all(client.clone());
    let existing = match clusters.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        Err(e) => return Err(explain(e, "listing VirtualClusters", "all namespaces")),
    };
    let names: Vec<String> = existing
        .iter()
        .map(|vc| format!("{}/{}", vc.namespace().unwrap_or_default(), vc.name_any()))
        .collect();
    if !names.is_empty() && !args.force {
        anyhow::bail!(
            "{} VirtualCluster(s) exist ({}); delete them first (`vnest delete NAME -n NAMESPACE --wait`) or pass --force to delete them and their control planes",
            names.len(),
            names.join(", ")
        );
    }
    for vc in &existing {
        let api: Api<VirtualCluster> =
            Api::namespaced(client.clone(), &vc.namespace().unwrap_or_default());
        match api.delete(&vc.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(explain(e, "deleting a VirtualCluster", "all namespaces")),
        }
    }
    if !names.is_empty() {
        eprintln!(
            "deleting {} VirtualCluster(s): {}",
            names.len(),
            names.join(", ")
        );
        loop {
            let left = clusters
                .list(&ListParams::default())
                .await
                .map_err(|e| explain(e, "listing VirtualClusters", "all namespaces"))?
                .items
                .len();
            if left == 0 {
                eprintln!(
                    "[{:>6.1}s] every VirtualCluster is gone",
                    started.elapsed().as_secs_f64()
                );
                break;
            }
            if started.elapsed() > args.timeout {
                eprintln!(
                    "error: timed out with {left} VirtualCluster(s) still being cleaned up by the supervisor; vnest stays installed"
                );
                return Ok(ExitCode::from(TIMED_OUT));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    for object in objects(MANIFEST_IMAGE)?.iter().rev() {
        let what = kind_name(object);
        let api = api_for(&client, object).await?;
        match api
            .delete(&object.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => println!("{what} deleted"),
            Err(kube::Error::Api(status)) if status.code == 404 => println!("{what} not found"),
            Err(e) => return Err(install_error(e, &what)),
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    loop {
        let namespace_gone = namespaces.get_opt(NAMESPACE).await.ok().flatten().is_none();
        let crd_gone = crds.get_opt(CRD).await.ok().flatten().is_none();
        if namespace_gone && crd_gone {
            eprintln!(
                "[{:>6.1}s] vnest is uninstalled",
                started.elapsed().as_secs_f64()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if started.elapsed() > args.timeout {
            eprintln!("error: timed out waiting for namespace {NAMESPACE} and the CRD to go");
            return Ok(ExitCode::from(TIMED_OUT));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_built_in_manifests_are_the_kustomizations() {
        let kustomization = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../manifests/kustomization.yaml"),
        )
        .unwrap();
        let value: serde_json::Value = serde_yaml_ng::from_str(&kustomization).unwrap();
        let listed: Vec<&str> = value["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let built_in: Vec<&str> = MANIFESTS.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            built_in, listed,
            "install applies what `kubectl apply -k manifests/` applies"
        );
    }

    #[test]
    fn the_image_is_replaced_everywhere() {
        let objects = objects("registry.example/vnest:9").unwrap();
        let deployment = objects
            .iter()
            .find(|o| kind_name(o) == "deployment/vnest-supervisor")
            .unwrap();
        let text = serde_json::to_string(deployment).unwrap();
        assert!(!text.contains(MANIFEST_IMAGE), "{text}");
        assert_eq!(
            text.matches("registry.example/vnest:9").count(),
            2,
            "container and VNEST_IMAGE"
        );
        assert!(
            objects
                .iter()
                .any(|o| kind_name(o) == format!("customresourcedefinition/{CRD}"))
        );
    }
}
