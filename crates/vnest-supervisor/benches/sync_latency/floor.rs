//! The floor: the least any syncer must do, as a minimal relay in this
//! process. It watches the tenant's namespace and creates each new object's
//! copy on the host (renamed as vnest names it, with the same concurrency
//! as the syncer); for pods it also strips the tenant's token volume (with
//! tokens: asks the tenant for a token bound to the pod and creates a host
//! Secret holding it, mounted where the token goes), and when the host copy
//! runs it binds the tenant pod to the node and writes `Running` to its
//! status. No policy, no translation of volumes or names beyond that, no
//! caches, no retries of its own but the create's.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    Binding, ConfigMap, ObjectReference, Pod, Secret, SecretVolumeSource, ServiceAccount, Volume,
    VolumeMount,
};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::task::JoinHandle;
use vnest_api::host_copies::host_name;

use super::{BENCH_NS, PARALLEL, RUN_LABEL};

/// The label naming a floor copy's tenant pod.
const TENANT_NAME: &str = "bench-tenant-name";
const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A relay's task; it stops when this is dropped.
pub struct Floor(JoinHandle<()>);

impl Drop for Floor {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Relays the tenant's new ConfigMaps in [`BENCH_NS`] to `host_ns`.
pub fn config_maps(tenant: Client, writer: Client, host_ns: &str) -> Floor {
    let host: Api<ConfigMap> = Api::namespaced(writer, host_ns);
    let down = new_objects::<ConfigMap>(tenant)
        .map(move |cm| {
            let host = host.clone();
            async move {
                let copy = ConfigMap {
                    metadata: copy_meta(&cm),
                    data: cm.data.clone(),
                    ..ConfigMap::default()
                };
                create(&host, &copy).await;
            }
        })
        .buffer_unordered(PARALLEL)
        .for_each(|()| async {});
    Floor(tokio::spawn(down))
}

/// Relays the tenant's new pods in [`BENCH_NS`] to `host_ns`, and their
/// start back.
pub fn pods(tenant: Client, writer: Client, host_ns: &str, tokens: bool) -> Floor {
    let host_pods: Api<Pod> = Api::namespaced(writer.clone(), host_ns);
    let host_secrets: Api<Secret> = Api::namespaced(writer, host_ns);
    let accounts: Api<ServiceAccount> = Api::namespaced(tenant.clone(), BENCH_NS);
    let down = new_objects::<Pod>(tenant)
        .map(move |pod| {
            let (host_pods, host_secrets, accounts) =
                (host_pods.clone(), host_secrets.clone(), accounts.clone());
            async move {
                let mut copy = host_pod(&pod);
                if tokens {
                    let secret = token_secret(&pod, &accounts).await;
                    mount_token(&mut copy, secret.name_any());
                    create(&host_secrets, &secret).await;
                }
                create(&host_pods, &copy).await;
            }
        })
        .buffer_unordered(PARALLEL)
        .for_each(|()| async {});
    Floor(tokio::spawn(down))
}

/// Watches the host copies in `host_ns` and, once one runs, binds its
/// tenant pod to the node and marks it Running.
pub fn pod_starts(tenant: Client, host: Client, host_ns: &str) -> Floor {
    let tenant_pods: Api<Pod> = Api::namespaced(tenant, BENCH_NS);
    let host_pods: Api<Pod> = Api::namespaced(host, host_ns);
    let mut started = HashSet::new();
    let up = watcher(host_pods, watcher::Config::default().labels(TENANT_NAME))
        .applied_objects()
        .filter_map(move |pod| {
            let start = pod.ok().and_then(|pod| {
                let running = pod.status.as_ref()?.phase.as_deref() == Some("Running");
                let node = pod.spec.as_ref()?.node_name.clone()?;
                let tenant_name = pod.labels().get(TENANT_NAME)?.clone();
                (running && started.insert(tenant_name.clone())).then_some((tenant_name, node))
            });
            async move { start }
        })
        .map(move |(name, node)| {
            let tenant_pods = tenant_pods.clone();
            async move { start(&tenant_pods, &name, &node).await }
        })
        .buffer_unordered(PARALLEL)
        .for_each(|()| async {});
    Floor(tokio::spawn(up))
}

/// The tenant's objects in [`BENCH_NS`] as they first appear.
fn new_objects<K>(tenant: Client) -> impl futures::Stream<Item = K> + Send
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::namespaced(tenant, BENCH_NS);
    let mut seen = HashSet::new();
    watcher(api, watcher::Config::default().labels(RUN_LABEL))
        .applied_objects()
        .filter_map(move |object| {
            let fresh = object.ok().filter(|o| seen.insert(o.name_any()));
            async move { fresh }
        })
}

