//! The supervisor end to end on a real host (vnest-devhost: real kubelets,
//! containerd, kube-proxy, CoreDNS): installed with `kubectl apply -k
//! manifests/` from vnest's image, it turns VirtualClusters into tenant
//! control planes whose kubeconfig plain kubectl uses; two tenants share
//! nothing (neither's credentials open the other's apiserver or etcd);
//! pause keeps the data; a restart of the supervisor regenerates nothing;
//! refused specs say why and leave nothing; TTL expiry and deletion remove
//! every host object.
//!
//! Needs root and the packages of tools/host/install-prerequisites.sh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use vnest_api::host_copies::host_name;
use vnest_api::host_names::{HostNamespaceRole, host_namespace, labels};
use vnest_api::{Phase, PodScheduler, VirtualCluster};
use vnest_tests::{HostSlot, TestHost, kubectl, upstream_binaries};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_clusters_become_isolated_tenant_control_planes_and_leave_nothing_behind() {
    let slot = HostSlot::acquire().await;
    // Pool a's node limits every pod to PIDS processes; pool b's keeps the
    // default (4096).
    let mut nodes = two_pools();
    nodes[0].pod_pids_limit = PIDS;
    let host = TestHost::start_for_vnest(slot, nodes, vnest_tests::vnest_image_binaries()).await;
    let client = host.client();
    let admin = host.kubeconfig();
    let work = tempfile::tempdir().unwrap();

    // Install exactly as the docs say.
    install(&client, &admin).await;
    create_namespace(&client, TENANTS).await;

    // A spec the schema refuses never reaches the supervisor.
    let bad = work.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: vnest.dev/v1alpha1\nkind: VirtualCluster\nmetadata: {name: bad, namespace: tenants}\n\
         spec: {nodePool: {nodeSelector: {vnest.dev/pool: a}}, datastore: {etcd: {replicas: 2}}}\n",
    )
    .unwrap();
    let (ok, _, err) = kubectl(&admin, &["apply", "-f", &bad.display().to_string()]);
    assert!(!ok && err.contains("must be 1, 3 or 5"), "{err}");
    std::fs::write(
        &bad,
        "apiVersion: vnest.dev/v1alpha1\nkind: VirtualCluster\nmetadata: {name: bad, namespace: tenants}\n\
         spec: {nodePool: {mode: Shared, acceptSharedKernel: true, scheduler: Tenant, nodeSelector: {vnest.dev/pool: a}}}\n",
    )
    .unwrap();
    let (ok, _, err) = kubectl(&admin, &["apply", "-f", &bad.display().to_string()]);
    assert!(!ok && err.contains("needs a Dedicated node pool"), "{err}");

    let vcs: Api<VirtualCluster> = Api::namespaced(client.clone(), TENANTS);
    // Both ask for a PID limit: a's pool holds it, b's does not.
    // b's pods are bound by a scheduler of its own.
    for (name, pool, pid_limit, scheduler) in [
        ("team-a", "a", PIDS, PodScheduler::Host),
        ("team-b", "b", 100, PodScheduler::Tenant),
    ] {
        let mut vc = virtual_cluster(name, pool);
        vc.spec.isolation.pid_limit = Some(i64::from(pid_limit));
        vc.spec.node_pool.scheduler = scheduler;
        vcs.create(&PostParams::default(), &vc).await.unwrap();
    }
    // A spec the supervisor refuses: reported, nothing created.
    let mut protected = virtual_cluster("sneaky", "a");
    protected.spec.control_plane.extra_api_server_args =
        vec!["--authorization-mode=AlwaysAllow".into()];
    vcs.create(&PostParams::default(), &protected)
        .await
        .unwrap();
    // An ephemeral one, gone by itself.
    let mut ephemeral = virtual_cluster("ephemeral", "a");
    ephemeral.spec.ttl = Some("20s".into());
    vcs.create(&PostParams::default(), &ephemeral)
        .await
        .unwrap();

    // A control plane that cannot be placed says why.
    let mut nowhere = virtual_cluster("nowhere", "a");
    nowhere.spec.control_plane.node_selector =
        [("vnest.dev/pool".to_owned(), "none".to_owned())].into();
    vcs.create(&PostParams::default(), &nowhere).await.unwrap();

    let sneaky = wait_for_phase(&vcs, "sneaky", Phase::Failed, &admin).await;
    let ready = condition(&sneaky, "Ready");
    assert_eq!(ready.reason, "ProtectedFlag");
    assert!(
        ready.message.contains("authorization-mode"),
        "{}",
        ready.message
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(
        namespaces
            .get_opt(&host_namespace(
                TENANTS,
                "sneaky",
                HostNamespaceRole::ControlPlane
            ))
            .await
            .unwrap()
            .is_none(),
        "a refused spec is never half-applied"
    );

    let message = wait_until("nowhere says why it waits", READY_TIMEOUT, || async {
        let vc = vcs.get("nowhere").await.ok()?;
        let status = vc.status?;
        let datastore = status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Datastore")?;
        datastore
            .message
            .contains("cannot be scheduled")
            .then_some(datastore.message)
    })
    .await;
    assert!(message.contains("node affinity/selector"), "{message}");

    let a = wait_for_phase(&vcs, "team-a", Phase::Ready, &admin).await;
    let b = wait_for_phase(&vcs, "team-b", Phase::Ready, &admin).await;
    for vc in [&a, &b] {
        let status = vc.status.as_ref().unwrap();
        for type_ in [
            "Certificates",
            "Datastore",
            "APIServer",
            "ControllerManager",
            "ClusterDNS",
            "Syncer",
            "Ready",
        ] {
            let c = condition(vc, type_);
            assert!(
                !c.reason.is_empty() && !c.message.is_empty(),
                "{type_}: {c:?}"
            );
        }
        assert_eq!(condition(vc, "Syncer").reason, "Running");
        let has_scheduler = status.conditions.iter().any(|c| c.type_ == "Scheduler");
        assert_eq!(
            has_scheduler,
            vc.spec.node_pool.scheduler == PodScheduler::Tenant
        );
        assert_eq!(status.observed_generation, vc.metadata.generation);
        assert_eq!(
            status.version.as_deref(),
            Some(vnest_api::DEFAULT_KUBERNETES_VERSION)
        );
        assert!(
            status
                .endpoint
                .as_deref()
                .unwrap()
                .starts_with("https://172.30.0.")
        );
    }
    syncers_queue_apart_from_the_host_and_from_each_other(&client, &admin, [&a, &b]).await;
    // a's pool (a) is also the pool of the other clusters made above; b's
    // has its node to itself.
    let shared = condition(&a, "NodePool");
    assert_eq!(shared.reason, "NodesShared", "{shared:?}");
    assert!(
        shared.message.contains("tenants/sneaky (vnest-node1)"),
        "{shared:?}"
    );
    assert_eq!(condition(&b, "NodePool").reason, "Dedicated");
    let held = condition(&a, "PIDLimit");
    assert_eq!(held.reason, "Enforced", "{held:?}");
    let b_limit = wait_until("b's PIDLimit names its node", READY_TIMEOUT, || async {
        let c = condition(&vcs.get("team-b").await.ok()?, "PIDLimit");
        (c.reason == "NotEnforced").then_some(c)
    })
    .await;
    assert!(
        b_limit.message.contains("vnest-node2 (podPidsLimit 4096)"),
        "{b_limit:?}"
    );
    let (ok, table, err) = kubectl(&admin, &["get", "vc", "-n", TENANTS]);
    assert!(
        ok && table.contains("team-a") && table.contains("Ready"),
        "{table}{err}"
    );

    // Plain kubectl with the tenant's kubeconfig.
    let kubeconfig_a = tenant_kubeconfig(&client, &a, work.path()).await;
    let kubeconfig_b = tenant_kubeconfig(&client, &b, work.path()).await;
    let (ok, out, err) = kubectl(&kubeconfig_a, &["create", "namespace", "made-in-a"]);
    assert!(ok, "{out}{err}");
    let (ok, listed, err) = kubectl(&kubeconfig_a, &["get", "namespaces", "-o", "name"]);
    assert!(
        ok && listed.contains("namespace/made-in-a"),
        "{listed}{err}"
    );
    let (_, listed_b, _) = kubectl(&kubeconfig_b, &["get", "namespaces", "-o", "name"]);
    assert!(
        !listed_b.contains("made-in-a"),
        "tenants share no data: {listed_b}"
    );

    // Neither tenant's credentials open the other's apiserver or etcd.
    let b_endpoint = b.status.as_ref().unwrap().endpoint.clone().unwrap();
    apiserver_refuses_foreign_credentials(&kubeconfig_a, &b_endpoint).await;
    etcd_accepts_only_its_own_clients(&client, &kubeconfig_a, work.path()).await;
    network_policies_hold(&client, &admin, [&kubeconfig_a, &kubeconfig_b], work.path()).await;
    tenant_policies_narrow_and_never_widen(&client, [&kubeconfig_a, &kubeconfig_b], work.path())
        .await;
    a_tenant_scheduler_preempts_by_the_tenants_priorities(&client, &kubeconfig_b, work.path())
        .await;
    a_fork_bomb_stops_at_the_pid_limit(&client, &kubeconfig_a, work.path()).await;

    // The tenant's own DNS is installed inside it.
    wait_until(
        "a's CoreDNS is installed",
        Duration::from_secs(60),
        || async {
            let vc = vcs.get("team-a").await.ok()?;
            let dns = vc
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "ClusterDNS")?;
            (dns.reason == "Installed").then_some(())
        },
    )
    .await;
    let (ok, ip, err) = kubectl(
        &kubeconfig_a,
        &[
            "get",
            "service",
            "-n",
            "kube-system",
            "kube-dns",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    );
    // The tenant's kube-dns takes an address its apiserver picks (the
    // syncer gives pods its host copy's address).
    assert!(
        ok && ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "kube-dns has a ClusterIP: {ip}{err}"
    );

    // Each tenant's syncer identity has rights in its own workloads
    // namespace and nowhere else.
    let syncer_a = format!(
        "system:serviceaccount:{}:vnest-syncer",
        host_namespace(TENANTS, "team-a", HostNamespaceRole::ControlPlane)
    );
    for (namespace, allowed) in [
        (
            host_namespace(TENANTS, "team-a", HostNamespaceRole::Workloads),
            "yes",
        ),
        (
            host_namespace(TENANTS, "team-b", HostNamespaceRole::Workloads),
            "no",
        ),
        (
            host_namespace(TENANTS, "team-a", HostNamespaceRole::ControlPlane),
            "no",
        ),
        ("default".to_owned(), "no"),
    ] {
        let (_, answer, _) = kubectl(
            &admin,
            &[
                "auth", "can-i", "create", "pods", "-n", &namespace, "--as", &syncer_a,
            ],
        );
        assert_eq!(
            answer.trim(),
            allowed,
            "a's syncer creating pods in {namespace}"
        );
    }

    // The isolation layers are on the host.
    let wl = host_namespace(TENANTS, "team-a", HostNamespaceRole::Workloads);
    let cp = host_namespace(TENANTS, "team-a", HostNamespaceRole::ControlPlane);
    let wl_ns = namespaces.get(&wl).await.unwrap();
    assert_eq!(
        wl_ns.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &cp);
    let names: Vec<String> = policies
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert!(names.contains(&"vnest-etcd".to_owned()), "{names:?}");
    a_layer_switched_off_leaves_the_host(&vcs, &client, &wl).await;
    control_plane_placement_is_reported(&vcs, &client, &cp).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &cp);
    // Only the syncer (vnest's own, with rights in its workloads namespace
    // alone) holds a host token.
    for pod in pods.list(&ListParams::default()).await.unwrap() {
        let component = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("vnest.dev/component").cloned())
            .unwrap_or_default();
        let spec = pod.spec.unwrap();
        if component == "syncer" {
            assert_eq!(spec.service_account_name.as_deref(), Some("vnest-syncer"));
            continue;
        }
        let mounts_token = spec.volumes.unwrap_or_default().iter().any(|v| {
            v.projected.as_ref().is_some_and(|p| {
                p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.service_account_token.is_some())
            })
        });
        assert!(!mounts_token, "no host token in {:?}", pod.metadata.name);
    }

    // A supervisor restart regenerates nothing and converges.
    let pki_before = pki_secret(&client, &cp).await;
    let supervisor_pods: Api<Pod> = Api::namespaced(client.clone(), "vnest-system");
    supervisor_pods
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();

    // A spec change rolls out: a second apiserver replica.
    vcs.patch(
        "team-b",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "controlPlane": { "replicas": 2 } } })),
    )
    .await
    .unwrap();
    let b = wait_for_phase(&vcs, "team-b", Phase::Ready, &admin).await;
    assert!(
        condition(&b, "APIServer").message.starts_with("2/2"),
        "{:?}",
        condition(&b, "APIServer")
    );

    // Pause keeps the data; resume brings it back.
    set_paused(&vcs, "team-a", true).await;
    wait_for_phase(&vcs, "team-a", Phase::Paused, &admin).await;
    wait_until(
        "team-a's control-plane pods are gone",
        READY_TIMEOUT,
        || async {
            pods.list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
    set_paused(&vcs, "team-a", false).await;
    wait_for_phase(&vcs, "team-a", Phase::Ready, &admin).await;
    let (ok, listed, err) = kubectl(&kubeconfig_a, &["get", "namespaces", "-o", "name"]);
    assert!(
        ok && listed.contains("namespace/made-in-a"),
        "data survives a pause: {listed}{err}"
    );
    assert_eq!(
        pki_before,
        pki_secret(&client, &cp).await,
        "certificates are never regenerated needlessly"
    );

    // The ephemeral cluster expired by itself.
    wait_until("the ephemeral cluster expired", READY_TIMEOUT, || async {
        vcs.get_opt("ephemeral").await.ok()?.is_none().then_some(())
    })
    .await;

    // Deleting removes every host object the tenants had, and empties the
    // etcd volumes the host keeps (the dev host's class is Retain).
    let volumes: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client.clone());
    let etcd_volumes: Vec<std::path::PathBuf> = volumes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|pv| {
            let claim = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
            claim.and_then(|c| c.namespace.as_deref()) == Some(cp.as_str())
        })
        .filter_map(|pv| Some(pv.spec?.local?.path.into()))
        .collect();
    assert!(!etcd_volumes.is_empty(), "team-a's etcd has a local volume");
    assert!(
        etcd_volumes
            .iter()
            .all(|dir| std::fs::read_dir(dir).unwrap().count() > 0),
        "etcd wrote its data: {etcd_volumes:?}"
    );
    for name in ["team-a", "team-b", "sneaky", "nowhere"] {
        vcs.delete(name, &DeleteParams::default()).await.unwrap();
    }
    wait_until("every VirtualCluster is gone", READY_TIMEOUT, || async {
        vcs.list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    let ours = ListParams::default().labels(labels::VIRTUAL_CLUSTER_NAMESPACE);
    wait_until(
        "no host object of a tenant is left",
        Duration::from_secs(60),
        || async {
            let left_namespaces = namespaces.list(&ours).await.ok()?.items.len();
            let secrets: Api<Secret> = Api::namespaced(client.clone(), TENANTS);
            let left_secrets = secrets.list(&ours).await.ok()?.items.len();
            // Cluster-scoped: they do not go with the namespaces.
            let schemas: Api<FlowSchema> = Api::all(client.clone());
            let left_schemas = schemas.list(&ours).await.ok()?.items.len();
            let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
            let left_bindings = bindings.list(&ours).await.ok()?.items.len();
            (left_namespaces + left_secrets + left_schemas + left_bindings == 0).then_some(())
        },
    )
    .await;
    for dir in &etcd_volumes {
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{} still holds {left:?}", dir.display());
    }

    host.stop().await;
}

/// Each tenant's syncer is classified by a FlowSchema of its own into the
/// `vnest-syncers` priority level: the host's apiserver says so in the
/// response headers API Priority and Fairness adds to every request.
async fn syncers_queue_apart_from_the_host_and_from_each_other(
    client: &Client,
    admin: &Path,
    tenants: [&VirtualCluster; 2],
) {
    let levels: Api<PriorityLevelConfiguration> = Api::all(client.clone());
    let level = levels.get("vnest-syncers").await.unwrap().metadata.uid;
    let schemas: Api<FlowSchema> = Api::all(client.clone());
    let mut seen = Vec::new();
    for vc in tenants {
        let name = vc.metadata.name.as_deref().unwrap();
        let cp = host_namespace(TENANTS, name, HostNamespaceRole::ControlPlane);
        let wl = host_namespace(TENANTS, name, HostNamespaceRole::Workloads);
        let schema = wait_until(
            &format!("{name}'s syncer has its FlowSchema"),
            Duration::from_secs(60),
            || async {
                let schema = schemas
                    .get_opt(&format!("vnest-syncer-{cp}"))
                    .await
                    .ok()??;
                // The level exists: the schema is not dangling.
                let dangling = schema
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .any(|c| c.type_ == "Dangling" && c.status.as_deref() == Some("True"));
                (!dangling).then_some(schema)
            },
        )
        .await;
        let syncer = syncer_identity(client, admin, &cp).await;
        let request = http::Request::get(format!("/api/v1/namespaces/{wl}/pods?limit=1"))
            .body(Vec::new())
            .unwrap();
        let response = syncer
            .send(request.map(kube::client::Body::from))
            .await
            .unwrap();
        assert!(response.status().is_success(), "{:?}", response.status());
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(
            header("X-Kubernetes-PF-PriorityLevel-UID"),
            level,
            "{name}'s syncer is served at the vnest-syncers level"
        );
        assert_eq!(
            header("X-Kubernetes-PF-FlowSchema-UID"),
            schema.metadata.uid,
            "{name}'s syncer is classified by its own FlowSchema"
        );
        seen.push(schema.metadata.uid);
    }
    assert_ne!(
        seen[0], seen[1],
        "each tenant's syncer has a schema of its own"
    );
}

/// The process limit of pool a's node (the kubelet's podPidsLimit).
const PIDS: u32 = 256;

/// A fork bomb in a tenant pod (bounded: it starts sleepers until fork
/// fails or 1000 are up) stops at the node's per-pod limit, and the node
/// still starts another pod, which answers.
async fn a_fork_bomb_stops_at_the_pid_limit(client: &Client, kubeconfig: &Path, dir: &Path) {
    // The inner shell forks sleepers until fork fails (busybox sh then
    // exits), the outer one stays without forking again (exec).
    let script = "sh -c 'i=0; while [ $i -lt 1000 ]; do sleep 600 & i=$((i+1)); echo FORKED $i; done'; \
        echo BOMB-STOPPED; exec sleep 600";
    let bomb = probe_pod(
        "bomb",
        Some("default"),
        json!({ "vnest.dev/pool": "a" }),
        script,
    );
    let file = dir.join("bomb.json");
    std::fs::write(&file, serde_json::to_string(&bomb).unwrap()).unwrap();
    let (ok, out, err) = kubectl(kubeconfig, &["apply", "-f", &file.display().to_string()]);
    assert!(ok, "{out}{err}");
    let logs = wait_until("the fork bomb hit its limit", READY_TIMEOUT, || async {
        let (_, logs, _) = kubectl(kubeconfig, &["logs", "bomb"]);
        logs.contains("BOMB-STOPPED").then_some(logs)
    })
    .await;
    assert!(logs.contains("can't fork"), "fork failed: {logs}");
    let forked: u32 = logs
        .lines()
        .filter_map(|l| l.strip_prefix("FORKED "))
        .filter_map(|n| n.trim().parse().ok())
        .max()
        .unwrap_or(0);
    eprintln!("the fork bomb started {forked} processes under a limit of {PIDS}");
    assert!(
        (PIDS / 2..PIDS).contains(&forked),
        "{forked} processes: the per-pod limit {PIDS} did not stop the bomb"
    );

    // While the bomb holds its processes, the same node starts a pod of
    // another owner (the host's own), which answers.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let neighbour = probe_pod(
        "neighbour",
        Some("default"),
        json!({ "vnest.dev/pool": "a" }),
        "echo NEIGHBOUR-ALIVE; sleep 600",
    );
    pods.create(&PostParams::default(), &neighbour)
        .await
        .unwrap();
    wait_until(
        "a neighbour starts beside the bomb",
        READY_TIMEOUT,
        || async {
            let text = pods.logs("neighbour", &Default::default()).await.ok()?;
            text.contains("NEIGHBOUR-ALIVE").then_some(())
        },
    )
    .await;
    let (ok, _, _) = kubectl(kubeconfig, &["logs", "bomb"]);
    assert!(ok, "the bomb's pod still answers through the tenant");
    pods.delete("neighbour", &DeleteParams::default().grace_period(1))
        .await
        .unwrap();
    kubectl(kubeconfig, &["delete", "pod", "bomb", "--grace-period=1"]);
}

