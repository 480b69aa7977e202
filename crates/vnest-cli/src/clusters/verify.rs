//! `vnest verify NAME`: an isolation self-test of one virtual cluster on
//! any host. It reads from the host that every layer is in place (Pod
//! Security, quota, LimitRange, NetworkPolicies, no host token, the
//! RuntimeClass, and what the supervisor reports: the PID limit, a pool of
//! its own, the control plane apart from other tenants' pools, ingress
//! hosts of its own), then starts a short-lived probe pod inside
//! the tenant — through its apiserver and syncer, like any tenant workload
//! — that tries each way out (the host apiserver, kubelets, the tenant's own
//! etcd and syncer, other tenants, the supervisor, the host's DNS, instance
//! metadata) with short timeouts, next to one way that must work (its own
//! apiserver). Each check names the MITRE ATT&CK technique it stands
//! against. The probe is removed whatever happens.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::{
    LimitRange, Namespace, Node, Pod, ResourceQuota, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;
use vnest_api::host_names::{HostNamespaceRole, apiserver, host_namespace, labels};
use vnest_api::{Phase, VirtualCluster};

use super::{forward, get, list::table};
use crate::exit::Failure;
use crate::host::HostArgs;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    vnest verify team-a -n tenants\n  \
    vnest verify team-a -n tenants -o json --probe-image registry.example/busybox:1.36\n\n\
Exit codes: 0 every check passed; 8 a check failed (the table names it); others as for every command. \
Needs a Ready cluster, and on the host the rights of `vnest describe` plus listing pods, nodes and EndpointSlices.")]
pub(crate) struct VerifyArgs {
    name: String,
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// The probe pod's image: anything with a busybox-style `sh` and `nc`.
    #[arg(long, default_value = "busybox:1.36")]
    probe_image: String,
    /// Where instance metadata would be served (the cloud's address).
    #[arg(long, default_value = "169.254.169.254")]
    metadata_address: String,
    /// How long the probe may take, start-up included.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3m")]
    timeout: Duration,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    connection: HostArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

/// One verified fact about the tenant's isolation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Check {
    pub(crate) layer: &'static str,
    pub(crate) check: String,
    pub(crate) passed: bool,
    pub(crate) detail: String,
    /// The MITRE ATT&CK technique the layer stands against.
    pub(crate) technique: &'static str,
}

/// One connection the probe pod tries from inside the tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) check: String,
    pub(crate) host: String,
    pub(crate) port: i32,
    /// Whether the connection must succeed (the tenant's own apiserver).
    pub(crate) open: bool,
    pub(crate) technique: &'static str,
}

const ESCAPE_TO_HOST: &str = "T1611 Escape to Host";
const RESOURCE_HIJACKING: &str = "T1496 Resource Hijacking";
const DENIAL_OF_SERVICE: &str = "T1499 Endpoint Denial of Service";
const STEAL_TOKEN: &str = "T1528 Steal Application Access Token";
const DISCOVERY: &str = "T1613 Container and Resource Discovery";
const CONTAINER_API: &str = "T1552.007 Container API";
const SERVICE_DISCOVERY: &str = "T1046 Network Service Discovery";
const METADATA: &str = "T1552.005 Cloud Instance Metadata API";
const UNSECURED_CREDENTIALS: &str = "T1552 Unsecured Credentials";
const ADVERSARY_IN_THE_MIDDLE: &str = "T1557 Adversary-in-the-Middle";

/// The exit code when a check failed.
pub(crate) const CHECK_FAILED: u8 = 8;

