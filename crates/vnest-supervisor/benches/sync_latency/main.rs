//! The syncer against the floor and against the host itself, side by side
//! in one run on the development host (root; run with `tools/bench-sync.sh`).
//!
//! Three routes take the same N objects (ConfigMaps, pods without a token,
//! pods with the tenant's token; pods go to simulated pool nodes so that N
//! fit this machine):
//! - **floor** ([`floor`]): created in a tenant whose syncer is stopped and
//!   relayed to the host by a minimal watch-then-create relay: the least a
//!   syncer must do;
//! - **direct**: created on the host, in a workloads namespace (its quota,
//!   LimitRange and Pod Security labels), by a syncer's identity (not
//!   exempt from API priority and fairness);
//! - **vnest**: created in a tenant and synced by its syncer.
//!
//! Each object is timed from just before its create request is sent to its
//! copy appearing in a watch of the host namespace, and pods also to
//! `Running` where their owner reads it (the tenant; the host for direct).
//! Loads: a closed-loop burst (16 in flight) and open-loop fixed rates.
//! Every measurement is repeated for `VNEST_BENCH_ROUNDS` rounds, the
//! routes' order rotating each round, with a quiet period after each.
//! CPU seconds of the syncer and of the tenant's and host's apiservers are
//! read from /proc around each measurement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod floor;
mod measure;
mod processes;
mod requests;
mod syncer_metrics;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use vnest_api::VirtualCluster;
use vnest_api::host_names::{HostNamespaceRole, host_namespace};
use vnest_devhost::topology::NodeSpec;
use vnest_tests::{HostSlot, TestHost};

use measure::{Bench, Load, Route, Sample, Workload, measure, quantile};
use processes::Watched;

#[path = "../../tests/common/mod.rs"]
mod common;
use common::{
    TENANTS, create_namespace, install, syncer_identity, tenant_client, tenant_kubeconfig,
    wait_until,
};

/// The tenant namespace objects are created in.
const BENCH_NS: &str = "bench";
/// Requests in flight in a burst, and the relay's concurrency.
const PARALLEL: usize = 16;
/// The label every object of one measurement carries.
const RUN_LABEL: &str = "bench-run";

fn main() {
    let setting = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let objects = setting("VNEST_BENCH_OBJECTS", 1000);
    let rounds = setting("VNEST_BENCH_ROUNDS", 3);
    let rates: Vec<u32> = std::env::var("VNEST_BENCH_RATES")
        .unwrap_or_else(|_| "50,200".to_owned())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(objects, rounds, rates));
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(objects: usize, rounds: usize, rates: Vec<u32>) {
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
    let dir = tempfile::tempdir().unwrap();
    let bench = set_up(&client, &admin, dir.path(), objects).await;

    // VNEST_BENCH_BURST=no leaves the bursts out (open-loop rates only).
    let bursts = std::env::var("VNEST_BENCH_BURST").map_or(true, |v| v != "no");
    let mut plan: Vec<(Workload, Load)> = Vec::new();
    if bursts {
        plan.extend([
            (Workload::ConfigMaps, Load::Burst),
            (Workload::Pods, Load::Burst),
            (Workload::PodsWithTokens, Load::Burst),
        ]);
    }
    for rate in &rates {
        plan.push((Workload::ConfigMaps, Load::PerSecond(*rate)));
        plan.push((Workload::Pods, Load::PerSecond(*rate)));
    }
    // VNEST_BENCH_ONLY=pod,tpod measures those workloads alone (cm, pod,
    // tpod), for a quicker look at one path.
    if let Ok(only) = std::env::var("VNEST_BENCH_ONLY") {
        let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
        plan.retain(|(workload, _)| wanted.contains(&workload.short()));
    }
    let idle_rss = bench.vnest_processes.syncer_rss_kib();
    let mut samples: BTreeMap<(Workload, Load, Route), Vec<Sample>> = BTreeMap::new();
    let routes = [Route::Floor, Route::Direct, Route::Vnest];
    for round in 0..rounds {
        for (workload, load) in &plan {
            for i in 0..routes.len() {
                let route = routes[(i + round) % routes.len()];
                let sample = measure(&bench, route, *workload, *load, round).await;
                samples
                    .entry((*workload, *load, route))
                    .or_default()
                    .push(sample);
            }
        }
    }
    report(objects, rounds, idle_rss, &samples);
    host.stop().await;
}