/// `isolation.networkPolicy: false` deletes the workloads' policy from the
/// host (a layer switched off takes effect); switching it on brings it back.
async fn a_layer_switched_off_leaves_the_host(
    vcs: &Api<VirtualCluster>,
    client: &Client,
    wl: &str,
) {
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), wl);
    for on in [false, true] {
        vcs.patch(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "isolation": { "networkPolicy": on } } })),
        )
        .await
        .unwrap();
        wait_until(
            &format!("the workloads' NetworkPolicy exists: {on}"),
            Duration::from_secs(60),
            || async {
                let exists = policies
                    .get_opt(vnest_api::pod_network::WORKLOADS_EGRESS)
                    .await
                    .ok()?
                    .is_some();
                (exists == on).then_some(())
            },
        )
        .await;
    }
}

/// team-a's `ControlPlanePlacement` condition tells where its control
/// plane runs, and names team-b when a control-plane pod runs on team-b's
/// pool node (vnest-node2): a container escape there would reach team-a's
/// CA keys.
async fn control_plane_placement_is_reported(vcs: &Api<VirtualCluster>, client: &Client, cp: &str) {
    let condition = wait_until(
        "team-a reports where its control plane runs",
        Duration::from_secs(60),
        || async {
            let vc = vcs.get("team-a").await.ok()?;
            vc.status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == vnest_api::conditions::CONTROL_PLANE_PLACEMENT)
        },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), cp);
    let nodes: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.spec?.node_name)
        .collect();
    eprintln!(
        "team-a's control plane on {nodes:?}: {} {}",
        condition.reason, condition.message
    );
    if nodes.iter().any(|n| n == "vnest-node2") {
        assert_eq!(condition.status, "False", "{condition:?}");
        assert_eq!(condition.reason, "OnTenantNodes");
        assert!(
            condition.message.contains("tenants/team-b (vnest-node2)"),
            "{condition:?}"
        );
    }
    for node in &nodes {
        assert!(
            condition.message.contains(node.as_str()),
            "{node}: {condition:?}"
        );
    }
}