pub(crate) async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client().await?;
    let vc = get(&client, &args.namespace, &args.name).await?;
    let phase = vc.status.as_ref().and_then(|s| s.phase);
    if phase != Some(Phase::Ready) {
        bail!(
            "VirtualCluster {}/{} is {phase:?}, not Ready: verify needs a serving cluster (`vnest describe {} -n {}` says why)",
            args.namespace,
            args.name,
            args.name,
            args.namespace
        );
    }
    eprintln!("checking the layers on the host …");
    let mut checks = host_checks(&client, &vc).await?;
    let targets = targets(&client, &vc, &args.metadata_address).await?;
    eprintln!(
        "probing {} paths from a pod inside the tenant …",
        targets.len()
    );
    let logs = probe(&client, &args, &targets).await?;
    checks.extend(evaluate(&targets, &probe_results(&logs)));
    let failed = checks.iter().filter(|c| !c.passed).count();
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&checks).context("writing JSON")?
        ),
        Output::Table => {
            println!("{}", render(&checks));
            println!("\n{} checks, {} failed", checks.len(), failed);
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(CHECK_FAILED)
    })
}

fn render(checks: &[Check]) -> String {
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                c.layer.to_owned(),
                c.check.clone(),
                if c.passed { "pass" } else { "FAIL" }.to_owned(),
                c.detail.clone(),
                c.technique.to_owned(),
            ]
        })
        .collect();
    table(&rows, &["LAYER", "CHECK", "RESULT", "DETAIL", "ATT&CK"])
}

fn check(
    layer: &'static str,
    check: &str,
    passed: bool,
    detail: String,
    technique: &'static str,
) -> Check {
    Check {
        layer,
        check: check.to_owned(),
        passed,
        detail,
        technique,
    }
}

