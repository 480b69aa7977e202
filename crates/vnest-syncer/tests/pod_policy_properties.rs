//! Hostile pods: whatever a tenant writes into a pod (node placement,
//! tolerations, host namespaces, privileges, volumes, tokens, ...), the
//! policy and the translation never panic, and every pod the policy lets
//! through becomes a host pod that stays in its pool, carries no host
//! credential, and has no more privilege than the cluster's level allows.
//! Property tests: `PROPTEST_CASES=N` runs more cases.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, Toleration};
use proptest::prelude::*;
use serde_json::{Value, json};
use vnest_api::{PodLabels, PodSecurityLevel};
use vnest_syncer::node_selection::PoolLabels;
use vnest_syncer::policy::{self, Policy};
use vnest_syncer::translate::{self, Placement};

const POOL_KEY: &str = "vnest.dev/pool";
const POOL_NODES: [&str; 2] = ["node-a1", "node-a2"];

fn one_of(values: &[Value]) -> BoxedStrategy<Value> {
    proptest::sample::select(values.to_vec()).boxed()
}

/// Now and then `value` under `key` (each alone may get a pod refused:
/// seldom enough that most pods are admitted and checked).
fn field(key: &'static str, value: BoxedStrategy<Value>) -> BoxedStrategy<Option<(String, Value)>> {
    proptest::option::weighted(0.2, value.prop_map(move |v| (key.to_owned(), v))).boxed()
}

fn node_names() -> Vec<Value> {
    [
        "node-a1",
        "node-a2",
        "node-b1",
        "",
        "no-such-node",
        "node-a1.example",
    ]
    .map(Value::from)
    .to_vec()
}

fn requirement() -> BoxedStrategy<Value> {
    (
        one_of(&["kubernetes.io/hostname", POOL_KEY, "disk", "metadata.name"].map(Value::from)),
        one_of(&["In", "NotIn", "Exists", "DoesNotExist", "Gt"].map(Value::from)),
        prop::collection::vec(one_of(&node_names()), 0..3),
    )
        .prop_map(
            |(key, operator, values)| json!({ "key": key, "operator": operator, "values": values }),
        )
        .boxed()
}