async fn set_paused(vcs: &Api<VirtualCluster>, name: &str, paused: bool) {
    vcs.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "paused": paused } })),
    )
    .await
    .unwrap();
}

async fn pki_secret(client: &Client, namespace: &str) -> Vec<u8> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get("vnest-pki").await.unwrap();
    secret.data.unwrap()["apiserver.crt"].0.clone()
}

/// Where a probe runs: a tenant's own pod (made with its kubeconfig, run by
/// its syncer), a pod in a tenant's control-plane namespace (a compromised
/// component), a pod of the host's own (no policy applies to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vantage {
    TenantA,
    TenantB,
    ControlPlaneA,
    Host,
}

/// One connection attempt and whether NetworkPolicy must let it through.
struct Reach {
    from: Vantage,
    what: String,
    host: String,
    port: i32,
    open: bool,
}

fn reach(from: Vantage, what: &str, host: &str, port: i32, open: bool) -> Reach {
    Reach {
        from,
        what: what.to_owned(),
        host: host.to_owned(),
        port,
        open,
    }
}

/// The probe pods' script, `PROBE <what> open|closed` per check: the
/// paths that must work first, each retried for up to 30 s (an enforcer
/// refuses a new pod's traffic until it has installed the pod's rules),
/// then the ones that must not, once each.
fn probe_script(checks: &[&Reach], dns_name: Option<&str>) -> String {
    let mut script = String::new();
    let retried = |test: String, what: &str| {
        format!(
            "n=0; until {test} || [ $n -ge 30 ]; do n=$((n+1)); sleep 1; done; if [ $n -lt 30 ]; then echo 'PROBE {what} open'; else echo 'PROBE {what} closed'; fi\n"
        )
    };
    let connect = |c: &Reach| format!("nc -w 3 {} {} </dev/null >/dev/null 2>&1", c.host, c.port);
    if let Some(name) = dns_name {
        script.push_str(&retried(format!("nslookup {name} >/dev/null 2>&1"), "dns"));
    }
    for check in checks.iter().filter(|c| c.open) {
        script.push_str(&retried(connect(check), &check.what));
    }
    for check in checks.iter().filter(|c| !c.open) {
        script.push_str(&format!(
            "if {}; then echo 'PROBE {} open'; else echo 'PROBE {} closed'; fi\n",
            connect(check),
            check.what,
            check.what
        ));
    }
    script.push_str("echo PROBE-DONE\n");
    script
}