/// The layers as the host holds them (not as the spec asks).
async fn host_checks(client: &Client, vc: &VirtualCluster) -> anyhow::Result<Vec<Check>> {
    let (namespace, name) = (
        vc.metadata.namespace.as_deref().unwrap_or_default(),
        vc.metadata.name.as_deref().unwrap_or_default(),
    );
    let wl = host_namespace(namespace, name, HostNamespaceRole::Workloads);
    let cp = host_namespace(namespace, name, HostNamespaceRole::ControlPlane);
    let isolation = &vc.spec.isolation;
    let mut checks = Vec::new();

    let level = isolation.pod_security.as_str();
    let enforced = Api::<Namespace>::all(client.clone())
        .get(&wl)
        .await
        .context("reading the workloads namespace")?
        .metadata
        .labels
        .unwrap_or_default()
        .get("pod-security.kubernetes.io/enforce")
        .cloned();
    checks.push(check(
        "Pod Security",
        "workloads namespace enforces the spec's level",
        enforced.as_deref() == Some(level),
        format!(
            "enforce={} (spec: {level})",
            enforced.as_deref().unwrap_or("none")
        ),
        ESCAPE_TO_HOST,
    ));

    let quota = Api::<ResourceQuota>::namespaced(client.clone(), &wl)
        .list(&ListParams::default())
        .await
        .context("listing ResourceQuotas")?;
    checks.push(check(
        "ResourceQuota",
        "workloads are bounded by a quota",
        !quota.items.is_empty(),
        names(quota.items.iter().map(|q| q.metadata.name.clone())),
        RESOURCE_HIJACKING,
    ));
    let limits = Api::<LimitRange>::namespaced(client.clone(), &wl)
        .list(&ListParams::default())
        .await
        .context("listing LimitRanges")?;
    checks.push(check(
        "LimitRange",
        "containers get default limits",
        !limits.items.is_empty(),
        names(limits.items.iter().map(|l| l.metadata.name.clone())),
        DENIAL_OF_SERVICE,
    ));

    let mut wanted = vec![
        (cp.clone(), "vnest-default-deny"),
        (cp.clone(), "vnest-etcd"),
        (cp.clone(), "vnest-apiserver"),
        (cp.clone(), "vnest-kubelet-proxy"),
        (cp.clone(), "vnest-control-plane-egress"),
    ];
    if isolation.network_policy {
        for policy in vnest_api::pod_network::WORKLOADS_POLICIES {
            wanted.push((wl.clone(), policy));
        }
    }
    for (ns, policy) in wanted {
        let present = Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
            .get_opt(policy)
            .await
            .context("reading NetworkPolicies")?
            .is_some();
        checks.push(check(
            "NetworkPolicy",
            &format!("{policy} present"),
            present,
            if present {
                format!("in {ns}")
            } else {
                format!("missing from {ns}; the supervisor puts it back at its next reconcile")
            },
            SERVICE_DISCOVERY,
        ));
    }

    let account = Api::<ServiceAccount>::namespaced(client.clone(), &wl)
        .get_opt("default")
        .await
        .context("reading the workloads' default ServiceAccount")?;
    let automount = account.and_then(|a| a.automount_service_account_token);
    let pods = Api::<Pod>::namespaced(client.clone(), &wl)
        .list(&ListParams::default())
        .await
        .context("listing the workloads' pods")?;
    let with_token: Vec<String> = pods
        .items
        .iter()
        .filter(|p| mounts_host_token(p))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    checks.push(check(
        "No host token",
        "no workload pod holds a host ServiceAccount token",
        automount == Some(false) && with_token.is_empty(),
        if with_token.is_empty() {
            match automount {
                Some(false) => {
                    "default ServiceAccount: automountServiceAccountToken false".to_owned()
                }
                _ => "the default ServiceAccount would mount its token".to_owned(),
            }
        } else {
            format!("mounted by {}", with_token.join(", "))
        },
        STEAL_TOKEN,
    ));

    if let Some(class) = &isolation.runtime_class_name {
        let exists = Api::<RuntimeClass>::all(client.clone())
            .get_opt(class)
            .await
            .context("reading RuntimeClasses")?
            .is_some();
        checks.push(check(
            "RuntimeClass",
            &format!("RuntimeClass {class} exists on the host"),
            exists,
            if exists {
                "every tenant pod runs with it".to_owned()
            } else {
                "tenant pods cannot start".to_owned()
            },
            ESCAPE_TO_HOST,
        ));
    }
    use vnest_api::conditions::{CONTROL_PLANE_PLACEMENT, INGRESS_HOSTS, NODE_POOL, PID_LIMIT};
    if let Some(limit) = isolation.pid_limit {
        checks.push(reported(
            vc,
            PID_LIMIT,
            "PID limit",
            &format!("pool nodes hold pidLimit {limit}"),
            DENIAL_OF_SERVICE,
        ));
    }
    if vc.spec.node_pool.mode == vnest_api::NodePoolMode::Dedicated {
        checks.push(reported(
            vc,
            NODE_POOL,
            "Node pool",
            "no other VirtualCluster's pool takes this pool's nodes",
            ESCAPE_TO_HOST,
        ));
    }
    checks.push(reported(
        vc,
        CONTROL_PLANE_PLACEMENT,
        "Control plane placement",
        "the control plane (its CA keys) runs on no other tenant's pool node",
        UNSECURED_CREDENTIALS,
    ));
    if !isolation.ingress.hosts.is_empty() {
        checks.push(reported(
            vc,
            INGRESS_HOSTS,
            "Ingress hosts",
            "the granted ingress hosts are this cluster's alone",
            ADVERSARY_IN_THE_MIDDLE,
        ));
    }
    Ok(checks)
}

/// A check the supervisor reports as condition `type_`: passed when True,
/// with its message.
fn reported(
    vc: &VirtualCluster,
    type_: &str,
    layer: &'static str,
    what: &str,
    technique: &'static str,
) -> Check {
    let condition = vc
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    check(
        layer,
        what,
        condition.is_some_and(|c| c.status == "True"),
        condition.map_or_else(
            || format!("no {type_} condition yet"),
            |c| c.message.clone(),
        ),
        technique,
    )
}

