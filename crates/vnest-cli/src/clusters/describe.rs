//! `vnest describe NAME`: what the admin needs to know about one virtual
//! cluster — its spec in short, every stage's condition with its reason,
//! where it is served, the recent events, and which isolation layers are in
//! force on the host.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;
use k8s_openapi::api::core::v1::{Event, LimitRange, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;
use vnest_api::host_names::{HostNamespaceRole, host_namespace};
use vnest_api::{ExposeType, NodePoolMode, VirtualCluster};

use super::{get, list::short_duration};
use crate::host::HostArgs;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  vnest describe team-a -n tenants")]
pub(crate) struct DescribeArgs {
    name: String,
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    #[command(flatten)]
    connection: HostArgs,
}

/// What the host enforces for this tenant, read from the host (not only
/// from the spec), as lines of text.
#[derive(Debug, Default)]
struct Layers {
    /// Per host namespace role ("control plane", "workloads"): the names.
    network_policies: Vec<(&'static str, Vec<String>)>,
    quota: Vec<String>,
    limit_range: bool,
}

pub(crate) async fn run(args: DescribeArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client().await?;
    let vc = get(&client, &args.namespace, &args.name).await?;
    let events: Api<Event> = Api::namespaced(client.clone(), &args.namespace);
    let selector = format!(
        "involvedObject.kind=VirtualCluster,involvedObject.name={}",
        args.name
    );
    let mut events = events
        .list(&ListParams::default().fields(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    events.sort_by_key(event_second);
    let layers = layers(&client, &args.namespace, &args.name).await;
    print!("{}", render(&vc, &events, &layers, Timestamp::now()));
    Ok(ExitCode::SUCCESS)
}

/// Reads the isolation objects the supervisor made for the tenant; what
/// the admin's identity may not read is left out, not an error.
async fn layers(client: &kube::Client, namespace: &str, name: &str) -> Layers {
    let mut layers = Layers::default();
    for (role, label) in [
        (HostNamespaceRole::ControlPlane, "control plane"),
        (HostNamespaceRole::Workloads, "workloads"),
    ] {
        let ns = host_namespace(namespace, name, role);
        let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
        if let Ok(list) = policies.list(&ListParams::default()).await {
            let names: Vec<String> = list
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect();
            if !names.is_empty() {
                layers.network_policies.push((label, names));
            }
        }
    }
    let workloads = host_namespace(namespace, name, HostNamespaceRole::Workloads);
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &workloads);
    if let Ok(list) = quotas.list(&ListParams::default()).await {
        for quota in list.items {
            let hard = quota.spec.and_then(|s| s.hard).unwrap_or_default();
            layers
                .quota
                .extend(hard.into_iter().map(|(k, v)| format!("{k}={}", v.0)));
        }
    }
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), &workloads);
    layers.limit_range = ranges
        .list(&ListParams::default())
        .await
        .is_ok_and(|l| !l.items.is_empty());
    layers
}

/// When an event last happened: events.k8s.io writers set `eventTime`,
/// core ones `lastTimestamp`.
fn event_second(event: &Event) -> Option<i64> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .or_else(|| event.event_time.as_ref().map(|t| t.0.as_second()))
}

