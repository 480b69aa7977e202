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
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use vnest_api::host_names::{HostNamespaceRole, host_namespace, labels};
use vnest_api::{Phase, VirtualCluster};
use vnest_tests::{HostSlot, TestHost, kubectl, upstream_binaries};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_clusters_become_isolated_tenant_control_planes_and_leave_nothing_behind() {
    let slot = HostSlot::acquire().await;
    let host = TestHost::start_for_vnest(slot, two_pools(), vnest_binaries()).await;
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

    let vcs: Api<VirtualCluster> = Api::namespaced(client.clone(), TENANTS);
    for (name, pool) in [("team-a", "a"), ("team-b", "b")] {
        vcs.create(&PostParams::default(), &virtual_cluster(name, pool))
            .await
            .unwrap();
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
    etcd_accepts_only_its_own_clients(&client, work.path()).await;
    a_workload_pod_is_refused_by_the_other_tenant(&client, &admin).await;

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

    // Deleting removes every host object the tenants had.
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
            (left_namespaces + left_secrets == 0).then_some(())
        },
    )
    .await;

    host.stop().await;
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

/// A pod in a's workloads namespace (where the syncer will put a's pods;
/// placed directly here) holding a's own admin and etcd client
/// certificates, the most a tenant workload could have: b's apiserver
/// answers 401 and b's etcd refuses the handshake, while a's own apiserver
/// answers. (Whether the pod could even open a connection to either etcd is
/// the NetworkPolicy layer's business; the development host does not
/// enforce NetworkPolicy, so here the certificates are the boundary.)
async fn a_workload_pod_is_refused_by_the_other_tenant(client: &Client, admin: &Path) {
    let a_cp = host_namespace(TENANTS, "team-a", HostNamespaceRole::ControlPlane);
    let b_cp = host_namespace(TENANTS, "team-b", HostNamespaceRole::ControlPlane);
    let a_wl = host_namespace(TENANTS, "team-a", HostNamespaceRole::Workloads);
    let pki = Api::<Secret>::namespaced(client.clone(), &a_cp)
        .get("vnest-pki")
        .await
        .unwrap()
        .data
        .unwrap();
    let creds: Secret = serde_json::from_value(json!({
        "metadata": { "name": "a-credentials", "namespace": a_wl },
        "data": {
            "admin.crt": pki["admin.crt"], "admin.key": pki["admin.key"],
            "etcd.crt": pki["apiserver-etcd-client.crt"], "etcd.key": pki["apiserver-etcd-client.key"],
        },
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &a_wl)
        .create(&PostParams::default(), &creds)
        .await
        .unwrap();
    let script = format!(
        r#"K="kubectl --insecure-skip-tls-verify --client-certificate=/creds/admin.crt --client-key=/creds/admin.key --request-timeout=10s"
E="etcdctl --insecure-skip-tls-verify --cert=/creds/etcd.crt --key=/creds/etcd.key --dial-timeout=5s --command-timeout=5s"
$K --server=https://apiserver.{a_cp}.svc:443 get namespaces >/dev/null 2>&1 && echo OWN_APISERVER_SERVES
OUT=$($K --server=https://apiserver.{b_cp}.svc:443 get namespaces 2>&1)
echo "b's apiserver: $OUT"
echo "$OUT" | grep -q "must be logged in" && echo OTHER_APISERVER_UNAUTHORIZED
$E --endpoints=https://etcd-0.etcd.{a_cp}.svc:2379 endpoint health >/dev/null 2>&1 && echo OWN_ETCD_REACHABLE
$E --endpoints=https://etcd-0.etcd.{b_cp}.svc:2379 endpoint health >/dev/null 2>&1 || echo OTHER_ETCD_REFUSED
true"#
    );
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "probe", "namespace": a_wl },
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": { "vnest.dev/pool": "a" },
            "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "probe",
                "image": vnest_devhost::images::CLIENTS_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "env": [{ "name": "HOME", "value": "/tmp" }],
                "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } },
                "volumeMounts": [{ "name": "creds", "mountPath": "/creds", "readOnly": true }],
            }],
            "volumes": [{ "name": "creds", "secret": { "secretName": "a-credentials" } }],
        },
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &a_wl);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_until(
        "the probe pod in a's workloads namespace finished",
        READY_TIMEOUT,
        || async {
            let phase = pods.get("probe").await.ok()?.status?.phase?;
            (phase == "Succeeded" || phase == "Failed").then_some(())
        },
    )
    .await;
    let (_, logs, err) = kubectl(admin, &["logs", "-n", &a_wl, "probe"]);
    eprintln!("probe pod says:\n{logs}{err}");
    for marker in [
        "OWN_APISERVER_SERVES",
        "OTHER_APISERVER_UNAUTHORIZED",
        "OTHER_ETCD_REFUSED",
    ] {
        assert!(logs.contains(marker), "{marker} missing: {logs}{err}");
    }
    if logs.contains("OWN_ETCD_REACHABLE") {
        eprintln!("the probe reached its own etcd: NetworkPolicy is not enforced on this host");
    }
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

/// etcdctl from this machine to each tenant's etcd pod: its own apiserver's
/// client certificate is accepted (so the address is reachable), the other
/// tenant's is refused.
async fn etcd_accepts_only_its_own_clients(client: &Client, dir: &Path) {
    let etcdctl = upstream_binaries().locate_binary("etcdctl").unwrap();
    let mut tenants = Vec::new();
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
        let ip = pods
            .get("etcd-0")
            .await
            .unwrap()
            .status
            .unwrap()
            .pod_ip
            .unwrap();
        tenants.push((files, ip));
    }
    let health = |files: &Path, ip: &str| {
        std::process::Command::new(&etcdctl)
            .args([
                &format!("--endpoints=https://{ip}:2379"),
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
                "endpoint",
                "health",
            ])
            .output()
            .unwrap()
    };
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
}
