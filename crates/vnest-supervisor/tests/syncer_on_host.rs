//! The syncer end to end on a real host: a tenant's Deployment runs on the
//! tenant's pool nodes (real kubelets), with its ConfigMap and a tenant
//! ServiceAccount token, its status and nodes visible to the tenant through
//! plain kubectl; pods that would reach the host or another tenant's nodes
//! are refused with a reason the tenant sees, and never reach the host;
//! deleting tenant objects deletes their host copies.
//!
//! Needs root and the packages of tools/host/install-prerequisites.sh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::ListParams;
use vnest_api::host_names::{HostNamespaceRole, host_namespace};
use vnest_devhost::topology::NodeSpec;
use vnest_syncer::naming::host_name;
use vnest_tests::{HostSlot, TestHost, kubectl};

mod common;
use common::*;

const SHOP: &str = "shop";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_workloads_run_on_their_pool_and_what_would_escape_is_refused() {
    let slot = HostSlot::acquire().await;
    let host = TestHost::start_for_vnest(slot, two_pools(), vnest_binaries()).await;
    let client = host.client();
    let admin = host.kubeconfig();
    let work = tempfile::tempdir().unwrap();
    let (_, tenant) = ready_tenant(&client, &admin, virtual_cluster(SHOP, "a"), work.path()).await;
    let wl = host_namespace(TENANTS, SHOP, HostNamespaceRole::Workloads);

    // The tenant sees its pool's node, and only that one.
    let nodes = wait_until(
        "the tenant sees its pool",
        Duration::from_secs(60),
        || async {
            let (ok, out, _) = kubectl(&tenant, &["get", "nodes", "-o", "name"]);
            (ok && !out.trim().is_empty()).then_some(out)
        },
    )
    .await;
    assert_eq!(
        nodes.trim(),
        "node/vnest-node1",
        "only the pool's nodes: {nodes}"
    );

    // A Deployment with a ConfigMap runs on the pool, and its status is the tenant's.
    apply(&tenant, work.path(), "web.yaml", WEB);
    let running = wait_until("both web pods Run", Duration::from_secs(180), || async {
        let (_, out, _) = kubectl(
            &tenant,
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.status.phase} {.spec.nodeName}{\"\\n\"}{end}",
            ],
        );
        let lines: Vec<String> = out.lines().map(str::to_owned).collect();
        (lines.len() == 2 && lines.iter().all(|l| l.starts_with("Running"))).then_some(lines)
    })
    .await;
    for line in &running {
        assert!(
            line.ends_with("vnest-node1"),
            "bound to the pool's node: {line}"
        );
    }
    let host_pods: Api<Pod> = Api::namespaced(client.clone(), &wl);
    let on_host = host_pods.list(&ListParams::default()).await.unwrap();
    let web_on_host: Vec<&Pod> = on_host
        .items
        .iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.get("app").map(String::as_str) == Some("web"))
        })
        .collect();
    assert_eq!(web_on_host.len(), 2);
    for pod in &web_on_host {
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("vnest-node1"));
        assert_eq!(spec.automount_service_account_token, Some(false));
    }
    // What the host's kubelet said about the pods is on the tenant's pods.
    let (_, web_pod, _) = kubectl(
        &tenant,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    );
    let started = wait_until(
        "the kubelet's Started event reaches the tenant",
        Duration::from_secs(60),
        || async {
            let selector = format!("involvedObject.name={},reason=Started", web_pod.trim());
            let (_, events, _) = kubectl(
                &tenant,
                &[
                    "get",
                    "events",
                    "--field-selector",
                    &selector,
                    "-o",
                    "jsonpath={.items[*].message}",
                ],
            );
            (!events.trim().is_empty()).then_some(events)
        },
    )
    .await;
    // kubelet 1.37 says "Container started".
    assert!(started.to_lowercase().contains("started"), "{started}");

    // The pod read its ConfigMap and holds a token its own apiserver accepts
    // (in-cluster kubectl: the token, the tenant CA, the apiserver address
    // the syncer gave it). Read through the host: tenant `kubectl logs`
    // needs the kubelet proxy, which is not built yet.
    let (_, out, _) = kubectl(
        &admin,
        &[
            "logs",
            "-n",
            &wl,
            &web_on_host[0].metadata.name.clone().unwrap(),
        ],
    );
    eprintln!("web says: {out}");
    assert!(
        out.contains("greeting=hello"),
        "the ConfigMap reached the pod: {out}"
    );
    assert!(
        out.contains("token-accepted"),
        "the tenant token works against the tenant apiserver: {out}"
    );

    // Another tenant pod reaches the Service by its DNS name and by the
    // ClusterIP the tenant sees, which the host routes.
    let (_, web_ip, _) = kubectl(
        &tenant,
        &["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"],
    );
    apply(
        &tenant,
        work.path(),
        "client.yaml",
        &CLIENT.replace("@WEB_IP@", web_ip.trim()),
    );
    let client_host = host_name("default", "client");
    wait_until(
        "the client pod finished",
        Duration::from_secs(180),
        || async {
            let pod = host_pods.get_opt(&client_host).await.ok()??;
            let phase = pod.status?.phase?;
            (phase == "Succeeded" || phase == "Failed").then_some(())
        },
    )
    .await;
    let (_, client_said, _) = kubectl(&admin, &["logs", "-n", &wl, &client_host]);
    eprintln!("client says: {client_said}");
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), &wl);
    let host_web = services.get(&host_name("default", "web")).await.unwrap();
    assert_eq!(
        host_web.spec.unwrap().cluster_ip.as_deref(),
        Some(web_ip.trim()),
        "the host Service has the tenant's address"
    );
    assert!(
        client_said.contains("BY-NAME"),
        "DNS name of a tenant Service: {client_said}"
    );
    assert!(
        client_said.contains("BY-IP"),
        "ClusterIP of a tenant Service: {client_said}"
    );

    // What would escape is refused, visibly, and never reaches the host.
    apply(&tenant, work.path(), "bad.yaml", BAD);
    for (name, expected) in [
        ("privileged", "container app is privileged"),
        ("hostpath", "volume root of type hostPath"),
        (
            "other-pool",
            "nodeName vnest-node2 is not a node of this cluster's pool",
        ),
    ] {
        let reason = wait_until(
            &format!("{name} is refused"),
            Duration::from_secs(60),
            || async {
                let (_, out, _) = kubectl(
                    &tenant,
                    &[
                        "get",
                        "pod",
                        name,
                        "-o",
                        "jsonpath={.status.reason}|{.status.message}",
                    ],
                );
                out.starts_with("Refused|").then_some(out)
            },
        )
        .await;
        assert!(reason.contains(expected), "{name}: {reason}");
        let (_, events, _) = kubectl(
            &tenant,
            &[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name={name},reason=Refused"),
                "-o",
                "name",
            ],
        );
        assert!(
            !events.trim().is_empty(),
            "{name}: an event tells the tenant"
        );
        let (_, table, _) = kubectl(&tenant, &["get", "pod", name]);
        assert!(table.contains("Refused"), "kubectl shows why: {table}");
    }
    let host_names: Vec<String> = host_pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    for refused in ["privileged", "hostpath", "other-pool"] {
        assert!(
            host_names
                .iter()
                .all(|n| !n.starts_with(&format!("{refused}-default-"))),
            "{refused} never reached the host: {host_names:?}"
        );
    }

    // The syncer counts what it refused, by rule.
    let cp = host_namespace(TENANTS, SHOP, HostNamespaceRole::ControlPlane);
    let metrics = syncer_metrics(&client, &cp).await;
    for rule in ["privileged", "volume-type", "node-name"] {
        assert!(
            metrics.contains(&format!("vnest_syncer_refusals_total{{rule=\"{rule}\"}} 1")),
            "{rule} in {metrics}"
        );
    }
    assert!(
        metrics.contains("vnest_syncer_sync_duration_seconds_count{kind=\"Pod\"}"),
        "{metrics}"
    );

    // Deleting tenant objects deletes their host copies.
    let (ok, out, err) = kubectl(
        &tenant,
        &[
            "delete",
            "-f",
            &work.path().join("web.yaml").display().to_string(),
            "--wait=true",
        ],
    );
    assert!(ok, "{out}{err}");
    wait_until(
        "the host copies are gone",
        Duration::from_secs(120),
        || async {
            let pods = host_pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &wl);
            let greeting = configmaps
                .list(&ListParams::default().labels("vnest.dev/tenant-namespace=default"))
                .await
                .ok()?
                .items
                .into_iter()
                .any(|c| {
                    c.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("greeting-default-"))
                });
            (pods.items.is_empty() && !greeting).then_some(())
        },
    )
    .await;

    host.stop().await;
}

