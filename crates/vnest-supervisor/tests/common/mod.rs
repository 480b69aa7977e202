//! What the end-to-end tests on the development host share: installing
//! vnest from `manifests/`, VirtualClusters, and waiting for them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;
use vnest_api::host_names::{HostNamespaceRole, host_namespace};
use vnest_api::{Phase, VirtualCluster};
use vnest_tests::{kubectl, workspace_root};

pub const TENANTS: &str = "tenants";
pub const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Two real nodes: `vnest-node1` in pool `a`, `vnest-node2` in pool `b`.
pub fn two_pools() -> Vec<vnest_devhost::topology::NodeSpec> {
    ["a", "b"]
        .into_iter()
        .enumerate()
        .map(|(i, pool)| {
            let mut node = vnest_devhost::topology::NodeSpec::new(i as u8 + 1);
            node.labels.push(("vnest.dev/pool".into(), pool.into()));
            node
        })
        .collect()
}

/// Installs vnest, makes VirtualCluster `vc` in [`TENANTS`], waits for it to
/// be Ready and returns it with its kubeconfig written into `dir`.
pub async fn ready_tenant(
    client: &Client,
    admin: &Path,
    vc: VirtualCluster,
    dir: &Path,
) -> (VirtualCluster, PathBuf) {
    install(client, admin).await;
    create_namespace(client, TENANTS).await;
    let vcs: Api<VirtualCluster> = Api::namespaced(client.clone(), TENANTS);
    let name = vc.metadata.name.clone().unwrap();
    vcs.create(&PostParams::default(), &vc).await.unwrap();
    let vc = wait_for_phase(&vcs, &name, Phase::Ready, admin).await;
    let kubeconfig = tenant_kubeconfig(client, &vc, dir).await;
    (vc, kubeconfig)
}

/// Installs vnest with `kubectl apply -k manifests/`, as the docs say, and
/// waits for the supervisor.
pub async fn install(client: &Client, admin: &Path) {
    let manifests = workspace_root().join("manifests");
    let (ok, out, err) = kubectl(admin, &["apply", "-k", &manifests.display().to_string()]);
    assert!(ok, "kubectl apply -k manifests/: {out}{err}");
    wait_until(
        "the supervisor is available",
        Duration::from_secs(120),
        || async {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), "vnest-system");
            let d = deployments.get("vnest-supervisor").await.ok()?;
            (d.status?.available_replicas? >= 1).then_some(())
        },
    )
    .await;
    // The supervisor may be up before the apiserver serves the new kind.
    wait_until(
        "the CRD is established",
        Duration::from_secs(60),
        || async {
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            let crd = crds.get("virtualclusters.vnest.dev").await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;
}

pub fn virtual_cluster(name: &str, pool: &str) -> VirtualCluster {
    serde_json::from_value(json!({
        "apiVersion": "vnest.dev/v1alpha1",
        "kind": "VirtualCluster",
        "metadata": { "name": name, "namespace": TENANTS },
        "spec": {
            "controlPlane": { "expose": { "type": "NodePort" } },
            "nodePool": { "nodeSelector": { "vnest.dev/pool": pool } },
        },
    }))
    .unwrap()
}

pub async fn create_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

pub fn condition(
    vc: &VirtualCluster,
    type_: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    vc.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", vc.status))
}

pub async fn wait_until<F, Fut, T>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            eprintln!("{what} after {:.1}s", started.elapsed().as_secs_f64());
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits for `phase`, printing each change of the Ready condition; on a
/// timeout, prints what the supervisor and the control plane said.
pub async fn wait_for_phase(
    vcs: &Api<VirtualCluster>,
    name: &str,
    phase: Phase,
    admin: &Path,
) -> VirtualCluster {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        if let Some(vc) = vcs.get_opt(name).await.unwrap() {
            let status = vc.status.clone().unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_default();
            let now = format!("{:?} {ready}", status.phase);
            if now != last {
                eprintln!("{name} at {:>5.1}s: {now}", started.elapsed().as_secs_f64());
                last = now;
            }
            if status.phase == Some(phase) && status.observed_generation == vc.metadata.generation {
                return vc;
            }
        }
        if started.elapsed() > READY_TIMEOUT {
            let cp = host_namespace(TENANTS, name, HostNamespaceRole::ControlPlane);
            for args in [
                vec!["get", "vc", "-n", TENANTS, name, "-o", "yaml"],
                vec!["get", "pods,pvc,events", "-n", &cp, "-o", "wide"],
                vec![
                    "logs",
                    "-n",
                    "vnest-system",
                    "deploy/vnest-supervisor",
                    "--tail=60",
                ],
            ] {
                let (_, out, err) = kubectl(admin, &args);
                eprintln!("$ kubectl {}\n{out}{err}", args.join(" "));
            }
            panic!("{name} did not reach {phase:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn tenant_kubeconfig(client: &Client, vc: &VirtualCluster, dir: &Path) -> PathBuf {
    let secret_name = vc
        .status
        .as_ref()
        .unwrap()
        .kubeconfig_secret_name
        .clone()
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), TENANTS);
    let secret = secrets.get(&secret_name).await.unwrap();
    let data = secret.data.unwrap();
    let path = dir.join(format!("{secret_name}.yaml"));
    std::fs::write(&path, &data["kubeconfig"].0).unwrap();
    path
}

/// Applies `text` (JSON or YAML) in a tenant with its kubeconfig, written
/// to `dir/file` first; retried for up to 30 s (a new namespace's default
/// ServiceAccount, which pods need, comes a moment after the namespace).
pub async fn apply_in_tenant(kubeconfig: &Path, dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    let path = path.display().to_string();
    wait_until(
        &format!("{file} applies"),
        Duration::from_secs(30),
        || async {
            let (ok, out, err) = kubectl(kubeconfig, &["apply", "-f", &path]);
            if !ok {
                eprintln!("kubectl apply -f {path}: {out}{err}");
            }
            ok.then_some(())
        },
    )
    .await;
}

/// A client of the cluster `kubeconfig` reaches (a tenant's).
pub async fn tenant_client(kubeconfig: &Path) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    Client::try_from(config).unwrap()
}

/// A host client with the token of the syncer ServiceAccount of control
/// plane namespace `namespace`: the rights and the priority level of a
/// syncer.
pub async fn syncer_identity(client: &Client, admin: &Path, namespace: &str) -> Client {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(6 * 3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let issued: TokenRequest = accounts
        .create_subresource("token", "vnest-syncer", &PostParams::default(), &request)
        .await
        .unwrap();
    let token = issued.status.unwrap().token.unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(admin).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..kube::config::AuthInfo::default()
    };
    Client::try_from(config).unwrap()
}