fn names(names: impl Iterator<Item = Option<String>>) -> String {
    let names: Vec<String> = names.flatten().collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Whether `pod` mounts a projected ServiceAccount token of the host.
fn mounts_host_token(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.volumes.iter().flatten().any(|v| {
        v.projected.as_ref().is_some_and(|p| {
            p.sources
                .iter()
                .flatten()
                .any(|s| s.service_account_token.is_some())
        })
    })
}

/// Every address the probe tries, read from the host.
async fn targets(
    client: &Client,
    vc: &VirtualCluster,
    metadata: &str,
) -> anyhow::Result<Vec<Target>> {
    let (namespace, name) = (
        vc.metadata.namespace.as_deref().unwrap_or_default(),
        vc.metadata.name.as_deref().unwrap_or_default(),
    );
    let cp = host_namespace(namespace, name, HostNamespaceRole::ControlPlane);
    let mut targets = vec![Target {
        check: "its own apiserver (kubernetes.default) answers".to_owned(),
        host: "kubernetes.default.svc.cluster.local".to_owned(),
        port: 443,
        open: true,
        technique: DISCOVERY,
    }];
    let closed = |check: String, host: String, port: i32, technique| Target {
        check,
        host,
        port,
        open: false,
        technique,
    };

    if let Some(ip) = service_ip(client, "default", "kubernetes").await? {
        targets.push(closed("host apiserver Service".into(), ip, 443, DISCOVERY));
    }
    for (ip, port) in endpoints(client, "default", "kubernetes").await? {
        targets.push(closed(
            format!("host apiserver at {ip}"),
            ip,
            port,
            DISCOVERY,
        ));
    }
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing nodes")?;
    for node in nodes.items.iter().take(8) {
        let status = node.status.clone().unwrap_or_default();
        let port = status
            .daemon_endpoints
            .and_then(|d| d.kubelet_endpoint)
            .map_or(10250, |e| e.port);
        if let Some(address) = status
            .addresses
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.type_ == "InternalIP")
        {
            let node_name = node.metadata.name.clone().unwrap_or_default();
            targets.push(closed(
                format!("kubelet of {node_name}"),
                address.address,
                port,
                CONTAINER_API,
            ));
        }
    }
    for (ip, port) in endpoints(client, "kube-system", "kube-dns").await? {
        let port = if port == 0 { 53 } else { port };
        targets.push(closed(
            format!("host DNS at {ip}"),
            ip,
            port,
            SERVICE_DISCOVERY,
        ));
    }
    targets.push(closed(
        "instance metadata".into(),
        metadata.to_owned(),
        80,
        METADATA,
    ));

    // The tenant's own control plane: only its apiserver may reach etcd,
    // only its apiserver the syncer.
    for pod in pods(client, Some(&cp), &format!("{}=etcd", labels::COMPONENT)).await? {
        targets.push(closed(
            format!("its own etcd {}", pod.0),
            pod.1,
            2379,
            CONTAINER_API,
        ));
    }
    for pod in pods(client, Some(&cp), &format!("{}=syncer", labels::COMPONENT)).await? {
        targets.push(closed(
            "its own syncer's kubelet proxy".into(),
            pod.1.clone(),
            10250,
            CONTAINER_API,
        ));
        targets.push(closed(
            "its own syncer's metrics".into(),
            pod.1,
            8080,
            SERVICE_DISCOVERY,
        ));
    }
    // Other tenants (a few), and vnest's supervisor.
    let others = pods(
        client,
        None,
        &format!("{}={}", labels::COMPONENT, apiserver::COMPONENT),
    )
    .await?;
    for (pod, ip, pod_namespace) in others.into_iter().filter(|(_, _, ns)| *ns != cp).take(3) {
        targets.push(closed(
            format!("another tenant's apiserver {pod_namespace}/{pod}"),
            ip,
            i32::from(apiserver::SECURE_PORT),
            SERVICE_DISCOVERY,
        ));
    }
    for (pod, ip, _) in pods(
        client,
        Some("vnest-system"),
        "app.kubernetes.io/name=vnest-supervisor",
    )
    .await?
    {
        targets.push(closed(
            format!("the supervisor {pod}"),
            ip,
            8080,
            SERVICE_DISCOVERY,
        ));
    }
    Ok(targets)
}