fn render(vc: &VirtualCluster, events: &[Event], layers: &Layers, now: Timestamp) -> String {
    let mut out = String::new();
    let spec = &vc.spec;
    let status = vc.status.clone().unwrap_or_default();
    let namespace = vc.metadata.namespace.as_deref().unwrap_or_default();
    let name = vc.metadata.name.as_deref().unwrap_or_default();
    let field = |out: &mut String, key: &str, value: &str| {
        let _ = writeln!(out, "{:<20}{value}", format!("{key}:"));
    };
    field(&mut out, "Name", name);
    field(&mut out, "Namespace", namespace);
    field(
        &mut out,
        "Phase",
        &status.phase.map_or("-".to_owned(), |p| format!("{p:?}")),
    );
    field(
        &mut out,
        "Version",
        status
            .version
            .as_deref()
            .or(spec.kubernetes_version.as_deref())
            .unwrap_or("default"),
    );
    // While an upgrade moves the components one after another.
    if let Some(runs) = &status.component_versions {
        let wanted = spec
            .kubernetes_version
            .as_deref()
            .unwrap_or(vnest_api::DEFAULT_KUBERNETES_VERSION);
        let parts: Vec<String> = [
            ("kube-apiserver", &runs.kube_apiserver),
            ("kube-controller-manager", &runs.kube_controller_manager),
            ("kube-scheduler", &runs.kube_scheduler),
        ]
        .iter()
        .filter_map(|(component, version)| Some(format!("{component} {}", version.as_ref()?)))
        .collect();
        if status.version.as_deref() != Some(wanted) && !parts.is_empty() {
            field(
                &mut out,
                "Upgrading to",
                &format!("{wanted} (now: {})", parts.join(", ")),
            );
        }
    }
    field(
        &mut out,
        "Endpoint",
        status.endpoint.as_deref().unwrap_or("-"),
    );
    field(
        &mut out,
        "Kubeconfig",
        &status.kubeconfig_secret_name.as_deref().map_or_else(
            || "- (not serving yet)".to_owned(),
            |s| format!("Secret {namespace}/{s} (`vnest kubeconfig {name} -n {namespace}`)"),
        ),
    );
    field(
        &mut out,
        "Exposed as",
        match spec.control_plane.expose.type_ {
            ExposeType::ClusterIP => "ClusterIP (inside the host; `vnest connect` port-forwards)",
            ExposeType::NodePort => "NodePort",
            ExposeType::LoadBalancer => "LoadBalancer",
        },
    );
    field(
        &mut out,
        "Control plane",
        &format!(
            "{} apiserver replica(s), datastore {}",
            spec.control_plane.replicas,
            match (&spec.datastore.external, &spec.datastore.etcd) {
                (Some(external), _) => format!("external ({})", external.endpoints.join(",")),
                (None, Some(etcd)) => format!("etcd x{} ({})", etcd.replicas, etcd.storage.0),
                (None, None) => "etcd".to_owned(),
            }
        ),
    );
    field(&mut out, "Paused", if spec.paused { "yes" } else { "no" });
    let expires = status.expires_at.as_ref().map_or_else(
        || "never".to_owned(),
        |t| {
            format!(
                "{} (in {})",
                t.0,
                short_duration(t.0.as_second() - now.as_second())
            )
        },
    );
    field(&mut out, "Expires", &expires);

    out.push_str("\nConditions:\n");
    let mut rows = vec![
        ["TYPE", "STATUS", "REASON", "MESSAGE"]
            .map(str::to_owned)
            .to_vec(),
    ];
    rows.extend(status.conditions.iter().map(|c| {
        vec![
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
        ]
    }));
    if status.conditions.is_empty() {
        out.push_str(
            "  (none yet: is the supervisor running? `kubectl -n vnest-system get pods`)\n",
        );
    } else {
        for line in super::list::table(&rows[1..], &["TYPE", "STATUS", "REASON", "MESSAGE"]).lines()
        {
            let _ = writeln!(out, "  {line}");
        }
    }

    out.push_str("\nIsolation on the host:\n");
    let selector = vnest_api::label_pairs::selector(&spec.node_pool.node_selector);
    let pool = match spec.node_pool.mode {
        NodePoolMode::Dedicated => format!("dedicated nodes {selector} (no other tenant's pods)"),
        NodePoolMode::Shared => format!("shared nodes {selector}"),
    };
    let layer = |out: &mut String, key: &str, value: &str| {
        let _ = writeln!(out, "  {:<18}{value}", format!("{key}:"));
    };
    layer(
        &mut out,
        "Control plane",
        "own apiserver, etcd, controller-manager; Pod Security restricted",
    );
    layer(&mut out, "Node pool", &pool);
    layer(
        &mut out,
        "Pod Security",
        &format!(
            "{:?} (refused by the syncer with a reason, and enforced by the host)",
            spec.isolation.pod_security
        )
        .to_lowercase(),
    );
    layer(
        &mut out,
        "RuntimeClass",
        spec.isolation
            .runtime_class_name
            .as_deref()
            .unwrap_or("none (the host's default runtime)"),
    );
    layer(
        &mut out,
        "NetworkPolicy",
        &if !spec.isolation.network_policy {
            "off (spec.isolation.networkPolicy: false)".to_owned()
        } else if layers.network_policies.is_empty() {
            "on in the spec; none readable on the host".to_owned()
        } else {
            format!(
                "{} (enforced where the host's network plugin enforces NetworkPolicy)",
                layers
                    .network_policies
                    .iter()
                    .map(|(role, names)| format!("{role}: {}", names.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        },
    );
    layer(
        &mut out,
        "ResourceQuota",
        &if layers.quota.is_empty() {
            "none readable".to_owned()
        } else {
            layers.quota.join(", ")
        },
    );
    layer(
        &mut out,
        "LimitRange",
        if layers.limit_range {
            "default requests and limits"
        } else {
            "none readable"
        },
    );
    layer(
        &mut out,
        "PID limit",
        &spec.isolation.pid_limit.map_or_else(
            || "the nodes' kubelet setting".to_owned(),
            |l| format!("{l} asked; enforced by the nodes' kubelet podPidsLimit, not per tenant"),
        ),
    );

    out.push_str("\nEvents:\n");
    if events.is_empty() {
        out.push_str("  <none>\n");
    }
    for event in events.iter().rev().take(15).rev() {
        let age =
            event_second(event).map_or("-".to_owned(), |t| short_duration(now.as_second() - t));
        let _ = writeln!(
            out,
            "  {:<8}{:<6}{:<24}{}",
            event.type_.as_deref().unwrap_or("-"),
            age,
            event.reason.as_deref().unwrap_or("-"),
            event.message.as_deref().unwrap_or_default()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn vc() -> VirtualCluster {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "vnest.dev/v1alpha1",
            "kind": "VirtualCluster",
            "metadata": { "name": "a", "namespace": "tenants" },
            "spec": { "nodePool": { "nodeSelector": { "vnest.dev/pool": "a" } } },
            "status": {
                "phase": "Ready",
                "endpoint": "https://172.30.0.2:31443",
                "conditions": [{
                    "type": "Datastore", "status": "False", "reason": "Unschedulable",
                    "message": "0/2 nodes are available", "lastTransitionTime": "2026-11-25T00:00:00Z"
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn shows_conditions_endpoint_and_layers() {
        let layers = Layers {
            network_policies: vec![("control plane", vec!["vnest-default-deny".to_owned()])],
            quota: vec!["pods=100".to_owned()],
            limit_range: true,
        };
        let out = render(&vc(), &[], &layers, Timestamp::now());
        assert!(out.contains("https://172.30.0.2:31443"), "{out}");
        assert!(
            out.contains("Datastore") && out.contains("Unschedulable") && out.contains("0/2 nodes"),
            "{out}"
        );
        assert!(out.contains("dedicated nodes vnest.dev/pool=a"), "{out}");
        assert!(out.contains("pods=100"), "{out}");
        assert!(out.contains("control plane: vnest-default-deny"), "{out}");
        assert!(out.contains("<none>"), "no events: {out}");
        assert!(!out.contains("Upgrading to"), "{out}");
    }

    #[test]
    fn an_upgrade_under_way_shows_what_each_component_runs() {
        let mut upgrading = vc();
        upgrading.spec.kubernetes_version = Some("v1.37.2".into());
        if let Some(status) = upgrading.status.as_mut() {
            status.version = Some("v1.36.3".into());
            status.component_versions = Some(vnest_api::ComponentVersions {
                kube_apiserver: Some("v1.37.2".into()),
                kube_controller_manager: Some("v1.36.3".into()),
                ..Default::default()
            });
        }
        let out = render(&upgrading, &[], &Layers::default(), Timestamp::now());
        assert!(
            out.contains(
                "Upgrading to:       v1.37.2 (now: kube-apiserver v1.37.2, kube-controller-manager v1.36.3)"
            ),
            "{out}"
        );
    }
}
