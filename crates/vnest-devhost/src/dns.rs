//! CoreDNS as cluster DNS: a Deployment in kube-system behind the `kube-dns`
//! Service at the address every kubelet hands its pods.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::topology::{CLUSTER_DOMAIN, DNS_SERVICE_IP};

const FIELD_MANAGER: &str = "vnest-devhost";
const NAMESPACE: &str = "kube-system";

/// Applies CoreDNS's objects with server-side apply.
pub async fn install(client: &Client, image: &str) -> anyhow::Result<()> {
    let labels = json!({ "k8s-app": "kube-dns" });
    apply_namespaced::<ServiceAccount>(
        client,
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": "coredns", "namespace": NAMESPACE },
        }),
    )
    .await?;
    apply_cluster::<ClusterRole>(client, json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": "system:coredns" },
        "rules": [
            { "apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"] },
            { "apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"] },
        ],
    })).await?;
    apply_cluster::<ClusterRoleBinding>(client, json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": { "name": "system:coredns" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns" },
        "subjects": [{ "kind": "ServiceAccount", "name": "coredns", "namespace": NAMESPACE }],
    })).await?;
    apply_namespaced::<ConfigMap>(
        client,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "coredns", "namespace": NAMESPACE },
            "data": { "Corefile": corefile() },
        }),
    )
    .await?;
    apply_namespaced::<Deployment>(client, json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "coredns", "namespace": NAMESPACE, "labels": labels },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": labels },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "serviceAccountName": "coredns",
                    "dnsPolicy": "Default",
                    "containers": [{
                        "name": "coredns",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "args": ["-conf", "/etc/coredns/Corefile"],
                        "ports": [
                            { "name": "dns", "containerPort": 1053, "protocol": "UDP" },
                            { "name": "dns-tcp", "containerPort": 1053, "protocol": "TCP" },
                        ],
                        "readinessProbe": { "httpGet": { "path": "/ready", "port": 8181 } },
                        "securityContext": {
                            "runAsNonRoot": true,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] },
                        },
                        "volumeMounts": [{ "name": "config", "mountPath": "/etc/coredns", "readOnly": true }],
                    }],
                    "volumes": [{ "name": "config", "configMap": { "name": "coredns" } }],
                },
            },
        },
    })).await?;
    apply_namespaced::<Service>(
        client,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "kube-dns", "namespace": NAMESPACE, "labels": labels },
            "spec": {
                "selector": labels,
                "clusterIP": DNS_SERVICE_IP.to_string(),
                "ports": [
                    { "name": "dns", "port": 53, "targetPort": 1053, "protocol": "UDP" },
                    { "name": "dns-tcp", "port": 53, "targetPort": 1053, "protocol": "TCP" },
                ],
            },
        }),
    )
    .await?;
    Ok(())
}

/// CoreDNS listens on 1053 so it needs no privileged port.
fn corefile() -> String {
    format!(
        ".:1053 {{\n    errors\n    health\n    ready\n    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n    }}\n    cache 30\n    loop\n    reload\n}}\n"
    )
}

/// Waits until the Deployment has an available replica.
pub async fn wait_ready(client: &Client, timeout: Duration) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let start = Instant::now();
    loop {
        let available = deployments
            .get_opt("coredns")
            .await?
            .and_then(|d| d.status)
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        if available > 0 {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "CoreDNS was not available after {timeout:?}; `kubectl -n kube-system describe pod -l k8s-app=kube-dns` says why"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn apply_namespaced<K>(client: &Client, object: Value) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + serde::Serialize
        + Clone
        + std::fmt::Debug,
{
    apply(Api::<K>::namespaced(client.clone(), NAMESPACE), object).await
}

async fn apply_cluster<K>(client: &Client, object: Value) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
        + DeserializeOwned
        + serde::Serialize
        + Clone
        + std::fmt::Debug,
{
    apply(Api::<K>::all(client.clone()), object).await
}

async fn apply<K>(api: Api<K>, object: Value) -> anyhow::Result<()>
where
    K: kube::Resource<DynamicType = ()>
        + DeserializeOwned
        + serde::Serialize
        + Clone
        + std::fmt::Debug,
{
    let typed: K = serde_json::from_value(object).context("building a CoreDNS object")?;
    let name = typed.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&typed),
    )
    .await
    .with_context(|| format!("applying {} {name}", K::kind(&())))?;
    Ok(())
}