/// Two tenants on the simulated pool, `bench` synced by its syncer and
/// `floor` with its syncer stopped (the supervisor too, once both are
/// Ready, so it does not start it again).
async fn set_up(client: &Client, admin: &Path, dir: &Path, objects: usize) -> Bench {
    install(client, admin).await;
    create_namespace(client, TENANTS).await;
    let vcs: Api<VirtualCluster> = Api::namespaced(client.clone(), TENANTS);
    let room = format!("{}", objects * 2 + 50);
    for name in ["bench", "floor"] {
        let vc: VirtualCluster = serde_json::from_value(json!({
            "apiVersion": "vnest.dev/v1alpha1", "kind": "VirtualCluster",
            "metadata": { "name": name, "namespace": TENANTS },
            "spec": {
                "controlPlane": { "expose": { "type": "NodePort" } },
                "nodePool": { "nodeSelector": { "vnest.dev/pool": "sim" } },
                "isolation": { "resourceQuota": {
                    "pods": room, "configmaps": room, "secrets": room,
                } },
            },
        }))
        .unwrap();
        vcs.create(&PostParams::default(), &vc).await.unwrap();
    }
    let started = Instant::now();
    let mut ready = Vec::new();
    for name in ["bench", "floor"] {
        let vc = wait_until(
            &format!("VirtualCluster {name} is Ready"),
            Duration::from_secs(300),
            || async {
                let vc = vcs.get(name).await.ok()?;
                (vc.status.as_ref()?.phase? == vnest_api::Phase::Ready).then_some(vc)
            },
        )
        .await;
        ready.push(vc);
    }
    eprintln!("tenants Ready in {:.1}s", started.elapsed().as_secs_f64());

    scale(client, "vnest-system", "vnest-supervisor", 0).await;
    let control_plane = |name| host_namespace(TENANTS, name, HostNamespaceRole::ControlPlane);
    let workloads = |name| host_namespace(TENANTS, name, HostNamespaceRole::Workloads);
    scale(client, &control_plane("floor"), "syncer", 0).await;

    let mut tenants = Vec::new();
    for vc in &ready {
        let kubeconfig = tenant_kubeconfig(client, vc, dir).await;
        let tenant = tenant_client(&kubeconfig).await;
        create_namespace(&tenant, BENCH_NS).await;
        let accounts: Api<ServiceAccount> = Api::namespaced(tenant.clone(), BENCH_NS);
        wait_until(
            "the bench namespace's default ServiceAccount",
            Duration::from_secs(60),
            || async { accounts.get_opt("default").await.ok().flatten() },
        )
        .await;
        tenants.push(tenant);
    }
    let writer = syncer_identity(client, admin, &control_plane("floor")).await;
    // Let the tenants' controllers settle before the first measurement.
    tokio::time::sleep(Duration::from_secs(10)).await;
    Bench {
        objects,
        host: client.clone(),
        writer,
        vnest: tenants[0].clone(),
        vnest_workloads: workloads("bench"),
        vnest_processes: Watched::find(client, &control_plane("bench")).await,
        vnest_control_plane: control_plane("bench"),
        floor: tenants[1].clone(),
        floor_workloads: workloads("floor"),
        floor_processes: Watched::find(client, &control_plane("floor")).await,
    }
}

/// Scales Deployment `namespace/name` to `replicas` and waits for it.
async fn scale(client: &Client, namespace: &str, name: &str, replicas: i32) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let patch = json!({ "spec": { "replicas": replicas } });
    deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_until(
        &format!("{namespace}/{name} has {replicas} replicas"),
        Duration::from_secs(120),
        || async {
            let status = deployments.get(name).await.ok()?.status?;
            (status.replicas.unwrap_or(0) == replicas).then_some(())
        },
    )
    .await;
    // Its old pods' processes may take a moment to exit.
    tokio::time::sleep(Duration::from_secs(5)).await;
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Latencies of every round together.
fn pooled(samples: &[Sample], pick: fn(&Sample) -> &Vec<Duration>) -> Vec<Duration> {
    let mut all: Vec<Duration> = samples.iter().flat_map(|s| pick(s).clone()).collect();
    all.sort();
    all
}