fn probe_pod(
    name: &str,
    namespace: Option<&str>,
    node_selector: serde_json::Value,
    script: &str,
) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": namespace, "labels": { "app": name } },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "nodeSelector": node_selector,
            "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "probe",
                "image": vnest_devhost::images::CLIENTS_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } },
            }],
        },
    }))
    .unwrap()
}

/// A web server (busybox httpd on 8080) in a tenant, made with its
/// kubeconfig; returns its pod address.
async fn tenant_web(kubeconfig: &Path, dir: &Path, pool: &str) -> String {
    tenant_server(kubeconfig, dir, "default", "web", pool).await
}

/// A web server pod `namespace/name` (label `app: name`) in a tenant;
/// returns its pod address once it runs.
async fn tenant_server(
    kubeconfig: &Path,
    dir: &Path,
    namespace: &str,
    name: &str,
    pool: &str,
) -> String {
    let pod = serde_json::to_string(&json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": namespace, "labels": { "app": name } },
        "spec": {
            "nodeSelector": { "vnest.dev/pool": pool },
            "terminationGracePeriodSeconds": 1,
            "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "web",
                "image": vnest_devhost::images::BUSYBOX_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", "echo hello > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"],
                "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } },
            }],
        },
    }))
    .unwrap();
    let file = dir.join(format!("server-{pool}-{namespace}-{name}.json"));
    std::fs::write(&file, pod).unwrap();
    let (ok, out, err) = kubectl(kubeconfig, &["apply", "-f", &file.display().to_string()]);
    assert!(ok, "{out}{err}");
    wait_until(
        &format!("server {namespace}/{name} of pool {pool} runs"),
        READY_TIMEOUT,
        || async {
            let (ok, ip, _) = kubectl(
                kubeconfig,
                &[
                    "get",
                    "pod",
                    "-n",
                    namespace,
                    name,
                    "-o",
                    "jsonpath={.status.phase} {.status.podIP}",
                ],
            );
            let (phase, ip) = ip.split_once(' ')?;
            (ok && phase == "Running" && !ip.is_empty()).then(|| ip.to_owned())
        },
    )
    .await
}

