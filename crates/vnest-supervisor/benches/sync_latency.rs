//! The syncer's latency, throughput and memory, side by side with the host
//! itself, in one run on the development host (root; run with
//! `tools/bench-sync.sh`).
//!
//! For N ConfigMaps and then N pods (on simulated pool nodes, so that N
//! pods fit this machine): each is created in the tenant, 16 at a time, and
//! the time from its create call returning to its host copy appearing in a
//! watch of the workloads namespace is its latency. The baseline creates
//! the same objects directly in a host namespace and times create-return to
//! appearing in a watch there. Throughput is N over the time from the first
//! create to the last object seen. The syncer's resident memory is read
//! from /proc when idle, after the ConfigMaps and after the pods.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use vnest_api::VirtualCluster;
use vnest_api::host_copies::host_name;
use vnest_api::host_names::{HostNamespaceRole, host_namespace};
use vnest_devhost::topology::NodeSpec;
use vnest_tests::{HostSlot, TestHost};

#[path = "../tests/common/mod.rs"]
mod common;
use common::{TENANTS, create_namespace, install, tenant_kubeconfig};

const BENCH_NS: &str = "bench";
const PARALLEL: usize = 16;

fn main() {
    let objects: usize = std::env::var("VNEST_BENCH_OBJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(objects));
}

struct Measured {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

async fn run(objects: usize) {
    let slot = HostSlot::acquire().await;
    let sim = vec![("vnest.dev/pool".to_owned(), "sim".to_owned())];
    let simulated = objects.div_ceil(100).max(1);
    let host = TestHost::start_configured(slot, vec![NodeSpec::new(1)], |options| {
        options.simulated_nodes = vec![sim.clone(); simulated];
        options.vnest_binaries = vnest_tests::vnest_image_binaries();
    })
    .await;
    let client = host.client();
    let admin = host.kubeconfig();
    install(&client, &admin).await;
    for ns in [TENANTS, "bench-direct"] {
        create_namespace(&client, ns).await;
    }
    let vcs: Api<VirtualCluster> = Api::namespaced(client.clone(), TENANTS);
    let vc: VirtualCluster = serde_json::from_value(json!({
        "apiVersion": "vnest.dev/v1alpha1", "kind": "VirtualCluster",
        "metadata": { "name": "bench", "namespace": TENANTS },
        "spec": {
            "controlPlane": { "expose": { "type": "NodePort" } },
            "nodePool": { "nodeSelector": { "vnest.dev/pool": "sim" } },
            "isolation": { "resourceQuota": { "pods": format!("{}", objects * 2 + 50) } },
        },
    }))
    .unwrap();
    vcs.create(&PostParams::default(), &vc).await.unwrap();
    let started = Instant::now();
    let vc = loop {
        let vc = vcs.get("bench").await.unwrap();
        if vc.status.as_ref().and_then(|s| s.phase) == Some(vnest_api::Phase::Ready) {
            break vc;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the tenant never became Ready"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("tenant Ready in {:.1}s", started.elapsed().as_secs_f64());
    let tenant = tenant_client(&client, &vc).await;
    create_namespace(&tenant, BENCH_NS).await;
    let wl = host_namespace(TENANTS, "bench", HostNamespaceRole::Workloads);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = syncer_rss_kib();

    let cm_synced = measure::<ConfigMap>(&tenant, &client, &wl, objects, config_map, true).await;
    let cm_direct =
        measure::<ConfigMap>(&client, &client, "bench-direct", objects, config_map, false).await;
    let after_config_maps = syncer_rss_kib();
    let pod_synced = measure::<Pod>(&tenant, &client, &wl, objects, pod, true).await;
    let pod_direct = measure::<Pod>(&client, &client, "bench-direct", objects, pod, false).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after_pods = syncer_rss_kib();

    println!("objects: {objects}, {PARALLEL} creates in flight, 2 cores");
    println!(
        "| what | through the syncer p50 / p99 | directly on the host p50 / p99 | p50 ratio | throughput synced / direct (objects/s) |"
    );
    println!("|---|---|---|---|---|");
    for (what, synced, direct) in [
        ("ConfigMaps", &cm_synced, &cm_direct),
        ("Pods", &pod_synced, &pod_direct),
    ] {
        println!(
            "| {what} | {:.0} ms / {:.0} ms | {:.0} ms / {:.0} ms | {:.1} | {:.0} / {:.0} |",
            ms(synced.p50),
            ms(synced.p99),
            ms(direct.p50),
            ms(direct.p99),
            synced.p50.as_secs_f64() / direct.p50.as_secs_f64().max(1e-9),
            synced.per_second,
            direct.per_second,
        );
    }
    println!(
        "syncer RSS: idle {} MiB, after {objects} ConfigMaps {} MiB, with {objects} pods synced {} MiB",
        idle / 1024,
        after_config_maps / 1024,
        after_pods / 1024
    );
    host.stop().await;
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A client of the tenant, through the kubeconfig Secret the supervisor wrote.
async fn tenant_client(host: &Client, vc: &VirtualCluster) -> Client {
    let dir = tempfile::tempdir().unwrap();
    let path = tenant_kubeconfig(host, vc, dir.path()).await;
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name }, "data": { "key": "value" } }))
        .unwrap()
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": "bench" } },
        "spec": {
            "automountServiceAccountToken": false,
            "dnsPolicy": "Default",
            "nodeSelector": { "vnest.dev/pool": "sim" },
            "tolerations": [{ "key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule" }],
            "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "app", "image": "vnest.local/busybox:1", "command": ["sleep", "3600"],
                "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } },
            }],
        },
    }))
    .unwrap()
}