fn p50_p99(sorted: &[Duration]) -> String {
    if sorted.is_empty() {
        return "—".to_owned();
    }
    format!(
        "{:.0} / {:.0}",
        ms(quantile(sorted, 0.5)),
        ms(quantile(sorted, 0.99))
    )
}

fn report(
    objects: usize,
    rounds: usize,
    idle_rss: u64,
    samples: &BTreeMap<(Workload, Load, Route), Vec<Sample>>,
) {
    println!(
        "N = {objects} objects per measurement, {rounds} rounds (latencies pooled, throughput and CPU the median round), {} cores",
        processes::cores()
    );
    println!();
    println!(
        "| workload | load | route | to host copy p50 / p99 (ms) | to Running p50 / p99 (ms) | objects/s | CPU s per 1000: syncer / tenant apiserver / host apiserver / machine |"
    );
    println!("|---|---|---|---|---|---|---|");
    let per_thousand = |v: f64| v * 1000.0 / objects as f64;
    for ((workload, load, route), rounds) in samples {
        let cpu = |pick: fn(&Sample) -> f64| median(rounds.iter().map(pick).collect());
        let syncer = if *route == Route::Vnest {
            format!("{:.1}", per_thousand(cpu(|s| s.cpu.syncer)))
        } else {
            "—".to_owned()
        };
        let tenant = if *route == Route::Direct {
            "—".to_owned()
        } else {
            format!("{:.1}", per_thousand(cpu(|s| s.cpu.tenant_apiserver)))
        };
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {syncer} / {tenant} / {:.1} / {:.1} |",
            workload.name(),
            load.name(),
            route.name(),
            p50_p99(&pooled(rounds, |s| &s.to_host)),
            p50_p99(&pooled(rounds, |s| &s.to_running)),
            median(rounds.iter().map(|s| s.per_second).collect()),
            per_thousand(cpu(|s| s.cpu.host_apiserver)),
            per_thousand(cpu(|s| s.cpu.machine)),
        );
    }
    println!();
    println!(
        "| workload | load | throughput vnest / floor | throughput vnest / direct | p99 to host vnest / direct | p99 to Running vnest / direct |"
    );
    println!("|---|---|---|---|---|---|");
    let keys: Vec<(Workload, Load)> = {
        let mut keys: Vec<_> = samples.keys().map(|(w, l, _)| (*w, *l)).collect();
        keys.dedup();
        keys
    };
    for (workload, load) in keys {
        let get = |route| samples.get(&(workload, load, route));
        let (Some(floor), Some(direct), Some(vnest)) =
            (get(Route::Floor), get(Route::Direct), get(Route::Vnest))
        else {
            continue;
        };
        let rate = |s: &Vec<Sample>| median(s.iter().map(|s| s.per_second).collect());
        let p99 = |s: &Vec<Sample>, pick: fn(&Sample) -> &Vec<Duration>| {
            quantile(&pooled(s, pick), 0.99).as_secs_f64()
        };
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}", a / b)
            } else {
                "—".to_owned()
            }
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            workload.name(),
            load.name(),
            ratio(rate(vnest), rate(floor)),
            ratio(rate(vnest), rate(direct)),
            ratio(p99(vnest, |s| &s.to_host), p99(direct, |s| &s.to_host)),
            ratio(
                p99(vnest, |s| &s.to_running),
                p99(direct, |s| &s.to_running)
            ),
        );
    }
    let largest = |rss: fn(&Sample) -> u64| {
        samples
            .iter()
            .filter(|((w, _, r), _)| *w != Workload::ConfigMaps && *r == Route::Vnest)
            .flat_map(|(_, s)| s.iter().map(rss))
            .max()
            .unwrap_or(0)
    };
    println!();
    println!(
        "syncer RSS: idle {} MiB; with {objects} pods synced (largest) {} MiB as the last arrived, {} MiB after 20 s quiet",
        idle_rss / 1024,
        largest(|s| s.syncer_rss_kib) / 1024,
        largest(|s| s.settled_rss_kib) / 1024,
    );
}