/// Killing the syncer while it creates 200 pods loses and duplicates
/// nothing: after its restart the host has exactly 200 (on simulated pool
/// nodes, so that 200 pods fit this machine), and scaling to zero removes
/// them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syncer_killed_midway_through_200_pods_ends_with_exactly_200() {
    let slot = HostSlot::acquire().await;
    let sim = vec![("vnest.dev/pool".to_owned(), "sim".to_owned())];
    let host = TestHost::start_configured(slot, vec![NodeSpec::new(1)], |options| {
        options.simulated_nodes = vec![sim.clone(), sim.clone(), sim.clone()];
        options.vnest_binaries = vnest_binaries();
    })
    .await;
    let client = host.client();
    let admin = host.kubeconfig();
    let work = tempfile::tempdir().unwrap();
    let mut vc = virtual_cluster("scale", "sim");
    vc.spec.isolation.resource_quota.insert(
        "pods".into(),
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("400".into()),
    );
    let (_, tenant) = ready_tenant(&client, &admin, vc, work.path()).await;
    let wl = host_namespace(TENANTS, "scale", HostNamespaceRole::Workloads);
    let cp = host_namespace(TENANTS, "scale", HostNamespaceRole::ControlPlane);
    let host_pods: Api<Pod> = Api::namespaced(client.clone(), &wl);
    let many = ListParams::default().labels("app=many");

    apply(&tenant, work.path(), "many.yaml", MANY);
    wait_until(
        "50 of the pods are on the host",
        Duration::from_secs(300),
        || async {
            let count = host_pods.list(&many).await.ok()?.items.len();
            (count >= 50).then_some(())
        },
    )
    .await;
    let syncers: Api<Pod> = Api::namespaced(client.clone(), &cp);
    syncers
        .delete_collection(
            &kube::api::DeleteParams::default().grace_period(0),
            &ListParams::default().labels("vnest.dev/component=syncer"),
        )
        .await
        .unwrap();
    eprintln!("killed the syncer");
    wait_until(
        "200 host pods, all Running in the tenant",
        Duration::from_secs(600),
        || async {
            let count = host_pods.list(&many).await.ok()?.items.len();
            let (_, phases, _) = kubectl(
                &tenant,
                &[
                    "get",
                    "pods",
                    "-l",
                    "app=many",
                    "-o",
                    "jsonpath={range .items[*]}{.status.phase}{\"\\n\"}{end}",
                ],
            );
            let running = phases.lines().filter(|p| *p == "Running").count();
            (count == 200 && running == 200).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        host_pods.list(&many).await.unwrap().items.len(),
        200,
        "still exactly 200"
    );

    let (ok, out, err) = kubectl(&tenant, &["scale", "deployment", "many", "--replicas=0"]);
    assert!(ok, "{out}{err}");
    wait_until(
        "every host pod is gone",
        Duration::from_secs(600),
        || async {
            host_pods
                .list(&many)
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
    host.stop().await;
}

/// What the tenant's syncer serves at /metrics (pod IPs route from this
/// machine on the development host).
async fn syncer_metrics(client: &kube::Client, control_plane: &str) -> String {
    use std::io::{Read, Write};
    let pods: Api<Pod> = Api::namespaced(client.clone(), control_plane);
    let syncer = pods
        .list(&ListParams::default().labels("vnest.dev/component=syncer"))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .expect("a syncer pod");
    let ip = syncer.status.unwrap().pod_ip.unwrap();
    let mut stream = std::net::TcpStream::connect((ip.as_str(), 8080)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: syncer\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn apply(kubeconfig: &Path, dir: &Path, file: &str, yaml: &str) {
    let path = dir.join(file);
    std::fs::write(&path, yaml).unwrap();
    let (ok, out, err) = kubectl(kubeconfig, &["apply", "-f", &path.display().to_string()]);
    assert!(ok, "kubectl apply {file}: {out}{err}");
}

/// Runs as the restricted Pod Security level asks (the tenant's default).
const WEB: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: { name: greeting }
data: { text: hello }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 2
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      securityContext: { runAsNonRoot: true, runAsUser: 65534, seccompProfile: { type: RuntimeDefault } }
      containers:
        - name: web
          image: vnest.local/clients:1
          imagePullPolicy: Never
          env:
            - { name: TEXT, valueFrom: { configMapKeyRef: { name: greeting, key: text } } }
          command:
            - sh
            - -c
            - |
              echo "greeting=$TEXT"
              echo "apiserver=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"
              HOME=/tmp kubectl get --raw /api >/dev/null && echo token-accepted
              mkdir -p /tmp/www && echo "hello from $HOSTNAME" > /tmp/www/index.html
              exec httpd -f -p 8080 -h /tmp/www
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: 8080 }]
"#;

/// A tenant pod that asks the web Service for its page by DNS name and by
/// ClusterIP (busybox resolves absolute names only, hence the trailing dot).
const CLIENT: &str = r#"
apiVersion: v1
kind: Pod
metadata: { name: client }
spec:
  restartPolicy: Never
  securityContext: { runAsNonRoot: true, runAsUser: 65534, seccompProfile: { type: RuntimeDefault } }
  containers:
    - name: client
      image: vnest.local/clients:1
      imagePullPolicy: Never
      env: [{ name: WEB_IP, value: "@WEB_IP@" }]
      command:
        - sh
        - -c
        - |
          get() { printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 "$1" 80 | grep -q "hello from web"; }
          for i in $(seq 1 30); do
            get web.default.svc.cluster.local. && echo BY-NAME && break
            sleep 2
          done
          get "$WEB_IP" && echo BY-IP
          true
      securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
"#;

/// Pods for simulated nodes: they tolerate kwok's taint and need no DNS or
/// token, so the test measures the syncer's bookkeeping, not the machine.
const MANY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: { name: many }
spec:
  replicas: 200
  selector: { matchLabels: { app: many } }
  template:
    metadata: { labels: { app: many } }
    spec:
      automountServiceAccountToken: false
      dnsPolicy: Default
      tolerations: [{ key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule }]
      securityContext: { runAsNonRoot: true, runAsUser: 65534, seccompProfile: { type: RuntimeDefault } }
      containers:
        - name: app
          image: vnest.local/busybox:1
          command: [sleep, "3600"]
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
"#;

const BAD: &str = r#"
apiVersion: v1
kind: Pod
metadata: { name: privileged }
spec:
  containers: [{ name: app, image: vnest.local/busybox:1, command: [sleep, "3600"], securityContext: { privileged: true } }]
---
apiVersion: v1
kind: Pod
metadata: { name: hostpath }
spec:
  containers: [{ name: app, image: vnest.local/busybox:1, command: [sleep, "3600"] }]
  volumes: [{ name: root, hostPath: { path: / } }]
---
apiVersion: v1
kind: Pod
metadata: { name: other-pool }
spec:
  nodeName: vnest-node2
  containers: [{ name: app, image: vnest.local/busybox:1, command: [sleep, "3600"] }]
"#;