async fn service_ip(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Option<String>> {
    Ok(Api::<Service>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .with_context(|| format!("reading Service {namespace}/{name}"))?
        .and_then(|s| s.spec?.cluster_ip)
        .filter(|ip| ip != "None"))
}

/// `(address, port)` behind Service `namespace/name` (port 0 when the slice
/// names none).
async fn endpoints(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Vec<(String, i32)>> {
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
        .await
        .with_context(|| format!("listing the EndpointSlices of {namespace}/{name}"))?;
    let mut out = Vec::new();
    for slice in slices.items {
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .and_then(|p| p.port)
            .unwrap_or(0);
        for endpoint in slice.endpoints.into_iter().flatten() {
            out.extend(endpoint.addresses.into_iter().map(|a| (a, port)));
        }
    }
    Ok(out)
}

/// `(name, IP, namespace)` of running pods matching `selector`.
async fn pods(
    client: &Client,
    namespace: Option<&str>,
    selector: &str,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .with_context(|| format!("listing pods {selector}"))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|p| {
            let ip = p.status?.pod_ip?;
            Some((p.metadata.name?, ip, p.metadata.namespace?))
        })
        .collect())
}

/// The probe's shell script, each result a line `PROBE <index>
/// open|closed`, then `PROBE-DONE`. A NetworkPolicy enforcer installs a new
/// pod's rules a moment after the pod starts (kube-router refuses its
/// traffic until then), so the paths that must work are tried first, for up
/// to 30 s each; the ones that must not are tried once after them, when
/// the pod's rules are known to be in place.
pub(crate) fn probe_script(targets: &[Target]) -> String {
    let mut script = String::new();
    let try_once =
        |host: &str, port: i32| format!("nc -w 2 {host} {port} </dev/null >/dev/null 2>&1");
    let (open, closed): (Vec<_>, Vec<_>) = targets.iter().enumerate().partition(|(_, t)| t.open);
    for (i, target) in open {
        script.push_str(&format!(
            "n=0; until {} || [ $n -ge 30 ]; do n=$((n+1)); sleep 1; done; if [ $n -lt 30 ]; then echo 'PROBE {i} open'; else echo 'PROBE {i} closed'; fi\n",
            try_once(&target.host, target.port)
        ));
    }
    for (i, target) in closed {
        script.push_str(&format!(
            "if {}; then echo 'PROBE {i} open'; else echo 'PROBE {i} closed'; fi\n",
            try_once(&target.host, target.port)
        ));
    }
    script.push_str("echo PROBE-DONE\n");
    script
}

/// Which targets the probe reached, by index.
pub(crate) fn probe_results(logs: &str) -> BTreeMap<usize, bool> {
    logs.lines()
        .filter_map(|l| l.strip_prefix("PROBE "))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(i, result)| Some((i.parse().ok()?, result == "open")))
        .collect()
}

/// A check per target: passed when the probe saw what must be.
pub(crate) fn evaluate(targets: &[Target], results: &BTreeMap<usize, bool>) -> Vec<Check> {
    targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let address = format!("{}:{}", t.host, t.port);
            let (passed, detail) = match results.get(&i) {
                None => (false, format!("{address}: the probe did not report it")),
                Some(open) if *open == t.open => (
                    true,
                    format!("{address} {}", if *open { "reachable" } else { "refused" }),
                ),
                Some(open) => (
                    false,
                    format!(
                        "{address} {}",
                        if *open { "REACHABLE" } else { "NOT reachable" }
                    ),
                ),
            };
            Check {
                layer: "Network (probe)",
                check: if t.open {
                    t.check.clone()
                } else {
                    format!("{} is closed", t.check)
                },
                passed,
                detail,
                technique: t.technique,
            }
        })
        .collect()
}