/// The host copy's name and labels (the run's, and its tenant name).
fn copy_meta<K: kube::Resource>(object: &K) -> ObjectMeta {
    let name = object.meta().name.clone().unwrap_or_default();
    let mut labels = object.meta().labels.clone().unwrap_or_default();
    labels.insert(TENANT_NAME.to_owned(), name.clone());
    ObjectMeta {
        name: Some(host_name(BENCH_NS, &name)),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

/// The tenant pod as a host pod: not bound, the host's default account,
/// no token volume of the tenant's.
fn host_pod(pod: &Pod) -> Pod {
    let mut spec = pod.spec.clone().unwrap_or_default();
    spec.node_name = None;
    spec.service_account_name = None;
    spec.service_account = None;
    spec.automount_service_account_token = Some(false);
    let tokens: Vec<String> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| {
            v.projected.as_ref().is_some_and(|p| {
                p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.service_account_token.is_some())
            })
        })
        .map(|v| v.name.clone())
        .collect();
    if let Some(volumes) = spec.volumes.as_mut() {
        volumes.retain(|v| !tokens.contains(&v.name));
    }
    for container in &mut spec.containers {
        if let Some(mounts) = container.volume_mounts.as_mut() {
            mounts.retain(|m| !tokens.contains(&m.name));
        }
    }
    Pod {
        metadata: copy_meta(pod),
        spec: Some(spec),
        status: None,
    }
}

/// A host Secret with a tenant token bound to `pod`.
async fn token_secret(pod: &Pod, accounts: &Api<ServiceAccount>) -> Secret {
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_owned());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            bound_object_ref: Some(BoundObjectReference {
                kind: Some("Pod".to_owned()),
                api_version: Some("v1".to_owned()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let issued: TokenRequest = accounts
        .create_subresource("token", &account, &PostParams::default(), &request)
        .await
        .unwrap();
    let token = issued.status.and_then(|s| s.token).unwrap_or_default();
    let mut metadata = copy_meta(pod);
    metadata.name = metadata.name.map(|n| format!("{n}-token"));
    Secret {
        metadata,
        data: Some(BTreeMap::from([(
            "token".to_owned(),
            ByteString(token.into_bytes()),
        )])),
        ..Secret::default()
    }
}

fn mount_token(pod: &mut Pod, secret: String) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    spec.volumes.get_or_insert_default().push(Volume {
        name: "token".to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    });
    for container in &mut spec.containers {
        container
            .volume_mounts
            .get_or_insert_default()
            .push(VolumeMount {
                name: "token".to_owned(),
                mount_path: TOKEN_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
    }
}

/// Binds tenant pod `name` to `node` and marks it Running.
async fn start(pods: &Api<Pod>, name: &str, node: &str) {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(BENCH_NS.to_owned()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            kind: Some("Node".to_owned()),
            api_version: Some("v1".to_owned()),
            name: Some(node.to_owned()),
            ..ObjectReference::default()
        },
    };
    match pods
        .create_subresource::<_, serde_json::Value>(
            "binding",
            name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("binding {name}: {e}"),
    }
    let status = json!({ "status": { "phase": "Running" } });
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// Creates `object`, again after a throttling or server error or a lost
/// connection (as any client would); an existing one counts as created.
pub async fn create<K>(api: &Api<K>, object: &K)
where
    K: Clone + std::fmt::Debug + Serialize + DeserializeOwned,
{
    let mut attempt = 0u64;
    loop {
        match api.create(&PostParams::default(), object).await {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 409 => return,
            Err(kube::Error::Api(status)) if status.code != 429 && status.code < 500 => {
                panic!("create refused: {status:?}")
            }
            Err(e) if attempt >= 30 => panic!("create failed {attempt} times: {e}"),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
        }
    }
}