/// team-b's pods are bound by a scheduler of its own, as in a cluster of
/// its own: when an extended resource team-b declared on its Node runs
/// out, its PriorityClasses decide which pod runs (a lower one is
/// preempted); a pod that fits nowhere never reaches the host; and host
/// pods ask the host's node for nothing it lacks.
async fn a_tenant_scheduler_preempts_by_the_tenants_priorities(
    client: &Client,
    kubeconfig: &Path,
    dir: &Path,
) {
    const NODE: &str = "vnest-node2";
    const SLOTS: &str = "example.com/slots";
    let patch_node_status = |type_: &str, patch: serde_json::Value| {
        let (ok, out, err) = kubectl(
            kubeconfig,
            &[
                "patch",
                "node",
                NODE,
                "--subresource=status",
                &format!("--type={type_}"),
                "-p",
                &patch.to_string(),
            ],
        );
        assert!(ok, "{out}{err}");
    };
    patch_node_status(
        "merge",
        json!({ "status": { "capacity": { SLOTS: "1" }, "allocatable": { SLOTS: "1" } } }),
    );
    for (name, value) in [("low", 1), ("high", 1000)] {
        let class = json!({ "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": { "name": name }, "value": value });
        tenant_apply(kubeconfig, dir, &format!("class-{name}.json"), class).await;
    }
    let pod = |name: &str, priority: &str, slots: u32| {
        let wants = json!({ SLOTS: slots.to_string() });
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": name, "namespace": "default" },
            "spec": {
                "priorityClassName": priority,
                "terminationGracePeriodSeconds": 1,
                "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
                "containers": [{
                    "name": "c",
                    "image": vnest_devhost::images::BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                    "resources": { "requests": wants, "limits": wants },
                    "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } },
                }],
            },
        })
    };
    let phase = |name: &str| {
        let (ok, out, err) = kubectl(
            kubeconfig,
            &[
                "get",
                "pod",
                name,
                "--ignore-not-found",
                "-o",
                "jsonpath={.status.phase}/{.spec.nodeName}",
            ],
        );
        assert!(ok, "{err}");
        out
    };
    tenant_apply(kubeconfig, dir, "low.json", pod("low", "low", 1)).await;
    wait_until("the low-priority pod runs", READY_TIMEOUT, || async {
        (phase("low") == format!("Running/{NODE}")).then_some(())
    })
    .await;
    tenant_apply(kubeconfig, dir, "high.json", pod("high", "high", 1)).await;
    tenant_apply(kubeconfig, dir, "greedy.json", pod("greedy", "high", 2)).await;
    wait_until(
        "the high-priority pod runs in the low one's place",
        READY_TIMEOUT,
        || async {
            (phase("low").is_empty() && phase("high") == format!("Running/{NODE}")).then_some(())
        },
    )
    .await;

    let host_pods: Api<Pod> = Api::namespaced(
        client.clone(),
        &host_namespace(TENANTS, "team-b", HostNamespaceRole::Workloads),
    );
    let high = host_pods.get(&host_name("default", "high")).await.unwrap();
    let spec = high.spec.unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(NODE));
    let resources = spec.containers[0].resources.clone().unwrap_or_default();
    let asked = resources
        .requests
        .iter()
        .chain(resources.limits.iter())
        .flatten();
    assert!(
        asked.clone().all(|(name, _)| name != SLOTS),
        "the host node is asked only for what it has: {resources:?}"
    );
    // Two slots are nowhere: the tenant's scheduler says so, and the pod
    // never reaches the host.
    let why = wait_until("greedy is found unschedulable", READY_TIMEOUT, || async {
        let (_, messages, _) = kubectl(
            kubeconfig,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=greedy,reason=FailedScheduling",
                "-o",
                "jsonpath={.items[*].message}",
            ],
        );
        (!messages.is_empty()).then_some(messages)
    })
    .await;
    assert!(why.contains(&format!("Insufficient {SLOTS}")), "{why}");
    assert_eq!(phase("greedy"), "Pending/");
    assert!(
        host_pods
            .get_opt(&host_name("default", "greedy"))
            .await
            .unwrap()
            .is_none()
    );

    let (ok, out, err) = kubectl(
        kubeconfig,
        &["delete", "pod", "high", "greedy", "--wait=false"],
    );
    assert!(ok, "{out}{err}");
    patch_node_status(
        "json",
        json!([
            { "op": "remove", "path": "/status/capacity/example.com~1slots" },
            { "op": "remove", "path": "/status/allocatable/example.com~1slots" },
        ]),
    );
}

/// The first address and TCP port behind Service `namespace/name`.
async fn endpoint(client: &Client, namespace: &str, name: &str) -> (String, i32) {
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(client.clone(), namespace);
    let selector = format!("kubernetes.io/service-name={name}");
    let slice = slices
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no EndpointSlice of {namespace}/{name}"));
    let port = slice
        .ports
        .iter()
        .flatten()
        .find(|p| p.protocol.as_deref() == Some("TCP"))
        .and_then(|p| p.port)
        .unwrap();
    let address = slice.endpoints.unwrap()[0].addresses[0].clone();
    (address, port)
}

/// The lines `PROBE <what> <result>` a finished probe printed, by `what`.
fn probe_results(logs: &str) -> std::collections::BTreeMap<String, bool> {
    logs.lines()
        .filter_map(|l| l.strip_prefix("PROBE "))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(what, result)| (what.to_owned(), result == "open"))
        .collect()
}

