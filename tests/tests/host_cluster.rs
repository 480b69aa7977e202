//! The development host cluster, from nothing to nothing: real kubelets in
//! their own network namespaces run a two-pod workload with a Service and a
//! DNS lookup, pods land on the node a selector names, `logs` and `exec`
//! work, NetworkPolicies are enforced (a deny policy cuts traffic from
//! another node and from the same node, deleting it restores both),
//! simulated (kwok) nodes take what asks for them, and teardown leaves
//! no process, mount, network namespace, link, cgroup, iptables rule or file
//! behind.
//!
//! Needs root and the packages of tools/host/install-prerequisites.sh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{AttachParams, ListParams, LogParams, PostParams};
use serde_json::json;
use vnest_devhost::images::BUSYBOX_IMAGE;
use vnest_devhost::simulated::SIMULATED_TAINT_KEY;
use vnest_devhost::topology::NodeSpec;
use vnest_tests::{HostSlot, MachineFootprint, TestHost};

const NS: &str = "workload";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_runs_a_workload_across_nodes_and_leaves_nothing_behind() {
    let slot = HostSlot::acquire().await;
    let before = MachineFootprint::capture("");
    let mut pool_b = NodeSpec::new(2);
    pool_b.labels.push(("vnest.dev/pool".into(), "b".into()));
    let sim_pool = vec![("vnest.dev/pool".to_owned(), "sim".to_owned())];
    let host = TestHost::start_with(
        slot,
        vec![NodeSpec::new(1), pool_b],
        vec![sim_pool.clone(), sim_pool],
    )
    .await;
    let base = host.base_dir().display().to_string();
    let client = host.client();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": NS } })).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    // The server runs on the node of pool "b", chosen by label selector;
    // the client is pinned to the other node by name.
    create_pod(
        &pods,
        "web",
        json!({ "vnest.dev/pool": "b" }),
        &[
            "sh",
            "-c",
            "echo hello-from-web > /tmp/index.html; echo serving; exec httpd -f -p 8080 -h /tmp",
        ],
    )
    .await;
    create_pod(
        &pods,
        "client",
        json!({ "kubernetes.io/hostname": "vnest-node1" }),
        &["sleep", "3600"],
    )
    .await;
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80, "targetPort": 8080 }] },
    }))
    .unwrap();
    let service = services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let cluster_ip = service.spec.unwrap().cluster_ip.unwrap();

    let web = wait_running(&pods, "web").await;
    let client_pod = wait_running(&pods, "client").await;
    assert_eq!(node_of(&web), "vnest-node2", "the selector names pool b");
    assert_eq!(node_of(&client_pod), "vnest-node1");

    // logs: through the apiserver to the kubelet in its namespace.
    let logs = eventually(|| async {
        let text = pods.logs("web", &LogParams::default()).await.ok()?;
        text.contains("serving").then_some(text)
    })
    .await;
    assert!(logs.contains("serving"));

    // exec + Service: the client on node 1 reaches the server on node 2 via
    // the ClusterIP, which kube-proxy on node 1 translates.
    let request = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {cluster_ip} 80");
    let reply = eventually(|| async {
        let out = exec(&pods, "client", &["sh", "-c", &request]).await;
        out.contains("hello-from-web").then_some(out)
    })
    .await;
    assert!(reply.contains("200 OK"), "{reply}");

    // DNS: CoreDNS resolves the Service's name to its ClusterIP.
    let fqdn = format!("web.{NS}.svc.cluster.local");
    let answer = eventually(|| async {
        let out = exec(&pods, "client", &["nslookup", &fqdn]).await;
        out.contains(&cluster_ip).then_some(out)
    })
    .await;
    assert!(answer.contains(&fqdn), "{answer}");

    network_policies_are_enforced(&client, &pods, &web).await;

    // Simulated nodes take a Deployment that asks for them (selector and
    // toleration of their taint); kwok reports its pods Running.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "sim" },
        "spec": {
            "replicas": 4,
            "selector": { "matchLabels": { "app": "sim" } },
            "template": {
                "metadata": { "labels": { "app": "sim" } },
                "spec": {
                    "nodeSelector": { "vnest.dev/pool": "sim" },
                    "tolerations": [{ "key": SIMULATED_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule" }],
                    "containers": [{ "name": "c", "image": BUSYBOX_IMAGE }],
                },
            },
        },
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let placed = eventually(|| async {
        let list = pods
            .list(&ListParams::default().labels("app=sim"))
            .await
            .ok()?;
        let running: Vec<String> = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .map(node_of)
            .collect();
        (running.len() == 4).then_some(running)
    })
    .await;
    assert!(
        placed.iter().all(|n| n.starts_with("vnest-sim")),
        "{placed:?}"
    );
    assert!(
        placed.iter().any(|n| n == "vnest-sim1") && placed.iter().any(|n| n == "vnest-sim2"),
        "{placed:?}"
    );

    let during = MachineFootprint::capture(&base);
    assert!(
        !during.processes.is_empty(),
        "the footprint check sees the host's processes"
    );
    assert!(
        during.netns.contains("vnest-node1"),
        "the footprint check sees node namespaces"
    );

    let _slot = host.stop().await;
    MachineFootprint::capture(&base).assert_nothing_left(&before, std::path::Path::new(&base));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_owner_died_is_swept_clean() {
    let slot = HostSlot::acquire().await;
    let before = MachineFootprint::capture("");
    let host = TestHost::start(slot, vec![NodeSpec::new(1)]).await;
    let pods: Api<Pod> = Api::namespaced(host.client(), "default");
    create_pod(&pods, "orphan", json!({}), &["sleep", "3600"]).await;
    wait_running(&pods, "orphan").await;

    // The owner "crashes": nothing is stopped, nothing unmounted.
    let (base, _slot) = host.abandon();
    let base_str = base.display().to_string();
    assert!(!MachineFootprint::capture(&base_str).processes.is_empty());

    vnest_devhost::sweep(&base);
    MachineFootprint::capture(&base_str).assert_nothing_left(&before, &base);
}

/// A policy admitting nothing to `web` cuts it off from a pod on another
/// node (`client`) and from one on its own node (`neighbour`: bridged
/// traffic, filtered only with `bridge-nf-call-iptables`); deleting the
/// policy lets both through again.
async fn network_policies_are_enforced(client: &kube::Client, pods: &Api<Pod>, web: &Pod) {
    create_pod(
        pods,
        "neighbour",
        json!({ "kubernetes.io/hostname": "vnest-node2" }),
        &["sleep", "3600"],
    )
    .await;
    assert_eq!(
        node_of(&wait_running(pods, "neighbour").await),
        "vnest-node2"
    );
    let web_ip = web.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let reaches = |from: &'static str| {
        let request = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {web_ip} 8080");
        async move {
            exec(pods, from, &["sh", "-c", &request])
                .await
                .contains("hello-from-web")
        }
    };
    for from in ["client", "neighbour"] {
        eventually(|| async { reaches(from).await.then_some(()) }).await;
    }

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), NS);
    let deny: NetworkPolicy = serde_json::from_value(json!({
        "metadata": { "name": "web-deny-all" },
        "spec": { "podSelector": { "matchLabels": { "app": "web" } }, "policyTypes": ["Ingress"] },
    }))
    .unwrap();
    policies
        .create(&PostParams::default(), &deny)
        .await
        .unwrap();
    for from in ["client", "neighbour"] {
        eventually(|| async { (!reaches(from).await).then_some(()) }).await;
    }
    // Still cut off a moment later: the cut was the policy, not a hiccup.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for from in ["client", "neighbour"] {
        assert!(
            !reaches(from).await,
            "{from} reached web through the deny policy"
        );
    }

    policies
        .delete("web-deny-all", &Default::default())
        .await
        .unwrap();
    for from in ["client", "neighbour"] {
        eventually(|| async { reaches(from).await.then_some(()) }).await;
    }
}

async fn create_pod(pods: &Api<Pod>, name: &str, node_selector: serde_json::Value, args: &[&str]) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "nodeSelector": node_selector,
            "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": name, "image": BUSYBOX_IMAGE, "imagePullPolicy": "Never", "args": args }],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
}

async fn wait_running(pods: &Api<Pod>, name: &str) -> Pod {
    eventually(|| async {
        let pod = pods.get(name).await.ok()?;
        let phase = pod.status.as_ref()?.phase.clone()?;
        (phase == "Running").then_some(pod)
    })
    .await
}

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

async fn exec(pods: &Api<Pod>, name: &str, command: &[&str]) -> String {
    let params = AttachParams::default().stderr(false);
    let Ok(mut process) = pods.exec(name, command.iter().copied(), &params).await else {
        return String::new();
    };
    let mut out = String::new();
    if let Some(mut stdout) = process.stdout() {
        use tokio::io::AsyncReadExt;
        let _ = stdout.read_to_string(&mut out).await;
    }
    let _ = process.join().await;
    out
}

/// Retries `probe` for up to two minutes.
async fn eventually<T, F, Fut>(mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..240 {
        if let Some(value) = probe().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("condition not met within two minutes");
}
