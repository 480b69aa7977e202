//! One measurement: N objects of one kind sent along one route at one load,
//! each timed from just before its create request is sent to its host
//! copy appearing in a watch of the host namespace, and (pods) to
//! `Running` where its owner looks: in the tenant for the floor and vnest,
//! on the host for direct. Then everything it made is deleted and the
//! machine left quiet before the next.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::task::JoinHandle;
use vnest_api::host_copies::host_name;

use super::floor::{self, Floor};
use super::processes::{Cpu, Watched};
use super::{BENCH_NS, PARALLEL, RUN_LABEL};

/// How long the machine is left alone between measurements.
const QUIET: Duration = Duration::from_secs(5);
/// How long a measurement may take before the bench gives up.
const DEADLINE: Duration = Duration::from_secs(900);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// The minimal relay ([`floor`]).
    Floor,
    /// Created on the host by the same identity, no tenant at all.
    Direct,
    /// Created in the tenant, synced by vnest's syncer.
    Vnest,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Floor => "floor",
            Route::Direct => "direct",
            Route::Vnest => "vnest",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    ConfigMaps,
    /// Pods without a ServiceAccount token.
    Pods,
    /// Pods with the tenant's token mounted.
    PodsWithTokens,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::ConfigMaps => "ConfigMaps",
            Workload::Pods => "pods, no token",
            Workload::PodsWithTokens => "pods with a token",
        }
    }
    pub fn short(self) -> &'static str {
        match self {
            Workload::ConfigMaps => "cm",
            Workload::Pods => "pod",
            Workload::PodsWithTokens => "tpod",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Load {
    /// Closed loop: all N at once, [`PARALLEL`] requests in flight.
    Burst,
    /// Open loop: one request every 1/rate s, however many are in flight.
    PerSecond(u32),
}

impl Load {
    pub fn name(self) -> String {
        match self {
            Load::Burst => format!("burst, {PARALLEL} in flight"),
            Load::PerSecond(rate) => format!("{rate}/s"),
        }
    }
}

/// What a bench run has to measure with.
pub struct Bench {
    pub objects: usize,
    pub host: Client,
    /// The host identity direct and floor writes use: a syncer's.
    pub writer: Client,
    /// The tenant vnest syncs, its workloads namespace and processes.
    pub vnest: Client,
    pub vnest_workloads: String,
    pub vnest_processes: Watched,
    /// Its syncer's namespace (the control plane's).
    pub vnest_control_plane: String,
    /// The tenant whose syncer is stopped, for the floor's relay; its
    /// workloads namespace takes the floor's and direct's objects.
    pub floor: Client,
    pub floor_workloads: String,
    pub floor_processes: Watched,
}

/// One measurement's result.
pub struct Sample {
    pub to_host: Vec<Duration>,
    pub to_running: Vec<Duration>,
    /// Objects per second, from the first request to the last object on
    /// the host (and running, for pods).
    pub per_second: f64,
    pub cpu: Cpu,
    /// The syncer's RSS as the last object arrived, and after
    /// [`SETTLE`] of quiet with every object still synced (pods through
    /// vnest only; 0 otherwise).
    pub syncer_rss_kib: u64,
    pub settled_rss_kib: u64,
    /// Requests per object each apiserver served meanwhile
    /// ([`super::requests`]); none for the tenant when there is none.
    pub host_requests: Vec<(String, super::requests::PerObject)>,
    pub tenant_requests: Vec<(String, super::requests::PerObject)>,
    /// The syncer's pod syncs meanwhile (vnest's pods only).
    pub syncs: Option<super::syncer_metrics::Syncs>,
}

/// How long the syncer is left quiet, its pods synced, before its memory
/// is read again: the burst's connections and buffers idle, what is left
/// is what it keeps.
const SETTLE: Duration = Duration::from_secs(20);

pub async fn measure(
    bench: &Bench,
    route: Route,
    workload: Workload,
    load: Load,
    round: usize,
) -> Sample {
    let run = format!("{}-{}-{round}", workload.short(), route.name());
    let sample = match workload {
        Workload::ConfigMaps => measure_kind::<ConfigMap>(bench, route, workload, load, &run).await,
        Workload::Pods | Workload::PodsWithTokens => {
            measure_kind::<Pod>(bench, route, workload, load, &run).await
        }
    };
    let seconds = sample.to_host.len() as f64 / sample.per_second.max(1e-9);
    eprintln!(
        "{run} ({}): to host p50 {:.0} ms p99 {:.0} ms, to Running p50 {:.0} ms p99 {:.0} ms, {:.0}/s, cpu {:?}, machine busy {:.0}%, syncer RSS {} / settled {} MiB",
        load.name(),
        super::ms(quantile(&sample.to_host, 0.5)),
        super::ms(quantile(&sample.to_host, 0.99)),
        super::ms(quantile(&sample.to_running, 0.5)),
        super::ms(quantile(&sample.to_running, 0.99)),
        sample.per_second,
        sample.cpu,
        100.0 * sample.cpu.machine / (seconds * super::processes::cores()),
        sample.syncer_rss_kib / 1024,
        sample.settled_rss_kib / 1024,
    );
    if let Some(syncs) = &sample.syncs {
        eprintln!("{run} syncer: {}", syncs.line(sample.to_host.len()));
    }
    eprintln!(
        "{run} requests per object: host: {}; tenant: {}",
        super::requests::line(&sample.host_requests),
        super::requests::line(&sample.tenant_requests),
    );
    tokio::time::sleep(QUIET).await;
    sample
}

pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// A kind the bench creates.
trait Kind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    fn make(name: &str, run: &str, workload: Workload) -> Self;
    fn running(&self) -> bool {
        false
    }
    fn delete_params() -> DeleteParams {
        DeleteParams::default()
    }
}