/// vnest's NetworkPolicies, proven by connections on a host that enforces
/// them (kube-router's firewall on every node), with two tenants. Every
/// closed path is shown open from somewhere it is allowed (or is known to
/// listen: a Ready tenant's etcd, the syncer's and supervisor's probed
/// ports), so "closed" means the policy, not an empty port.
async fn network_policies_hold(client: &Client, admin: &Path, kubeconfigs: [&Path; 2], dir: &Path) {
    use Vantage::*;
    let [kubeconfig_a, kubeconfig_b] = kubeconfigs;
    let pod_ip = |namespace: String, selector: &'static str| {
        let client = client.clone();
        async move {
            let pods: Api<Pod> = Api::namespaced(client, &namespace);
            let list = pods
                .list(&ListParams::default().labels(selector))
                .await
                .unwrap();
            list.items
                .into_iter()
                .find_map(|p| p.status?.pod_ip)
                .unwrap_or_else(|| panic!("no pod {selector} in {namespace}"))
        }
    };
    let service_ip = |namespace: String, name: &'static str| {
        let client = client.clone();
        async move {
            let services: Api<k8s_openapi::api::core::v1::Service> =
                Api::namespaced(client, &namespace);
            services
                .get(name)
                .await
                .unwrap()
                .spec
                .unwrap()
                .cluster_ip
                .unwrap()
        }
    };
    let cp = |t: &str| host_namespace(TENANTS, t, HostNamespaceRole::ControlPlane);
    let a_apiserver = pod_ip(cp("team-a"), "vnest.dev/component=apiserver").await;
    let a_apiserver_svc = service_ip(cp("team-a"), "apiserver").await;
    let a_etcd = pod_ip(cp("team-a"), "vnest.dev/component=etcd").await;
    let a_syncer = pod_ip(cp("team-a"), "vnest.dev/component=syncer").await;
    let b_apiserver = pod_ip(cp("team-b"), "vnest.dev/component=apiserver").await;
    let b_apiserver_svc = service_ip(cp("team-b"), "apiserver").await;
    let b_etcd = pod_ip(cp("team-b"), "vnest.dev/component=etcd").await;
    let b_syncer = pod_ip(cp("team-b"), "vnest.dev/component=syncer").await;
    let supervisor = pod_ip(
        "vnest-system".into(),
        "app.kubernetes.io/name=vnest-supervisor",
    )
    .await;
    let a_web = tenant_web(kubeconfig_a, dir, "a").await;
    let b_web = tenant_web(kubeconfig_b, dir, "b").await;
    // The host apiserver's own address and port, and the host's DNS pod.
    let (host_apiserver, host_port) = endpoint(client, "default", "kubernetes").await;
    let host_apiserver = host_apiserver.as_str();
    let host_apiserver_svc = "10.96.0.1";
    let (host_dns, dns_port) = endpoint(client, "kube-system", "kube-dns").await;
    let (node1, node2) = ("172.30.0.11", "172.30.0.12");
    let checks = vec![
        // A tenant pod: its own apiserver, pods and DNS, nothing else.
        reach(
            TenantA,
            "own-apiserver-service",
            &a_apiserver_svc,
            443,
            true,
        ),
        reach(
            TenantA,
            "own-apiserver-by-name",
            "kubernetes.default.svc.cluster.local",
            443,
            true,
        ),
        reach(TenantA, "own-apiserver-pod", &a_apiserver, 6443, true),
        reach(TenantA, "own-pod", &a_web, 8080, true),
        reach(TenantA, "own-etcd", &a_etcd, 2379, false),
        reach(TenantA, "own-syncer-kubelet-proxy", &a_syncer, 10250, false),
        reach(TenantA, "own-syncer-metrics", &a_syncer, 8080, false),
        reach(TenantA, "other-tenant-pod", &b_web, 8080, false),
        reach(TenantA, "other-apiserver-pod", &b_apiserver, 6443, false),
        reach(
            TenantA,
            "other-apiserver-service",
            &b_apiserver_svc,
            443,
            false,
        ),
        reach(TenantA, "other-etcd", &b_etcd, 2379, false),
        reach(TenantA, "other-kubelet-proxy", &b_syncer, 10250, false),
        reach(
            TenantA,
            "host-apiserver-service",
            host_apiserver_svc,
            443,
            false,
        ),
        reach(
            TenantA,
            "host-apiserver-node",
            host_apiserver,
            host_port,
            false,
        ),
        reach(TenantA, "kubelet-own-node", node1, 10250, false),
        reach(TenantA, "kubelet-other-node", node2, 10250, false),
        reach(TenantA, "supervisor", &supervisor, 8080, false),
        reach(TenantA, "host-dns", &host_dns, dns_port, false),
        // The other tenant reaches what a may not: those ports listen.
        reach(TenantB, "own-pod", &b_web, 8080, true),
        reach(TenantB, "own-apiserver-pod", &b_apiserver, 6443, true),
        reach(
            TenantB,
            "own-apiserver-service",
            &b_apiserver_svc,
            443,
            true,
        ),
        reach(TenantB, "other-tenant-pod", &a_web, 8080, false),
        reach(TenantB, "other-apiserver-pod", &a_apiserver, 6443, false),
        // A compromised control-plane pod of a: its own apiserver, never
        // its etcd (only the apiserver), the host or the other tenant.
        reach(ControlPlaneA, "own-apiserver-pod", &a_apiserver, 6443, true),
        reach(ControlPlaneA, "own-etcd", &a_etcd, 2379, false),
        // Only its apiserver reaches the tenant's pods (webhooks, proxies).
        reach(ControlPlaneA, "own-tenant-pod", &a_web, 8080, false),
        reach(
            ControlPlaneA,
            "host-apiserver-node",
            host_apiserver,
            host_port,
            false,
        ),
        reach(
            ControlPlaneA,
            "host-apiserver-service",
            host_apiserver_svc,
            443,
            false,
        ),
        reach(ControlPlaneA, "kubelet", node2, 10250, false),
        // The control plane resolves host Service names (its etcd peers).
        reach(ControlPlaneA, "host-dns", &host_dns, dns_port, true),
        reach(
            ControlPlaneA,
            "other-apiserver-pod",
            &b_apiserver,
            6443,
            false,
        ),
        reach(ControlPlaneA, "other-etcd", &b_etcd, 2379, false),
        // A pod of the host's own, under no policy: the host's ports
        // listen; a tenant's control plane admits it no more than a tenant
        // (its apiserver takes node-port traffic from node addresses only).
        reach(Host, "host-apiserver-node", host_apiserver, host_port, true),
        reach(
            Host,
            "host-apiserver-service",
            host_apiserver_svc,
            443,
            true,
        ),
        reach(Host, "kubelet", node2, 10250, true),
        reach(Host, "host-dns", &host_dns, dns_port, true),
        reach(Host, "tenant-apiserver-pod", &a_apiserver, 6443, false),
        reach(Host, "tenant-etcd", &a_etcd, 2379, false),
    ];
    let of = |v: Vantage| checks.iter().filter(|c| c.from == v).collect::<Vec<_>>();

    // Tenant pods, made with the tenants' own kubeconfigs; their logs come
    // back through each tenant's kubelet proxy (apiserver -> syncer: an
    // allowed path of its own).
    let mut logs = Vec::new();
    for (vantage, kubeconfig, pool, dns) in [
        (
            TenantA,
            kubeconfig_a,
            "a",
            Some("kubernetes.default.svc.cluster.local"),
        ),
        (TenantB, kubeconfig_b, "b", None),
    ] {
        let pod = probe_pod(
            "probe",
            Some("default"),
            json!({ "vnest.dev/pool": pool }),
            &probe_script(&of(vantage), dns),
        );
        let file = dir.join(format!("probe-{pool}.json"));
        std::fs::write(&file, serde_json::to_string(&pod).unwrap()).unwrap();
        let (ok, out, err) = kubectl(kubeconfig, &["apply", "-f", &file.display().to_string()]);
        assert!(ok, "{out}{err}");
        let text = wait_until(
            &format!("{vantage:?}'s probe finished"),
            READY_TIMEOUT,
            || async {
                let (ok, text, _) = kubectl(kubeconfig, &["logs", "probe"]);
                (ok && text.contains("PROBE-DONE")).then_some(text)
            },
        )
        .await;
        logs.push((vantage, text));
    }
    // Pods placed on the host directly by the admin.
    for (vantage, namespace) in [(ControlPlaneA, cp("team-a")), (Host, "default".to_owned())] {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let name = format!("probe-{}", format!("{vantage:?}").to_lowercase());
        let pod = probe_pod(
            &name,
            Some(&namespace),
            json!({ "vnest.dev/pool": "a" }),
            &probe_script(&of(vantage), None),
        );
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let text = wait_until(
            &format!("{vantage:?}'s probe finished"),
            READY_TIMEOUT,
            || async {
                let text = pods.logs(&name, &Default::default()).await.ok()?;
                text.contains("PROBE-DONE").then_some(text)
            },
        )
        .await;
        pods.delete(&name, &DeleteParams::default()).await.unwrap();
        logs.push((vantage, text));
    }

    let mut wrong = Vec::new();
    for (vantage, text) in &logs {
        eprintln!("{vantage:?} probe:\n{text}");
        let results = probe_results(text);
        if let Some(dns) = results.get("dns") {
            assert!(dns, "{vantage:?} resolves names with its own DNS");
        }
        for check in of(*vantage) {
            match results.get(&check.what) {
                Some(open) if *open == check.open => {}
                got => wrong.push(format!(
                    "{vantage:?} -> {} ({}:{}): expected {}, got {got:?}",
                    check.what,
                    check.host,
                    check.port,
                    if check.open { "open" } else { "closed" }
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "NetworkPolicy does not hold:\n{}",
        wrong.join("\n")
    );
    // The web pods stay for the tenant policies' scenario.
    for kubeconfig in [kubeconfig_a, kubeconfig_b] {
        kubectl(kubeconfig, &["delete", "pod", "probe", "--grace-period=1"]);
    }
    let _ = admin;
}

/// Applies `manifest` (a JSON value) in a tenant with its kubeconfig.
async fn tenant_apply(kubeconfig: &Path, dir: &Path, file: &str, manifest: serde_json::Value) {
    apply_in_tenant(kubeconfig, dir, file, &manifest.to_string()).await;
}

/// Runs a probe pod `namespace/name` in a tenant until it printed
/// PROBE-DONE; returns its results.
async fn tenant_probe(
    kubeconfig: &Path,
    dir: &Path,
    namespace: &str,
    name: &str,
    script: &str,
) -> std::collections::BTreeMap<String, bool> {
    let pod = probe_pod(name, Some(namespace), json!({}), script);
    tenant_apply(
        kubeconfig,
        dir,
        &format!("probe-{namespace}-{name}.json"),
        serde_json::to_value(&pod).unwrap(),
    )
    .await;
    let text = wait_until(
        &format!("probe {namespace}/{name} finished"),
        READY_TIMEOUT,
        || async {
            let (ok, text, _) = kubectl(kubeconfig, &["logs", "-n", namespace, name]);
            (ok && text.contains("PROBE-DONE")).then_some(text)
        },
    )
    .await;
    eprintln!("probe {namespace}/{name}:\n{text}");
    probe_results(&text)
}

/// The tenant's own NetworkPolicies, mirrored and enforced with their
/// tenant meaning: a namespace-selector allow lets in the namespace it
/// names and no other pod, a deny-all seals a pod, and policies that try
/// to open everything (egress to 0.0.0.0/0, ingress from 0.0.0.0/0) open
/// the tenant's own pods, apiserver and DNS but never the host or the
/// other tenant. A policy on labels vnest sets is refused with a reason.
async fn tenant_policies_narrow_and_never_widen(
    client: &Client,
    kubeconfigs: [&Path; 2],
    dir: &Path,
) {
    let [kubeconfig_a, kubeconfig_b] = kubeconfigs;
    let pod_ip = |kubeconfig: &Path, namespace: &str, name: &str| {
        let (ok, ip, err) = kubectl(
            kubeconfig,
            &[
                "get",
                "pod",
                "-n",
                namespace,
                name,
                "-o",
                "jsonpath={.status.podIP}",
            ],
        );
        assert!(ok && !ip.is_empty(), "{namespace}/{name}: {ip}{err}");
        ip
    };
    for (namespace, labels) in [("front", json!({ "team": "front" })), ("back", json!({}))] {
        tenant_apply(
            kubeconfig_a,
            dir,
            &format!("ns-{namespace}.json"),
            json!({ "apiVersion": "v1", "kind": "Namespace",
                    "metadata": { "name": namespace, "labels": labels } }),
        )
        .await;
    }
    let policy = |namespace: &str, name: &str, spec: serde_json::Value| {
        json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": { "name": name, "namespace": namespace }, "spec": spec })
    };
    let policies = [
        // db takes connections from namespace front only.
        policy(
            "back",
            "db-from-front",
            json!({
                "podSelector": { "matchLabels": { "app": "db" } },
                "policyTypes": ["Ingress"],
                "ingress": [{ "from": [{ "namespaceSelector": { "matchLabels": { "team": "front" } } }],
                              "ports": [{ "port": 8080 }] }],
            }),
        ),
        // sealed reaches nothing and nothing reaches it.
        policy(
            "back",
            "sealed",
            json!({
                "podSelector": { "matchLabels": { "app": "sealed" } },
                "policyTypes": ["Ingress", "Egress"],
            }),
        ),
        // Attempts to open everything.
        policy(
            "front",
            "egress-anywhere",
            json!({
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{ "to": [{ "ipBlock": { "cidr": "0.0.0.0/0" } }] }],
            }),
        ),
        policy(
            "back",
            "cache-from-anywhere",
            json!({
                "podSelector": { "matchLabels": { "app": "cache" } },
                "policyTypes": ["Ingress"],
                "ingress": [{ "from": [{ "ipBlock": { "cidr": "0.0.0.0/0" } }] }],
            }),
        ),
    ];
    tenant_apply(
        kubeconfig_a,
        dir,
        "tenant-policies.json",
        json!({ "apiVersion": "v1", "kind": "List", "items": policies }),
    )
    .await;
    let wl = host_namespace(TENANTS, "team-a", HostNamespaceRole::Workloads);
    let host_policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &wl);
    wait_until(
        "the tenant's policies are on the host",
        Duration::from_secs(60),
        || async {
            let mirrored = host_policies
                .list(&ListParams::default().labels("app.kubernetes.io/managed-by=vnest-syncer"))
                .await
                .ok()?;
            (mirrored.items.len() == 4).then_some(())
        },
    )
    .await;
    // A policy on a label vnest sets on host pods is refused, visibly.
    tenant_apply(
        kubeconfig_a,
        dir,
        "forged-policy.json",
        policy(
            "back",
            "forged",
            json!({
                "podSelector": { "matchLabels": { "vnest.dev/tenant-namespace": "back" } },
            }),
        ),
    )
    .await;
    wait_until(
        "the forged policy is refused with a reason",
        Duration::from_secs(60),
        || async {
            let (_, events, _) = kubectl(
                kubeconfig_a,
                &[
                    "get",
                    "events",
                    "-n",
                    "back",
                    "--field-selector",
                    "involvedObject.name=forged,reason=Refused",
                    "-o",
                    "jsonpath={.items[*].message}",
                ],
            );
            events
                .contains("vnest sets on the host itself")
                .then_some(())
        },
    )
    .await;

    for (namespace, name) in [("back", "db"), ("back", "cache")] {
        tenant_server(kubeconfig_a, dir, namespace, name, "a").await;
    }
    let db = pod_ip(kubeconfig_a, "back", "db");
    let cache = pod_ip(kubeconfig_a, "back", "cache");
    let b_web = pod_ip(kubeconfig_b, "default", "web");
    let apiserver_svc = {
        let cp = host_namespace(TENANTS, "team-a", HostNamespaceRole::ControlPlane);
        let services: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(client.clone(), &cp);
        services
            .get("apiserver")
            .await
            .unwrap()
            .spec
            .unwrap()
            .cluster_ip
            .unwrap()
    };
    let (host_apiserver, host_port) = endpoint(client, "default", "kubernetes").await;
    let dns_name = "kubernetes.default.svc.cluster.local";
    use Vantage::TenantA as A;
    let probes = [
        (
            "front",
            "client",
            vec![
                reach(A, "db", &db, 8080, true),
                reach(A, "cache", &cache, 8080, true),
                reach(A, "own-apiserver", &apiserver_svc, 443, true),
                reach(A, "host-apiserver-node", &host_apiserver, host_port, false),
                reach(A, "host-apiserver-service", "10.96.0.1", 443, false),
                reach(A, "other-tenant-pod", &b_web, 8080, false),
                reach(A, "kubelet", "172.30.0.11", 10250, false),
            ],
            Some(dns_name),
        ),
        (
            "back",
            "neighbour",
            vec![
                reach(A, "cache", &cache, 8080, true),
                reach(A, "db", &db, 8080, false),
            ],
            None,
        ),
        (
            "back",
            "sealed",
            vec![
                reach(A, "cache", &cache, 8080, false),
                reach(A, "own-apiserver", &apiserver_svc, 443, false),
            ],
            None,
        ),
    ];
    let mut wrong = Vec::new();
    for (namespace, name, checks, dns) in &probes {
        let checks: Vec<&Reach> = checks.iter().collect();
        let results = tenant_probe(
            kubeconfig_a,
            dir,
            namespace,
            name,
            &probe_script(&checks, *dns),
        )
        .await;
        if dns.is_some() && results.get("dns") != Some(&true) {
            wrong.push(format!("{namespace}/{name} -> its own DNS: closed"));
        }
        for check in checks {
            if results.get(&check.what) != Some(&check.open) {
                wrong.push(format!(
                    "{namespace}/{name} -> {} ({}:{}): expected {}, got {:?}",
                    check.what,
                    check.host,
                    check.port,
                    if check.open { "open" } else { "closed" },
                    results.get(&check.what)
                ));
            }
        }
    }
    // The other tenant, against a policy admitting 0.0.0.0/0: still shut
    // out (its own pod answering shows the probe works).
    let intruder = [
        reach(Vantage::TenantB, "own-pod", &b_web, 8080, true),
        reach(Vantage::TenantB, "cache", &cache, 8080, false),
    ];
    let checks: Vec<&Reach> = intruder.iter().collect();
    let results = tenant_probe(
        kubeconfig_b,
        dir,
        "default",
        "intruder",
        &probe_script(&checks, None),
    )
    .await;
    for check in checks {
        if results.get(&check.what) != Some(&check.open) {
            wrong.push(format!(
                "team-b -> {}: expected open={}, got {:?}",
                check.what,
                check.open,
                results.get(&check.what)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the tenant's NetworkPolicies do not hold as they should:\n{}",
        wrong.join("\n")
    );
    for namespace in ["front", "back"] {
        kubectl(
            kubeconfig_a,
            &["delete", "namespace", namespace, "--wait=false"],
        );
    }
    kubectl(kubeconfig_a, &["delete", "pod", "web", "--grace-period=1"]);
    kubectl(
        kubeconfig_b,
        &["delete", "pod", "web", "intruder", "--grace-period=1"],
    );
}

/// a's admin certificate presented to b's apiserver (server certificate
/// not checked, so the refusal is b's, not the client's): 401.
async fn apiserver_refuses_foreign_credentials(kubeconfig_a: &Path, b_endpoint: &str) {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig_a).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    config.cluster_url = b_endpoint.parse().unwrap();
    config.accept_invalid_certs = true;
    config.tls_server_name = None;
    let foreign = Client::try_from(config).unwrap();
    let namespaces: Api<Namespace> = Api::all(foreign);
    match namespaces.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 401, "{status:?}"),
        other => panic!("b's apiserver must refuse a's admin: {other:?}"),
    }
}

/// etcdctl from this machine to each tenant's etcd pod (through
/// `pods/portforward`: NetworkPolicy admits only the tenant's apiserver):
/// its own apiserver's client certificate is accepted (so the address is
/// reachable), the other tenant's is refused.
/// Each tenant's etcd takes its own apiserver's client certificate and
/// refuses the other tenant's; what the apiserver writes there of a Secret
/// is sealed (encryption at rest), never the Secret's data.
async fn etcd_accepts_only_its_own_clients(client: &Client, kubeconfig_a: &Path, dir: &Path) {
    let etcdctl = upstream_binaries().locate_binary("etcdctl").unwrap();
    let mut tenants = Vec::new();
    let mut forwards = Vec::new();
    for name in ["team-a", "team-b"] {
        let cp = host_namespace(TENANTS, name, HostNamespaceRole::ControlPlane);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &cp);
        let data = secrets.get("vnest-pki").await.unwrap().data.unwrap();
        let files = dir.join(name);
        std::fs::create_dir_all(&files).unwrap();
        for key in ["apiserver-etcd-client.crt", "apiserver-etcd-client.key"] {
            std::fs::write(files.join(key), &data[key].0).unwrap();
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), &cp);
        let (port, task) = vnest_tests::forward_local(pods, "etcd-0", 2379).await;
        forwards.push(task);
        tenants.push((files, format!("127.0.0.1:{port}")));
    }
    let etcd = |files: &Path, ip: &str, command: &[&str]| {
        std::process::Command::new(&etcdctl)
            .args([
                &format!("--endpoints=https://{ip}"),
                "--insecure-skip-tls-verify",
                &format!(
                    "--cert={}",
                    files.join("apiserver-etcd-client.crt").display()
                ),
                &format!(
                    "--key={}",
                    files.join("apiserver-etcd-client.key").display()
                ),
                "--dial-timeout=5s",
                "--command-timeout=5s",
            ])
            .args(command)
            .output()
            .unwrap()
    };
    let health = |files: &Path, ip: &str| etcd(files, ip, &["endpoint", "health"]);
    for (own, theirs) in [(0, 1), (1, 0)] {
        let (own_files, own_ip) = &tenants[own];
        let ok = health(own_files, own_ip);
        assert!(
            ok.status.success(),
            "own client refused: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let (_, their_ip) = &tenants[theirs];
        let refused = health(own_files, their_ip);
        assert!(
            !refused.status.success(),
            "another tenant's etcd accepted a foreign client"
        );
    }
    let (ok, out, err) = kubectl(
        kubeconfig_a,
        &[
            "create",
            "secret",
            "generic",
            "sealed",
            "--from-literal=word=plain-text-marker",
        ],
    );
    assert!(ok, "{out}{err}");
    let (files, ip) = &tenants[0];
    let stored = etcd(
        files,
        ip,
        &[
            "get",
            "/registry/secrets/default/sealed",
            "--print-value-only",
        ],
    );
    let stored = String::from_utf8_lossy(&stored.stdout);
    assert!(
        stored.starts_with("k8s:enc:secretbox:v1:key1:") && !stored.contains("plain-text-marker"),
        "a Secret is sealed in etcd: {stored}"
    );
    for task in forwards {
        task.abort();
    }
}