/// Creates `n` objects through `create_client` (in namespace `bench` of the
/// tenant, or `watch_ns` directly) and times each until a watch of
/// `watch_ns` on the host sees it (under its host name when `synced`).
async fn measure<K>(
    create_client: &Client,
    host: &Client,
    watch_ns: &str,
    n: usize,
    make: fn(&str) -> K,
    synced: bool,
) -> Measured
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let prefix = format!(
        "{}-{}",
        K::kind(&()).to_lowercase(),
        if synced { "s" } else { "d" }
    );
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watched: Api<K> = Api::namespaced(host.clone(), watch_ns);
    let recorder = seen.clone();
    let watch = tokio::spawn(async move {
        let stream = watcher(watched, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Ok(Some(object)) = stream.try_next().await {
            if let Some(name) = object.meta().name.clone() {
                recorder
                    .lock()
                    .unwrap()
                    .entry(name)
                    .or_insert_with(Instant::now);
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let create_ns = if synced { BENCH_NS } else { watch_ns };
    let api: Api<K> = Api::namespaced(create_client.clone(), create_ns);
    let first = Instant::now();
    let created: Vec<(String, Instant)> = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let name = format!("{prefix}-{i}");
            async move {
                api.create(&PostParams::default(), &make(&name))
                    .await
                    .unwrap();
                let host_name = if synced {
                    host_name(BENCH_NS, &name)
                } else {
                    name
                };
                (host_name, Instant::now())
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let count = {
            let seen = seen.lock().unwrap();
            created
                .iter()
                .filter(|(name, _)| seen.contains_key(name))
                .count()
        };
        if count == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {count} of {n} {prefix} objects appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watch.abort();
    let seen = seen.lock().unwrap();
    let mut latencies: Vec<Duration> = created
        .iter()
        .map(|(name, at)| seen[name].saturating_duration_since(*at))
        .collect();
    latencies.sort();
    let last = created
        .iter()
        .map(|(name, _)| seen[name])
        .max()
        .unwrap_or(first);
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let measured = Measured {
        p50: quantile(0.50),
        p99: quantile(0.99),
        per_second: n as f64 / last.duration_since(first).as_secs_f64().max(1e-9),
    };
    eprintln!(
        "{prefix}: p50 {:.0} ms, p99 {:.0} ms, {:.0}/s",
        ms(measured.p50),
        ms(measured.p99),
        measured.per_second
    );
    measured
}

/// The resident memory of the syncer process on this machine, in KiB.
fn syncer_rss_kib() -> u64 {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let first = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if first.ends_with(b"vnest-syncer") {
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            if let Some(line) = status.lines().find(|l| l.starts_with("VmRSS:")) {
                return line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
            }
        }
    }
    0
}