impl Kind for ConfigMap {
    fn make(name: &str, run: &str, _: Workload) -> Self {
        serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { RUN_LABEL: run } },
            "data": { "key": "value" },
        }))
        .unwrap()
    }
}

impl Kind for Pod {
    fn make(name: &str, run: &str, workload: Workload) -> Self {
        serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { RUN_LABEL: run } },
            "spec": {
                "automountServiceAccountToken": workload == Workload::PodsWithTokens,
                "dnsPolicy": "Default",
                "nodeSelector": { "vnest.dev/pool": "sim" },
                "tolerations": [{ "key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule" }],
                "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
                "containers": [{
                    "name": "app", "image": "vnest.local/busybox:1", "command": ["sleep", "3600"],
                    "resources": { "requests": { "cpu": "1m", "memory": "8Mi" }, "limits": { "memory": "16Mi" } },
                    "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } },
                }],
            },
        }))
        .unwrap()
    }
    fn running(&self) -> bool {
        self.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    }
    fn delete_params() -> DeleteParams {
        DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        }
    }
}

/// When each object was first seen, and first seen running, by name.
#[derive(Default)]
struct Seen {
    at: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
}

/// Records into `seen` what a watch of `api` shows (of objects of `run`
/// when `by_run`: vnest's host copies do not keep the tenant's labels).
fn record<K: Kind>(api: Api<K>, run: &str, by_run: bool, seen: Arc<Mutex<Seen>>) -> JoinHandle<()> {
    let config = if by_run {
        watcher::Config::default().labels(&format!("{RUN_LABEL}={run}"))
    } else {
        watcher::Config::default()
    };
    tokio::spawn(async move {
        let stream = watcher(api, config).applied_objects();
        futures::pin_mut!(stream);
        while let Ok(Some(object)) = stream.try_next().await {
            let now = Instant::now();
            let name = object.name_any();
            let mut seen = seen.lock().unwrap();
            if object.running() {
                seen.running.entry(name.clone()).or_insert(now);
            }
            seen.at.entry(name).or_insert(now);
        }
    })
}