/// Runs the probe pod inside the tenant and returns what it printed; the
/// pod is deleted in every case.
async fn probe(client: &Client, args: &VerifyArgs, targets: &[Target]) -> anyhow::Result<String> {
    let (kubeconfig, _forward) =
        forward::tenant_kubeconfig(client, &args.namespace, &args.name).await?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("reading the tenant kubeconfig")?;
    let tenant = Client::try_from(config).context("connecting to the tenant apiserver")?;
    let pods: Api<Pod> = Api::namespaced(tenant, "default");
    let name = format!("vnest-verify-{}", std::process::id());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app.kubernetes.io/name": "vnest-verify" } },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "probe",
                "image": args.probe_image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", probe_script(targets)],
                "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } },
            }],
        },
    }))
    .context("building the probe pod")?;
    pods.create(&PostParams::default(), &pod)
        .await
        .map_err(|e| Failure::Forbidden(format!("creating the probe pod in the tenant: {e}")))?;
    let outcome = wait_for_logs(&pods, &name, args.timeout).await;
    let _ = pods
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await;
    outcome
}

async fn wait_for_logs(pods: &Api<Pod>, name: &str, timeout: Duration) -> anyhow::Result<String> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let pod = pods.get(name).await.context("reading the probe pod")?;
        let status = pod.status.unwrap_or_default();
        let phase = status.phase.unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            let logs = pods
                .logs(name, &LogParams::default())
                .await
                .context("reading the probe's output through the tenant")?;
            if logs.contains("PROBE-DONE") {
                return Ok(logs);
            }
            bail!("the probe pod ended ({phase}) without finishing: {logs}");
        }
        let waiting = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.status != "True" && c.message.is_some())
            .and_then(|c| c.message.clone())
            .unwrap_or(phase);
        if waiting != last {
            eprintln!("  probe: {waiting}");
            last = waiting;
        }
        if started.elapsed() > timeout {
            bail!(
                "the probe pod did not finish within {timeout:?} (last: {last}); is --probe-image available to the pool's nodes?"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn target(open: bool) -> Target {
        Target {
            check: "x".into(),
            host: "10.0.0.1".into(),
            port: 443,
            open,
            technique: DISCOVERY,
        }
    }

    #[test]
    fn the_script_tries_what_must_work_first_with_retries_and_says_when_done() {
        let script = probe_script(&[target(false), target(true)]);
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("n=0; until nc -w 2 10.0.0.1 443"),
            "{script}"
        );
        assert!(lines[0].contains("PROBE 1 open"));
        assert!(lines[1].starts_with("if nc -w 2 10.0.0.1 443"));
        assert!(lines[1].contains("PROBE 0 closed"));
        assert_eq!(lines[2], "echo PROBE-DONE");
    }

    #[test]
    fn a_check_passes_only_when_the_probe_saw_what_must_be() {
        let targets = [target(true), target(false), target(false), target(false)];
        let results =
            probe_results("noise\nPROBE 0 open\nPROBE 1 closed\nPROBE 2 open\nPROBE-DONE\n");
        let checks = evaluate(&targets, &results);
        let passed: Vec<bool> = checks.iter().map(|c| c.passed).collect();
        // The third reached what it must not; the fourth never reported.
        assert_eq!(passed, [true, true, false, false]);
        assert!(checks[2].detail.contains("REACHABLE"));
        assert!(checks[3].detail.contains("did not report"));
        assert_eq!(checks[1].check, "x is closed");
    }

    #[test]
    fn a_projected_service_account_token_is_a_host_token() {
        let pod: Pod = serde_json::from_value(json!({
            "spec": { "containers": [], "volumes": [{ "name": "t", "projected": { "sources": [{ "serviceAccountToken": { "path": "token" } }] } }] }
        }))
        .unwrap();
        assert!(mounts_host_token(&pod));
        assert!(!mounts_host_token(&Pod::default()));
    }
}