fn affinity() -> BoxedStrategy<Value> {
    (
        prop::collection::vec(requirement(), 0..3),
        prop::collection::vec(requirement(), 0..2),
        any::<bool>(),
    )
        .prop_map(|(expressions, fields, anti)| {
            let mut affinity = json!({ "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{ "matchExpressions": expressions, "matchFields": fields }] } } });
            if anti {
                affinity["podAntiAffinity"] = json!({ "requiredDuringSchedulingIgnoredDuringExecution": [
                    { "labelSelector": { "matchLabels": { "app": "x" } }, "topologyKey": "kubernetes.io/hostname",
                      "namespaceSelector": {} }] });
            }
            affinity
        })
        .boxed()
}

fn toleration() -> BoxedStrategy<Value> {
    one_of(&[
        json!({ "operator": "Exists" }),
        json!({ "key": POOL_KEY, "operator": "Exists" }),
        json!({ "key": POOL_KEY, "value": "a", "effect": "NoSchedule" }),
        json!({ "key": POOL_KEY, "value": "b", "effect": "NoSchedule" }),
        json!({ "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute" }),
        json!({ "key": "dedicated", "operator": "Equal", "value": "gpu" }),
    ])
}

fn volume() -> BoxedStrategy<Value> {
    one_of(&[
        json!({ "name": "h", "hostPath": { "path": "/" } }),
        json!({ "name": "h2", "hostPath": { "path": "/var/run/containerd/containerd.sock", "type": "Socket" } }),
        json!({ "name": "e", "emptyDir": {} }),
        json!({ "name": "s", "secret": { "secretName": "db" } }),
        json!({ "name": "c", "configMap": { "name": "settings" } }),
        json!({ "name": "p", "persistentVolumeClaim": { "claimName": "data" } }),
        json!({ "name": "t", "projected": { "sources": [
            { "serviceAccountToken": { "path": "token", "audience": "vault", "expirationSeconds": 600 } },
            { "configMap": { "name": "kube-root-ca.crt" } },
            { "downwardAPI": { "items": [{ "path": "ns", "fieldRef": { "fieldPath": "metadata.namespace" } }] } } ] } }),
        json!({ "name": "t2", "projected": { "sources": [{ "serviceAccountToken": { "path": "t" } }] } }),
        json!({ "name": "i", "image": { "reference": "registry.example/data:1" } }),
        json!({ "name": "d", "downwardAPI": { "items": [{ "path": "n", "fieldRef": { "fieldPath": "spec.nodeName" } }] } }),
    ])
}

fn container() -> BoxedStrategy<Value> {
    (
        proptest::option::weighted(0.2, any::<bool>()),
        prop::collection::vec(one_of(&["NET_ADMIN", "SYS_ADMIN", "NET_BIND_SERVICE", "CHOWN", "ALL"].map(Value::from)), 0..2),
        proptest::option::weighted(0.2, prop_oneof![Just(0i64), Just(80), 1i64..65536]),
        prop::collection::vec(one_of(&["h", "e", "s", "t", "p", "i"].map(Value::from)), 0..3),
        proptest::option::of(any::<bool>()),
        proptest::option::of(one_of(&[json!({ "cpu": "10m" }), json!({ "example.com/gpu": "1", "memory": "1Gi" })])),
    )
        .prop_map(|(privileged, add, host_port, mounts, run_as_non_root, resources)| {
            let mut c = json!({ "name": "c", "image": "busybox",
                "securityContext": { "capabilities": { "add": add } },
                "volumeMounts": mounts.iter().map(|m| json!({ "name": m, "mountPath": format!("/{}", m.as_str().unwrap_or("x")) })).collect::<Vec<_>>() });
            if let Some(privileged) = privileged {
                c["securityContext"]["privileged"] = privileged.into();
            }
            if let Some(non_root) = run_as_non_root {
                c["securityContext"]["runAsNonRoot"] = non_root.into();
            }
            if let Some(port) = host_port {
                c["ports"] = json!([{ "containerPort": 8080, "hostPort": port }]);
            }
            if let Some(requests) = resources {
                c["resources"] = json!({ "requests": requests });
            }
            c
        })
        .boxed()
}

/// A pod spec with any mix of what a tenant may write.
fn pod() -> impl Strategy<Value = Pod> {
    let placement = (
        field("nodeName", one_of(&node_names())),
        field(
            "nodeSelector",
            prop::collection::btree_map(
                one_of(&[POOL_KEY, "disk", "kubernetes.io/hostname"].map(Value::from))
                    .prop_map(|k| k.as_str().unwrap_or_default().to_owned()),
                one_of(&["a", "b", "ssd", "node-b1"].map(Value::from)),
                0..3,
            )
            .prop_map(|m| json!(m))
            .boxed(),
        ),
        field("affinity", affinity()),
        field(
            "tolerations",
            prop::collection::vec(toleration(), 0..3)
                .prop_map(Value::from)
                .boxed(),
        ),
    );
    let host = (
        field("hostNetwork", any::<bool>().prop_map(Value::from).boxed()),
        field("hostPID", any::<bool>().prop_map(Value::from).boxed()),
        field("hostIPC", any::<bool>().prop_map(Value::from).boxed()),
        field(
            "volumes",
            prop::collection::vec(volume(), 0..4)
                .prop_map(Value::from)
                .boxed(),
        ),
    );
    let identity = (
        field(
            "serviceAccountName",
            one_of(&["default", "builder", "kube-system:admin"].map(Value::from)),
        ),
        field(
            "automountServiceAccountToken",
            any::<bool>().prop_map(Value::from).boxed(),
        ),
        field(
            "runtimeClassName",
            one_of(&["runc", "gvisor", ""].map(Value::from)),
        ),
        field(
            "priorityClassName",
            one_of(&["system-node-critical", "low"].map(Value::from)),
        ),
        field(
            "dnsPolicy",
            one_of(
                &["ClusterFirst", "Default", "None", "ClusterFirstWithHostNet"].map(Value::from),
            ),
        ),
        field("schedulerName", one_of(&["my-scheduler"].map(Value::from))),
    );
    (
        placement,
        host,
        identity,
        prop::collection::vec(container(), 1..3),
        prop::collection::vec(container(), 0..2),
        any::<bool>(),
    )
        .prop_map(|((a, b, c, d), (e, f, g, h), (i, j, k, l, m, n), containers, init, kube_system)| {
            let mut spec = serde_json::Map::new();
            for (key, value) in [a, b, c, d, e, f, g, h, i, j, k, l, m, n].into_iter().flatten() {
                spec.insert(key, value);
            }
            let name = |i: usize, mut c: Value, prefix: &str| {
                c["name"] = format!("{prefix}{i}").into();
                c
            };
            spec.insert("containers".into(), containers.into_iter().enumerate().map(|(i, c)| name(i, c, "c")).collect());
            spec.insert("initContainers".into(), init.into_iter().enumerate().map(|(i, c)| name(i, c, "i")).collect());
            let namespace = if kube_system { "kube-system" } else { "shop" };
            serde_json::from_value(json!({
                "metadata": { "name": "p", "namespace": namespace, "labels": { "app": "x", "vnest.dev/tenant-namespace": "forged" } },
                "spec": spec,
            }))
            .unwrap()
        })
}

fn level() -> impl Strategy<Value = PodSecurityLevel> {
    prop_oneof![
        Just(PodSecurityLevel::Privileged),
        Just(PodSecurityLevel::Baseline),
        Just(PodSecurityLevel::Restricted),
    ]
}

fn pool_selector() -> BTreeMap<String, String> {
    BTreeMap::from([(POOL_KEY.to_owned(), "a".to_owned())])
}

fn the_policy(level: PodSecurityLevel, runtime_class: Option<String>) -> Policy {
    Policy {
        level,
        pool_selector: pool_selector(),
        pool_nodes: POOL_NODES.iter().map(|n| (*n).to_owned()).collect(),
        pool_taint_key: POOL_KEY.to_owned(),
        runtime_class,
    }
}

fn placement(runtime_class: Option<String>) -> Placement {
    let pool_toleration: Toleration = serde_json::from_value(
        json!({ "key": POOL_KEY, "operator": "Equal", "value": "a", "effect": "NoSchedule" }),
    )
    .unwrap();
    let node = BTreeMap::from([(POOL_KEY.to_owned(), "a".to_owned())]);
    Placement {
        host_namespace: "vnest-t-a-0123456789-wl".into(),
        pool_selector: pool_selector(),
        pool_toleration: Some(pool_toleration),
        runtime_class,
        apiserver_host: "10.96.5.5".into(),
        apiserver_port: 443,
        dns_ip: Some("10.96.7.7".into()),
        cluster_domain: vnest_api::CLUSTER_DOMAIN.into(),
        pod_labels: PodLabels::Prefixed,
        etc_hosts_image: Some("vnest.local/vnest:1".into()),
        pool_labels: PoolLabels {
            tenant: POOL_NODES
                .iter()
                .map(|n| ((*n).to_owned(), node.clone()))
                .collect(),
            host: POOL_NODES
                .iter()
                .map(|n| ((*n).to_owned(), node.clone()))
                .collect(),
        },
        node_resources: POOL_NODES
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    BTreeSet::from(["cpu".to_owned(), "memory".to_owned()]),
                )
            })
            .collect(),
        ..Placement::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { max_global_rejects: 100_000, ..ProptestConfig::default() })]

    #[test]
    fn an_admitted_pod_stays_in_its_pool_without_host_credentials_or_privilege(
        pod in pod(),
        level in level(),
        sandbox in any::<bool>(),
    ) {
        let runtime_class = sandbox.then(|| "gvisor".to_owned());
        let refusals = policy::check(&pod, &the_policy(level, runtime_class.clone()));
        // Whatever the verdict, translating never panics.
        let translated = translate::pod(&pod, &placement(runtime_class.clone()), &BTreeMap::new(), &[]);
        prop_assume!(refusals.is_empty());
        let host = translated.unwrap();
        let spec = host.spec.clone().unwrap();

        // In its pool: the pool's selector, a pool node if named, and no
        // toleration of another pool's taint.
        let selector = spec.node_selector.clone().unwrap_or_default();
        prop_assert_eq!(selector.get(POOL_KEY).map(String::as_str), Some("a"));
        if let Some(node) = &spec.node_name {
            prop_assert!(POOL_NODES.contains(&node.as_str()), "{node}");
        }
        for toleration in spec.tolerations.iter().flatten() {
            let key = toleration.key.as_deref().unwrap_or_default();
            prop_assert!(!key.is_empty() || toleration.operator.as_deref() != Some("Exists"), "{toleration:?}");
            if key == POOL_KEY {
                prop_assert_eq!(toleration.operator.as_deref().unwrap_or("Equal"), "Equal");
                prop_assert_eq!(toleration.value.as_deref(), Some("a"));
            }
        }

        // No host credential: no ServiceAccount, no token, no host token
        // in a projected volume.
        prop_assert_eq!(spec.automount_service_account_token, Some(false));
        prop_assert!(spec.service_account_name.is_none());
        for volume in spec.volumes.iter().flatten() {
            let sources = volume.projected.iter().flat_map(|p| p.sources.iter().flatten());
            for source in sources {
                prop_assert!(source.service_account_token.is_none(), "{volume:?}");
            }
        }

        // Its runtime and no more privilege than the level allows.
        prop_assert_eq!(spec.runtime_class_name, runtime_class);
        prop_assert!(spec.priority_class_name.is_none() && spec.priority.is_none());
        if level != PodSecurityLevel::Privileged {
            for on in [spec.host_network, spec.host_pid, spec.host_ipc] {
                prop_assert_ne!(on, Some(true));
            }
            prop_assert!(spec.volumes.iter().flatten().all(|v| v.host_path.is_none()));
            let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
            for container in containers {
                let privileged = container.security_context.as_ref().and_then(|c| c.privileged);
                prop_assert_ne!(privileged, Some(true));
            }
        }

        // Its origin is vnest's to state, never the tenant's.
        let labels = host.metadata.labels.unwrap_or_default();
        prop_assert_ne!(labels.get("vnest.dev/tenant-namespace").map(String::as_str), Some("forged"));
    }
}