async fn measure_kind<K: Kind>(
    bench: &Bench,
    route: Route,
    workload: Workload,
    load: Load,
    run: &str,
) -> Sample {
    let is_pod = K::kind(&()) == "Pod";
    let (tenant, host_ns, processes) = match route {
        Route::Vnest => (
            Some(&bench.vnest),
            &bench.vnest_workloads,
            &bench.vnest_processes,
        ),
        Route::Floor => (
            Some(&bench.floor),
            &bench.floor_workloads,
            &bench.floor_processes,
        ),
        Route::Direct => (None, &bench.floor_workloads, &bench.floor_processes),
    };
    let names: Vec<String> = (0..bench.objects).map(|i| format!("{run}-{i}")).collect();
    let on_host = |name: &str| match route {
        Route::Direct => name.to_owned(),
        _ => host_name(BENCH_NS, name),
    };

    let host_seen: Arc<Mutex<Seen>> = Arc::default();
    let tenant_seen: Arc<Mutex<Seen>> = Arc::default();
    let mut watches = vec![record::<K>(
        Api::namespaced(bench.host.clone(), host_ns),
        run,
        route != Route::Vnest,
        host_seen.clone(),
    )];
    if let (Some(tenant), true) = (tenant, is_pod) {
        watches.push(record::<K>(
            Api::namespaced(tenant.clone(), BENCH_NS),
            run,
            true,
            tenant_seen.clone(),
        ));
    }
    let relay: Vec<Floor> = match (route, workload) {
        (Route::Floor, Workload::ConfigMaps) => vec![floor::config_maps(
            bench.floor.clone(),
            bench.writer.clone(),
            host_ns,
        )],
        (Route::Floor, _) => vec![
            floor::pods(
                bench.floor.clone(),
                bench.writer.clone(),
                host_ns,
                workload == Workload::PodsWithTokens,
            ),
            floor::pod_starts(bench.floor.clone(), bench.writer.clone(), host_ns),
        ],
        _ => Vec::new(),
    };
    // The watches' first lists.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let host_requests_before = super::requests::read(&bench.host).await;
    let tenant_requests_before = match tenant {
        Some(tenant) => super::requests::read(tenant).await,
        None => Default::default(),
    };
    let syncs_of = || async {
        match (route, is_pod) {
            (Route::Vnest, true) => {
                super::syncer_metrics::pod_syncs(&bench.host, &bench.vnest_control_plane).await
            }
            _ => None,
        }
    };
    let syncs_before = syncs_of().await;
    let cpu_before = processes.cpu();
    let commands_before = super::processes::cpu_by_command();
    let api: Api<K> = match tenant {
        Some(tenant) => Api::namespaced(tenant.clone(), BENCH_NS),
        None => Api::namespaced(bench.writer.clone(), host_ns),
    };
    let objects: Vec<(String, K)> = names
        .iter()
        .map(|n| (n.clone(), K::make(n, run, workload)))
        .collect();
    let first = Instant::now();
    let sent = send(api, objects, load).await;

    let done = |name: &str| -> Option<(Instant, Option<Instant>)> {
        let at = *host_seen.lock().unwrap().at.get(&on_host(name))?;
        if !is_pod {
            return Some((at, None));
        }
        let running = match route {
            Route::Direct => host_seen.lock().unwrap().running.get(name).copied(),
            _ => tenant_seen.lock().unwrap().running.get(name).copied(),
        }?;
        Some((at, Some(running)))
    };
    let deadline = Instant::now() + DEADLINE;
    let finished: Vec<(Instant, Option<Instant>)> = loop {
        let finished: Vec<_> = names.iter().filter_map(|n| done(n)).collect();
        if finished.len() == names.len() {
            break finished;
        }
        assert!(
            Instant::now() < deadline,
            "{run}: only {} of {} done",
            finished.len(),
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cpu = processes.cpu().since(cpu_before);
    eprintln!(
        "{run} CPU by command: {}",
        super::processes::busiest(&commands_before, &super::processes::cpu_by_command())
    );
    let syncer_rss_kib = bench.vnest_processes.syncer_rss_kib();
    let host_requests = super::requests::per_object(
        &host_requests_before,
        &super::requests::read(&bench.host).await,
        names.len(),
    );
    let syncs = match (syncs_before, syncs_of().await) {
        (Some(before), Some(after)) => Some(after.since(before)),
        _ => None,
    };
    let tenant_requests = match tenant {
        Some(tenant) => super::requests::per_object(
            &tenant_requests_before,
            &super::requests::read(tenant).await,
            names.len(),
        ),
        None => Vec::new(),
    };
    let last = finished
        .iter()
        .map(|(at, running)| running.unwrap_or(*at).max(*at))
        .max()
        .unwrap_or(first);
    let mut to_host = Vec::new();
    let mut to_running = Vec::new();
    for ((_, sent_at), (at, running)) in sent.iter().zip(&finished) {
        to_host.push(at.saturating_duration_since(*sent_at));
        if let Some(running) = running {
            to_running.push(running.saturating_duration_since(*sent_at));
        }
    }
    to_host.sort();
    to_running.sort();
    for watch in watches {
        watch.abort();
    }
    drop(relay);
    let settled_rss_kib = if is_pod && route == Route::Vnest {
        tokio::time::sleep(SETTLE).await;
        bench.vnest_processes.syncer_rss_kib()
    } else {
        0
    };
    let host_names: HashSet<String> = names.iter().map(|n| on_host(n)).collect();
    clean_up::<K>(bench, route, tenant, host_ns, run, &host_names).await;
    Sample {
        to_host,
        to_running,
        per_second: names.len() as f64 / last.duration_since(first).as_secs_f64().max(1e-9),
        cpu,
        syncer_rss_kib,
        settled_rss_kib,
        host_requests,
        tenant_requests,
        syncs,
    }
}

/// Sends every object's create at `load`; returns when each was sent, in
/// the order of `objects`.
async fn send<K: Kind>(
    api: Api<K>,
    objects: Vec<(String, K)>,
    load: Load,
) -> Vec<(String, Instant)> {
    let create = |name: String, object: K| {
        let api = api.clone();
        async move {
            let at = Instant::now();
            floor::create(&api, &object).await;
            (name, at)
        }
    };
    let mut sent: Vec<(String, Instant)> = match load {
        Load::Burst => {
            futures::stream::iter(objects)
                .map(|(name, object)| create(name, object))
                .buffer_unordered(PARALLEL)
                .collect()
                .await
        }
        Load::PerSecond(rate) => {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut tasks = Vec::new();
            for (name, object) in objects {
                tick.tick().await;
                tasks.push(tokio::spawn(create(name, object)));
            }
            let mut sent = Vec::new();
            for task in tasks {
                sent.push(task.await.unwrap());
            }
            sent
        }
    };
    // Back into the order of the names (`run-0`, `run-1`, ...).
    sent.sort_by_key(|(name, _)| {
        name.rsplit('-')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or(0)
    });
    sent
}

/// Deletes what the measurement made, in the tenant and on the host, and
/// waits until the host holds none of it (`host_names`).
async fn clean_up<K: Kind>(
    bench: &Bench,
    route: Route,
    tenant: Option<&Client>,
    host_ns: &str,
    run: &str,
    host_names: &HashSet<String>,
) {
    let by_run = ListParams::default().labels(&format!("{RUN_LABEL}={run}"));
    if let Some(tenant) = tenant {
        let api: Api<K> = Api::namespaced(tenant.clone(), BENCH_NS);
        api.delete_collection(&K::delete_params(), &by_run)
            .await
            .unwrap();
    }
    let host: Api<K> = Api::namespaced(bench.host.clone(), host_ns);
    if route != Route::Vnest {
        host.delete_collection(&K::delete_params(), &by_run)
            .await
            .unwrap();
        let secrets: Api<Secret> = Api::namespaced(bench.host.clone(), host_ns);
        secrets
            .delete_collection(&DeleteParams::default(), &by_run)
            .await
            .unwrap();
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = host
            .list_metadata(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|o| host_names.contains(&o.name_any()))
            .count();
        let tenant_left = match tenant {
            Some(tenant) => Api::<K>::namespaced(tenant.clone(), BENCH_NS)
                .list_metadata(&by_run)
                .await
                .unwrap()
                .items
                .len(),
            None => 0,
        };
        if left == 0 && tenant_left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{run}: {left} host and {tenant_left} tenant objects not deleted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
