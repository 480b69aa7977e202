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
use kube::api::{ListParams, Patch, PatchParams};
use vnest_api::host_copies::host_name;
use vnest_api::host_names::{HostNamespaceRole, host_namespace};
use vnest_tests::{HostSlot, TestHost, kubectl};

mod common;
use common::*;

const SHOP: &str = "shop";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_workloads_run_on_their_pool_and_what_would_escape_is_refused() {
    let slot = HostSlot::acquire().await;
    let host =
        TestHost::start_for_vnest(slot, two_pools(), vnest_tests::vnest_image_binaries()).await;
    let client = host.client();
    let admin = host.kubeconfig();
    let work = tempfile::tempdir().unwrap();
    let mut vc = virtual_cluster(SHOP, "a");
    vc.spec.isolation.ingress.hosts = vec!["*.shop.example.com".to_owned()];
    let (_, tenant) = ready_tenant(&client, &admin, vc, work.path()).await;
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
    let path = work.path().join("web.yaml");
    std::fs::write(&path, WEB).unwrap();
    let (ok, out, err) = kubectl(&tenant, &["apply", "-f", &path.display().to_string()]);
    if !ok {
        let cp = host_namespace(TENANTS, SHOP, HostNamespaceRole::ControlPlane);
        panic!(
            "kubectl apply web.yaml: {out}{err}\nthe syncer's log:\n{}",
            syncer_log(&client, &cp).await
        );
    }
    apply(&tenant, work.path(), "podinfo.yaml", PODINFO);
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
                .is_some_and(|l| l.get("pod.vnest.dev/app").map(String::as_str) == Some("web"))
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
    // the syncer gave it). Read with the tenant's own `kubectl logs`, which
    // the syncer's kubelet proxy answers.
    let web_pod = web_pod.trim().to_owned();
    let out = wait_until("the web pod's checks", Duration::from_secs(90), || async {
        let (ok, out, err) = kubectl(&tenant, &["logs", &web_pod]);
        assert!(ok, "tenant kubectl logs: {err}");
        out.contains("checks-done").then_some(out)
    })
    .await;
    eprintln!("web says: {out}");
    assert!(
        out.contains("greeting=hello"),
        "the ConfigMap reached the pod: {out}"
    );
    assert!(
        out.contains("token-accepted"),
        "the tenant token works against the tenant apiserver: {out}"
    );
    assert!(
        out.contains("apiserver-by-name"),
        "kubernetes.default.svc is the tenant's apiserver: {out}"
    );
    the_token_names_the_pod_and_its_node(&tenant, &web_pod, work.path()).await;
    trust_bundles_come_from_the_tenant(&tenant, work.path()).await;
    pod_certificates_come_from_the_tenants_signer(&tenant, work.path()).await;
    let cp = host_namespace(TENANTS, SHOP, HostNamespaceRole::ControlPlane);
    kubelet_calls_of_the_tenant_work(&client, &tenant, &cp, &web_pod, work.path()).await;
    downward_api_files_show_the_tenant_pod(&tenant).await;
    a_pod_created_on_a_pool_node_runs_there(&client, &wl, &tenant, work.path()).await;
    a_pod_held_by_a_finalizer_goes_once_it_is_removed(&tenant, work.path()).await;
    a_pod_with_a_subdomain_finds_its_tenant_name_in_etc_hosts(&tenant, work.path()).await;
    pods_choose_nodes_by_the_tenants_node_labels(&client, &tenant, work.path()).await;

    // Another tenant pod reaches the Service by its DNS name and by the
    // ClusterIP the tenant sees, which the host routes.
    let (_, web_ip, _) = kubectl(
        &tenant,
        &["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"],
    );
    // A selector-less Service with endpoints the tenant wrote: one at a web
    // pod (mirrored), one at the pool node (refused: the host's own).
    let (_, pod_ip, _) = kubectl(
        &tenant,
        &["get", "pod", &web_pod, "-o", "jsonpath={.status.podIP}"],
    );
    let (_, node_ip, _) = kubectl(
        &tenant,
        &[
            "get",
            "node",
            "vnest-node1",
            "-o",
            "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
        ],
    );
    apply(
        &tenant,
        work.path(),
        "selectorless.yaml",
        &SELECTORLESS
            .replace("@POD_IP@", pod_ip.trim())
            .replace("@NODE_IP@", node_ip.trim()),
    );
    let refused = wait_until(
        "the slice at the node is refused",
        Duration::from_secs(60),
        || async {
            let (_, events, _) = kubectl(
                &tenant,
                &[
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.name=to-node-1,reason=Refused",
                    "-o",
                    "jsonpath={.items[*].message}",
                ],
            );
            (!events.trim().is_empty()).then_some(events)
        },
    )
    .await;
    assert!(
        refused.contains("is not this cluster's to point at"),
        "{refused}"
    );
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(client.clone(), &wl);
    assert!(
        slices
            .get_opt(&host_name("default", "to-node-1"))
            .await
            .unwrap()
            .is_none()
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
        Duration::from_secs(300),
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
    address_taken_on_the_host_is_refused(&client, &tenant, &wl, work.path()).await;
    a_service_created_again_is_told_it_exists(&client, &tenant, &wl).await;
    assert!(
        client_said.contains("BY-NAME"),
        "DNS name of a tenant Service: {client_said}"
    );
    assert!(
        client_said.contains("BY-IP"),
        "ClusterIP of a tenant Service (named target port): {client_said}"
    );
    assert!(
        client_said.contains("HEADLESS"),
        "a headless tenant Service's pods by DNS name: {client_said}"
    );
    assert!(
        client_said.contains("SERVICE-LINKS"),
        "WEB_SERVICE_HOST and WEB_SERVICE_PORT_HTTP name the tenant Service: {client_said}"
    );
    assert!(
        client_said.contains("SELECTORLESS"),
        "a selector-less Service through the endpoints the tenant wrote: {client_said}"
    );

    // An Ingress goes down routing to the host copy of its Service (the dev
    // host runs no ingress controller, so only the copy is checked).
    apply(&tenant, work.path(), "ingress.yaml", INGRESS);
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
        Api::namespaced(client.clone(), &wl);
    let routed_to = wait_until(
        "the Ingress is on the host",
        Duration::from_secs(60),
        || async {
            let copy = ingresses
                .get_opt(&host_name("default", "web"))
                .await
                .ok()??;
            let rule = copy.spec?.rules?.into_iter().next()?;
            Some(rule.http?.paths.first()?.backend.service.clone()?.name)
        },
    )
    .await;
    assert_eq!(routed_to, host_name("default", "web"));

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

    node_ports_come_from_the_host_when_granted(&client, &tenant, &wl, work.path()).await;
    claims_are_bound_to_host_volumes(&client, &tenant, &wl, &cp, work.path()).await;
    a_client_updates_right_after_create_and_deletes_at_once(&client, &tenant, &wl, work.path())
        .await;

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
                .list(&ListParams::default().labels("pod.vnest.dev/app=web"))
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

/// As in a cluster without vnest, a ConfigMap carries no finalizer of the
/// syncer's: an update with the object its create returned does not
/// conflict with the syncer's write, a deleted ConfigMap is gone at once,
/// and its host copy follows.
async fn a_client_updates_right_after_create_and_deletes_at_once(
    client: &kube::Client,
    tenant: &Path,
    wl: &str,
    work: &Path,
) {
    let created = work.join("quick.json");
    let (ok, out, err) = kubectl(
        tenant,
        &[
            "create",
            "configmap",
            "quick",
            "--from-literal=v=1",
            "-o",
            "json",
        ],
    );
    assert!(ok, "{out}{err}");
    let host_configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), wl);
    let host_copy = || async {
        host_configmaps
            .list(&ListParams::default().labels("vnest.dev/tenant-namespace=default"))
            .await
            .ok()?
            .items
            .into_iter()
            .find(|c| {
                c.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("quick-default-"))
            })
    };
    wait_until(
        "the ConfigMap's host copy",
        Duration::from_secs(60),
        || async { host_copy().await.map(|_| ()) },
    )
    .await;
    // A host copy edited on the host is restored at once (the syncer tells
    // others' writes from its own by resourceVersion).
    let copy = host_copy().await.unwrap();
    let copy_name = copy.metadata.name.clone().unwrap();
    host_configmaps
        .patch(
            &copy_name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "data": { "v": "edited on the host" } })),
        )
        .await
        .unwrap();
    wait_until(
        "the edited host copy restored",
        Duration::from_secs(30),
        || async {
            let data = host_configmaps.get(&copy_name).await.ok()?.data?;
            (data.get("v").map(String::as_str) == Some("1")).then_some(())
        },
    )
    .await;
    // The syncer has written its copy; the tenant object is untouched.
    let updated = out.replace("\"v\": \"1\"", "\"v\": \"2\"");
    assert_ne!(updated, out, "the data was found in {out}");
    std::fs::write(&created, updated).unwrap();
    let (ok, out, err) = kubectl(tenant, &["replace", "-f", &created.display().to_string()]);
    assert!(
        ok,
        "an update with the created object's resourceVersion: {out}{err}"
    );
    let (ok, out, err) = kubectl(tenant, &["delete", "configmap", "quick", "--wait=false"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = kubectl(tenant, &["get", "configmap", "quick", "--ignore-not-found"]);
    assert!(ok && out.trim().is_empty(), "deleted at once: {out}{err}");
    wait_until("the host copy follows", Duration::from_secs(60), || async {
        host_copy().await.is_none().then_some(())
    })
    .await;

    // A pod's updates reach its host pod: an ephemeral container, and an
    // active deadline, which then ends the pod (DeadlineExceeded), as the
    // tenant's own kubelet would.
    let pod = work.join("deadline.json");
    std::fs::write(
        &pod,
        r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "deadline" },
            "spec": { "terminationGracePeriodSeconds": 1,
              "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
              "containers": [{ "name": "c", "image": "vnest.local/busybox:1", "command": ["sleep", "3600"],
                "resources": { "requests": { "cpu": "10m" } },
                "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } } }] } }"#,
    )
    .unwrap();
    let (ok, out, err) = kubectl(tenant, &["apply", "-f", &pod.display().to_string()]);
    assert!(ok, "{out}{err}");
    let phase = |field: &'static str| {
        move || async move {
            let (_, out, _) = kubectl(
                tenant,
                &["get", "pod", "deadline", "-o", &format!("jsonpath={field}")],
            );
            Some(out)
        }
    };
    wait_until("the pod runs", Duration::from_secs(120), || async {
        (phase("{.status.phase}")().await? == "Running").then_some(())
    })
    .await;
    // `kubectl debug` adds an ephemeral container, which runs on the host.
    let (ok, out, err) = kubectl(
        tenant,
        &[
            "debug",
            "deadline",
            "--image=vnest.local/busybox:1",
            "--image-pull-policy=Never",
            "--container=debugger",
            "--profile=restricted",
            "--",
            "sleep",
            "600",
        ],
    );
    assert!(ok, "{out}{err}");
    wait_until(
        "the ephemeral container runs",
        Duration::from_secs(120),
        || async {
            let running =
                phase("{.status.ephemeralContainerStatuses[0].state.running.startedAt}")().await?;
            (!running.is_empty()).then_some(())
        },
    )
    .await;
    // An in-place resize reaches the host pod's containers, and the
    // tenant's status shows the new requests (and not the host's
    // LimitRange defaults, which the pod never asked for).
    let (ok, out, err) = kubectl(
        tenant,
        &[
            "patch",
            "pod",
            "deadline",
            "--subresource=resize",
            "-p",
            r#"{"spec":{"containers":[{"name":"c","resources":{"requests":{"cpu":"20m"}}}]}}"#,
        ],
    );
    assert!(ok, "{out}{err}");
    wait_until("the resize is done", Duration::from_secs(120), || async {
        let resources = phase("{.status.containerStatuses[0].resources}")().await?;
        (resources == r#"{"requests":{"cpu":"20m"}}"#).then_some(())
    })
    .await;
    let (ok, out, err) = kubectl(
        tenant,
        &[
            "patch",
            "pod",
            "deadline",
            "-p",
            r#"{"spec":{"activeDeadlineSeconds":5}}"#,
        ],
    );
    assert!(ok, "{out}{err}");
    wait_until(
        "the tenant's deadline ends the pod",
        Duration::from_secs(120),
        || async {
            (phase("{.status.phase}/{.status.reason}")().await? == "Failed/DeadlineExceeded")
                .then_some(())
        },
    )
    .await;
    let (ok, out, err) = kubectl(tenant, &["delete", "pod", "deadline", "--wait=false"]);
    assert!(ok, "{out}{err}");
}

/// The syncer's log, for failure messages.
/// A tenant Service asking for an address the host gave to another
/// Service is refused at creation with the reason, and nothing of it
/// reaches the host; the tenant's DNS Service has its host copy's address.
async fn address_taken_on_the_host_is_refused(
    client: &kube::Client,
    tenant: &Path,
    workloads: &str,
    dir: &Path,
) {
    let host_services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), "default");
    let taken: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "holds-an-address" },
        "spec": { "clusterIP": "10.96.201.201", "ports": [{ "port": 80 }] },
    }))
    .unwrap();
    host_services
        .create(&Default::default(), &taken)
        .await
        .unwrap();
    let yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: wants-taken\nspec:\n  clusterIP: 10.96.201.201\n  ports:\n  - port: 80\n";
    let file = dir.join("wants-taken.yaml");
    std::fs::write(&file, yaml).unwrap();
    let (ok, out, err) = kubectl(tenant, &["create", "-f", file.to_str().unwrap()]);
    assert!(!ok, "a taken address is refused: {out}{err}");
    assert!(
        err.contains("spec.clusterIP 10.96.201.201 cannot be given to this Service"),
        "the tenant is told why: {err}"
    );
    let (ok, _, _) = kubectl(tenant, &["get", "service", "wants-taken"]);
    assert!(!ok, "the refused Service does not exist in the tenant");
    let copies: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), workloads);
    assert!(
        copies
            .get_opt(&host_name("default", "wants-taken"))
            .await
            .unwrap()
            .is_none(),
        "nor on the host"
    );
    host_services
        .delete("holds-an-address", &Default::default())
        .await
        .unwrap();

    let (_, tenant_dns, _) = kubectl(
        tenant,
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
    let host_dns = copies
        .get(&host_name("kube-system", "kube-dns"))
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap_or_default();
    eprintln!("tenant kube-dns {tenant_dns}, host copy {host_dns}");
}

/// A create sent again (as a client does whose first answer was lost
/// when an apiserver stopped) is answered "already exists" (409), never
/// "address already allocated" (422): the webhook gives no address to a
/// Service the tenant has, even before its watch of the tenant's Services
/// shows it (each second create follows the first at once). A Service
/// deleted and made again at once gets an address, and the one its host
/// copy has.
async fn a_service_created_again_is_told_it_exists(
    client: &kube::Client,
    tenant: &Path,
    workloads: &str,
) {
    type Service = k8s_openapi::api::core::v1::Service;
    let services: Api<Service> = Api::namespaced(tenant_client(tenant).await, "default");
    let copies: Api<Service> = Api::namespaced(client.clone(), workloads);
    let create = kube::api::PostParams::default();
    for i in 0..10 {
        let name = format!("again-{i}");
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name },
            "spec": { "ports": [{ "port": 80 }] },
        }))
        .unwrap();
        services.create(&create, &service).await.unwrap();
        match services.create(&create, &service).await {
            Err(kube::Error::Api(status)) => assert_eq!(
                status.code, 409,
                "a create of an existing Service is told it exists: {status:?}"
            ),
            other => panic!("a second create of {name} must fail with 409: {other:?}"),
        }
        services.delete(&name, &Default::default()).await.unwrap();
        let made_again = services.create(&create, &service).await.unwrap();
        let address = made_again.spec.and_then(|s| s.cluster_ip).unwrap();
        wait_until(
            "the host copy of a Service made again has its address",
            Duration::from_secs(60),
            || async {
                let copy = copies.get_opt(&host_name("default", &name)).await.ok()??;
                (copy.spec?.cluster_ip.as_deref() == Some(address.as_str())).then_some(())
            },
        )
        .await;
        services.delete(&name, &Default::default()).await.unwrap();
    }
}

/// A NodePort Service is refused, with the reason, while the admin grants
/// the tenant no node ports (the default quota); once granted, the node
/// port the tenant's Service shows is the one the host opened for its copy,
/// on create and on a change of type, and a tenant pod reaches the web
/// pods through it on its pool's node.
async fn node_ports_come_from_the_host_when_granted(
    client: &kube::Client,
    tenant: &Path,
    workloads: &str,
    dir: &Path,
) {
    use k8s_openapi::api::core::v1::{Node, ResourceQuota, Service};
    let file = dir.join("web-np.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Service\nmetadata: { name: web-np }\nspec:\n  type: NodePort\n  selector: { app: web }\n  ports: [{ port: 80, targetPort: http }]\n",
    )
    .unwrap();
    let create = || kubectl(tenant, &["create", "-f", file.to_str().unwrap()]);
    let (ok, out, err) = create();
    assert!(!ok, "no node ports by default: {out}{err}");
    assert!(
        err.contains("services.nodeports") && err.contains("spec.isolation.resourceQuota"),
        "the tenant is told why and who grants them: {err}"
    );

    let vcs: Api<vnest_api::VirtualCluster> = Api::namespaced(client.clone(), TENANTS);
    vcs.patch(
        SHOP,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({
            "spec": { "isolation": { "resourceQuota": { "services.nodeports": "2" } } }
        })),
    )
    .await
    .unwrap();
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), workloads);
    wait_until(
        "the host quota grants node ports",
        Duration::from_secs(120),
        || async {
            let quota = quotas.get("vnest-tenant").await.ok()?;
            let hard = quota.status?.hard?;
            (hard.get("services.nodeports")?.0 == "2").then_some(())
        },
    )
    .await;
    let (ok, out, err) = create();
    assert!(ok, "granted: {out}{err}");

    let host_services: Api<Service> = Api::namespaced(client.clone(), workloads);
    let node_port_of = |service: &Service| {
        service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref()?.first()?.node_port)
    };
    let tenant_node_port = |name: &str| {
        let (_, out, _) = kubectl(
            tenant,
            &[
                "get",
                "service",
                name,
                "-o",
                "jsonpath={.spec.ports[0].nodePort}",
            ],
        );
        out.trim().parse::<i32>().ok()
    };
    let copy = host_services
        .get(&host_name("default", "web-np"))
        .await
        .unwrap();
    assert_eq!(
        copy.spec.as_ref().unwrap().type_.as_deref(),
        Some("NodePort")
    );
    let node_port = tenant_node_port("web-np").unwrap();
    assert_eq!(
        node_port_of(&copy),
        Some(node_port),
        "the tenant's node port is the host's"
    );

    // Through the node port on the pool's node, from a tenant pod.
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.get("vnest-node1").await.unwrap();
    let address = node
        .status
        .and_then(|s| s.addresses)
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.type_ == "InternalIP")
        .unwrap()
        .address;
    let request = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {address} {node_port}");
    let page = wait_until(
        "a tenant pod reaches the node port",
        Duration::from_secs(90),
        || async {
            let (ok, out, _) = kubectl(tenant, &["exec", "podinfo", "--", "sh", "-c", &request]);
            (ok && out.contains("hello from")).then_some(out)
        },
    )
    .await;
    eprintln!("through {address}:{node_port}: {page}");

    // A ClusterIP Service changed to NodePort gets the host's port too.
    let (ok, out, err) = kubectl(
        tenant,
        &[
            "patch",
            "service",
            "web",
            "-p",
            r#"{"spec":{"type":"NodePort"}}"#,
        ],
    );
    assert!(ok, "{out}{err}");
    let changed = tenant_node_port("web").expect("web got a node port");
    // The webhook gave it from the host copy, and no sync of the tenant
    // Service as cached before the update closes it again.
    wait_until(
        "the host copy has the tenant's node port",
        Duration::from_secs(30),
        || async {
            let copy = host_services.get(&host_name("default", "web")).await.ok()?;
            (node_port_of(&copy) == Some(changed)).then_some(())
        },
    )
    .await;
    // And back: the host copy closes its node port.
    let (ok, out, err) = kubectl(
        tenant,
        &[
            "patch",
            "service",
            "web",
            "-p",
            r#"{"spec":{"type":"ClusterIP","ports":[{"name":"http","port":80,"targetPort":"http","nodePort":null}]}}"#,
        ],
    );
    assert!(ok, "{out}{err}");
    wait_until(
        "the host copy is ClusterIP again",
        Duration::from_secs(60),
        || async {
            let copy = host_services.get(&host_name("default", "web")).await.ok()?;
            (copy.spec?.type_.as_deref() == Some("ClusterIP")).then_some(())
        },
    )
    .await;
    let (ok, out, err) = kubectl(tenant, &["delete", "service", "web-np"]);
    assert!(ok, "{out}{err}");
}

/// The downward-API files of a tenant pod name it as the tenant sees it,
/// and follow a change of its labels.
/// The mounted token is bound to the pod and the node it runs on, as a
/// kubelet's is (the tenant's TokenReview says both), and the host
/// kubelet's wait for the token Secret, which the syncer writes once the
/// pod is placed, is not reported to the tenant.
async fn the_token_names_the_pod_and_its_node(tenant: &Path, web_pod: &str, dir: &Path) {
    let (ok, token, err) = kubectl(
        tenant,
        &[
            "exec",
            web_pod,
            "--",
            "cat",
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
        ],
    );
    assert!(ok && !token.is_empty(), "reading the token: {err}");
    let review = dir.join("review.json");
    std::fs::write(
        &review,
        serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": { "token": token.trim() },
        })
        .to_string(),
    )
    .unwrap();
    let (ok, out, err) = kubectl(
        tenant,
        &[
            "create",
            "-f",
            review.to_str().unwrap(),
            "-o",
            "jsonpath={.status.user.extra}",
        ],
    );
    assert!(ok, "TokenReview: {err}");
    let extra: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        extra["authentication.kubernetes.io/pod-name"],
        serde_json::json!([web_pod]),
        "{extra}"
    );
    assert_eq!(
        extra["authentication.kubernetes.io/node-name"],
        serde_json::json!(["vnest-node1"]),
        "{extra}"
    );
    let (_, reasons, _) = kubectl(
        tenant,
        &[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={web_pod}"),
            "-o",
            "jsonpath={.items[*].reason}",
        ],
    );
    assert!(!reasons.contains("FailedMount"), "{reasons}");
}

/// A restricted pod in `default` that runs `script` once, with a projected
/// volume of `sources` at `mount`.
fn projecting_pod(
    name: &str,
    script: &str,
    mount: &str,
    sources: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{ "name": "c", "image": "vnest.local/busybox:1",
                "command": ["sh", "-c", script],
                "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } },
                "volumeMounts": [{ "name": "projected", "mountPath": mount }] }],
            "volumes": [{ "name": "projected", "projected": { "sources": sources } }],
        },
    })
}

/// A ClusterTrustBundle projection is filled from the tenant's bundles
/// (here one holding the tenant's CA), not the host's; an optional source
/// that selects nothing is an empty file, as the kubelet makes it.
async fn trust_bundles_come_from_the_tenant(tenant: &Path, dir: &Path) {
    let (ok, ca, err) = kubectl(
        tenant,
        &[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
    );
    assert!(ok && ca.contains("BEGIN CERTIFICATE"), "{err}");
    let bundle = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "ClusterTrustBundle",
        "metadata": { "name": "tenant-roots" },
        "spec": { "trustBundle": ca },
    });
    let pod = projecting_pod(
        "trusting",
        "cat /trust/roots.pem; echo none=$(wc -c < /trust/none.pem)",
        "/trust",
        serde_json::json!([
            { "clusterTrustBundle": { "name": "tenant-roots", "path": "roots.pem" } },
            { "clusterTrustBundle": { "signerName": "example.com/none", "labelSelector": {},
                                      "path": "none.pem", "optional": true } },
        ]),
    );
    apply(tenant, dir, "bundle.json", &bundle.to_string());
    apply(tenant, dir, "trusting.json", &pod.to_string());
    let out = wait_until(
        "the trust bundle is in the pod",
        Duration::from_secs(90),
        || async {
            let (ok, out, _) = kubectl(tenant, &["logs", "trusting"]);
            (ok && out.contains("none=")).then_some(out)
        },
    )
    .await;
    let first_line = ca.lines().nth(1).unwrap();
    assert!(out.contains(first_line), "the tenant's CA: {out}");
    assert!(out.contains("none=0"), "{out}");
}

/// A podCertificate projection is requested from the tenant's signer, as
/// a kubelet requests it: a PodCertificateRequest in the tenant naming the
/// pod, its ServiceAccount and its node, with a request the key signs.
/// The test is that signer: it issues a certificate for the requested key,
/// and the pod starts with the key and the chain at its paths.
async fn pod_certificates_come_from_the_tenants_signer(tenant: &Path, dir: &Path) {
    use k8s_openapi::api::certificates::v1::PodCertificateRequest;
    let pod = projecting_pod(
        "certified",
        "cat /tls/chain.pem; head -1 /tls/key.pem; grep -c BEGIN /tls/bundle.pem",
        "/tls",
        serde_json::json!([
            { "podCertificate": { "signerName": "example.com/vnest-test", "keyType": "ECDSAP256",
                "credentialBundlePath": "bundle.pem", "keyPath": "key.pem", "certificateChainPath": "chain.pem" } },
        ]),
    );
    apply(tenant, dir, "certified.json", &pod.to_string());
    let client = tenant_client(tenant).await;
    let requests: Api<PodCertificateRequest> = Api::namespaced(client, "default");
    let request = wait_until(
        "the syncer asks the tenant's signer",
        Duration::from_secs(60),
        || async {
            let list = requests.list(&ListParams::default()).await.unwrap();
            list.items
                .into_iter()
                .find(|r| r.spec.pod_name == "certified")
        },
    )
    .await;
    assert_eq!(request.spec.node_name, "vnest-node1");
    assert!(!request.spec.node_uid.is_empty());
    assert_eq!(request.spec.service_account_name, "default");

    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let der = rustls_pki_types::CertificateSigningRequestDer::from(
        request.spec.stub_pkc_s10_request.0.clone(),
    );
    let mut leaf = rcgen::CertificateSigningRequestParams::from_der(&der).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = |seconds: i64| time::OffsetDateTime::from_unix_timestamp(now + seconds).unwrap();
    let rfc3339 = |seconds: i64| {
        at(seconds)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    leaf.params.not_before = at(0);
    leaf.params.not_after = at(7200);
    let chain = leaf.signed_by(&issuer).unwrap().pem();
    let status = serde_json::json!({ "status": {
        "certificateChain": chain,
        "notBefore": rfc3339(0), "notAfter": rfc3339(7200), "beginRefreshAt": rfc3339(3600),
        "conditions": [{ "type": "Issued", "status": "True", "reason": "Issued",
                         "message": "issued by the test", "lastTransitionTime": rfc3339(0) }],
    }});
    requests
        .patch_status(
            request.metadata.name.as_deref().unwrap(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await
        .unwrap();
    let out = wait_until(
        "the pod starts with its certificate",
        Duration::from_secs(120),
        || async {
            let (ok, out, _) = kubectl(tenant, &["logs", "certified"]);
            (ok && out.contains("PRIVATE KEY")).then_some(out)
        },
    )
    .await;
    assert!(
        out.contains(chain.lines().nth(1).unwrap()),
        "the chain: {out}"
    );
    assert!(
        out.contains("-----BEGIN PRIVATE KEY-----"),
        "the key: {out}"
    );
    // The bundle is the key then the chain.
    assert!(
        out.trim_end().ends_with('2'),
        "two PEM blocks in the bundle: {out}"
    );
}

async fn downward_api_files_show_the_tenant_pod(tenant: &Path) {
    let (_, uid, _) = kubectl(
        tenant,
        &["get", "pod", "podinfo", "-o", "jsonpath={.metadata.uid}"],
    );
    let expected = format!("name=podinfo namespace=default uid={}", uid.trim());
    let first = wait_until(
        "podinfo prints its files",
        Duration::from_secs(120),
        || async {
            let (_, out, _) = kubectl(tenant, &["logs", "podinfo", "--tail=4"]);
            out.contains("name=").then_some(out)
        },
    )
    .await;
    assert!(first.contains(&expected), "{expected} in {first}");
    assert!(first.contains(r#"app="podinfo""#), "{first}");
    assert!(first.contains("tier=-"), "{first}");
    let (ok, _, err) = kubectl(tenant, &["label", "pod", "podinfo", "tier=gold"]);
    assert!(ok, "{err}");
    // The kubelet rewrites the files within its sync period (a minute).
    wait_until(
        "the label change reaches the pod's files",
        Duration::from_secs(180),
        || async {
            let (_, out, _) = kubectl(tenant, &["logs", "podinfo", "--tail=4"]);
            (out.contains("tier=gold") && out.contains(r#"tier="gold""#)).then_some(out)
        },
    )
    .await;
}

/// A pod created bound to a node of the pool (`nodeName`, as a DaemonSet of
/// old or the conformance suite's host-port tests make them) runs there:
/// having no host pod yet does not read as a host pod gone.
async fn a_pod_created_on_a_pool_node_runs_there(
    client: &kube::Client,
    wl: &str,
    tenant: &Path,
    dir: &Path,
) {
    apply_sleeper(tenant, dir, "prebound", "nodeName: vnest-node1");
    wait_for_pod(
        tenant,
        "prebound",
        "{.status.phase} {.spec.nodeName}",
        "Running vnest-node1",
        Duration::from_secs(120),
    )
    .await;
    // No finalizer of the syncer's: deleted outright (forced), the tenant
    // pod is gone at once and its host pod follows.
    let (ok, finalizers, err) = kubectl(
        tenant,
        &[
            "get",
            "pod",
            "prebound",
            "-o",
            "jsonpath={.metadata.finalizers}",
        ],
    );
    assert!(ok && finalizers.trim().is_empty(), "{finalizers}{err}");
    let (ok, out, err) = kubectl(
        tenant,
        &["delete", "pod", "prebound", "--grace-period=0", "--force"],
    );
    assert!(ok, "{out}{err}");
    let host_pods: Api<Pod> = Api::namespaced(client.clone(), wl);
    wait_until(
        "the host pod of a pod deleted outright is gone",
        Duration::from_secs(60),
        || async {
            host_pods
                .get_opt(&host_name("default", "prebound"))
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
}

/// A deleted pod that a finalizer of the tenant's holds after its host pod
/// is gone leaves once the finalizer is removed, as a kubelet lets it go
/// (the conformance spec "namespace deletion should delete pod first").
async fn a_pod_held_by_a_finalizer_goes_once_it_is_removed(tenant: &Path, dir: &Path) {
    apply_sleeper(tenant, dir, "held", "nodeName: vnest-node1");
    let (ok, out, err) = kubectl(
        tenant,
        &[
            "patch",
            "pod",
            "held",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
        ],
    );
    assert!(ok, "{out}{err}");
    wait_for_pod(
        tenant,
        "held",
        "{.status.phase}",
        "Running",
        Duration::from_secs(120),
    )
    .await;
    let (ok, out, err) = kubectl(tenant, &["delete", "pod", "held", "--wait=false"]);
    assert!(ok, "{out}{err}");
    // The syncer's cleanup is done when it has ended the deletion (as a
    // kubelet does, with no grace period left) and only the tenant's
    // finalizer holds the pod.
    wait_for_pod(
        tenant,
        "held",
        "{.metadata.deletionGracePeriodSeconds} {.metadata.finalizers}",
        r#"0 ["example.com/hold"]"#,
        Duration::from_secs(60),
    )
    .await;
    let (ok, out, err) = kubectl(
        tenant,
        &[
            "patch",
            "pod",
            "held",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    );
    assert!(ok, "{out}{err}");
    wait_until(
        "the released pod is gone",
        Duration::from_secs(30),
        || async {
            let (_, _, err) = kubectl(tenant, &["get", "pod", "held"]);
            err.contains("NotFound").then_some(())
        },
    )
    .await;
}

/// A pod with a subdomain (a StatefulSet's) reads its tenant FQDN in its
/// `/etc/hosts`, next to its address, in every container; the host
/// kubelet's file would name the host namespace. The syncer's init
/// container that writes it is not in the tenant's status.
async fn a_pod_with_a_subdomain_finds_its_tenant_name_in_etc_hosts(tenant: &Path, dir: &Path) {
    apply(
        tenant,
        dir,
        "named.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: { name: named }
spec:
  hostname: db-0
  subdomain: db
  terminationGracePeriodSeconds: 1
  securityContext: { runAsNonRoot: true, runAsUser: 65534, seccompProfile: { type: RuntimeDefault } }
  initContainers:
    - name: setup
      image: vnest.local/busybox:1
      command: [sh, -c, "grep -q db-0.db.default.svc.cluster.local /etc/hosts"]
      securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
  containers:
    - name: app
      image: vnest.local/busybox:1
      command: [sh, -c, "cat /etc/hosts; sleep 3600"]
      securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
"#,
    );
    let hosts = wait_until(
        "the named pod prints its /etc/hosts",
        Duration::from_secs(120),
        || async {
            let (_, out, _) = kubectl(tenant, &["logs", "named"]);
            out.contains("localhost").then_some(out)
        },
    )
    .await;
    let (_, status, _) = kubectl(
        tenant,
        &[
            "get",
            "pod",
            "named",
            "-o",
            "jsonpath={.status.podIP} {.status.initContainerStatuses[*].name}",
        ],
    );
    let (ip, init) = status.trim().split_once(' ').unwrap_or((status.trim(), ""));
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file."),
        "{hosts}"
    );
    let line = hosts
        .lines()
        .find(|l| l.contains("db-0"))
        .unwrap_or_default();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        fields,
        [ip, "db-0.db.default.svc.cluster.local", "db-0"],
        "{hosts}"
    );
    assert_eq!(init, "setup", "only the tenant's init container: {status}");
}

/// A tenant labels its copy of a pool node, and a pod selecting that label
/// runs there, though the host's node never gets the label: the pod waits
/// while no node of the tenant's has it, and runs once one has.
async fn pods_choose_nodes_by_the_tenants_node_labels(
    client: &kube::Client,
    tenant: &Path,
    dir: &Path,
) {
    apply_sleeper(
        tenant,
        dir,
        "picky",
        "nodeSelector: { vnest.test/disk: ssd }",
    );
    wait_for_pod(
        tenant,
        "picky",
        r#"{.status.conditions[?(@.type=="PodScheduled")].reason}"#,
        "Unschedulable",
        Duration::from_secs(60),
    )
    .await;
    let (ok, _, err) = kubectl(
        tenant,
        &["label", "node", "vnest-node1", "vnest.test/disk=ssd"],
    );
    assert!(ok, "{err}");
    wait_for_pod(
        tenant,
        "picky",
        "{.status.phase} {.spec.nodeName}",
        "Running vnest-node1",
        Duration::from_secs(120),
    )
    .await;
    let host_node = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get("vnest-node1")
        .await
        .unwrap();
    let host_labels = host_node.metadata.labels.unwrap_or_default();
    assert!(
        !host_labels.contains_key("vnest.test/disk"),
        "the host node keeps its own labels: {host_labels:?}"
    );
}

async fn syncer_log(client: &kube::Client, control_plane: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), control_plane);
    let Ok(list) = pods
        .list(&ListParams::default().labels("vnest.dev/component=syncer"))
        .await
    else {
        return "(no syncer pod)".to_owned();
    };
    let mut out = String::new();
    for pod in list.items {
        let name = pod.metadata.name.unwrap_or_default();
        let log = pods
            .logs(&name, &kube::api::LogParams::default())
            .await
            .unwrap_or_else(|e| e.to_string());
        out.push_str(&format!("--- {name}\n{log}"));
    }
    out
}

/// What the tenant's syncer serves at /metrics.
async fn syncer_metrics(client: &kube::Client, control_plane: &str) -> String {
    vnest_tests::get_from_pod(
        client,
        control_plane,
        "vnest.dev/component=syncer",
        8080,
        "/metrics",
    )
    .await
}

/// Applies pod `name` in the tenant's `default` namespace: one busybox
/// container sleeping an hour, as Pod Security `restricted` asks, with
/// `spec` (one line of YAML) added to its spec.
fn apply_sleeper(tenant: &Path, dir: &Path, name: &str, spec: &str) {
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{ name: {name} }}
spec:
  {spec}
  terminationGracePeriodSeconds: 1
  securityContext: {{ runAsNonRoot: true, runAsUser: 65534, seccompProfile: {{ type: RuntimeDefault }} }}
  containers:
    - name: app
      image: vnest.local/busybox:1
      command: [sleep, "3600"]
      securityContext: {{ allowPrivilegeEscalation: false, capabilities: {{ drop: [ALL] }} }}
"#
    );
    apply(tenant, dir, &format!("{name}.yaml"), &yaml);
}

/// Waits until tenant pod `pod` (in `default`) reads `expected` through
/// `jsonpath`.
async fn wait_for_pod(tenant: &Path, pod: &str, jsonpath: &str, expected: &str, timeout: Duration) {
    let what = format!("pod {pod}: {jsonpath} is {expected}");
    let template = format!("jsonpath={jsonpath}");
    wait_until(&what, timeout, || async {
        let (_, out, _) = kubectl(tenant, &["get", "pod", pod, "-o", &template]);
        (out.trim() == expected).then_some(())
    })
    .await;
}

fn apply(kubeconfig: &Path, dir: &Path, file: &str, yaml: &str) {
    let path = dir.join(file);
    std::fs::write(&path, yaml).unwrap();
    let (ok, out, err) = kubectl(kubeconfig, &["apply", "-f", &path.display().to_string()]);
    assert!(ok, "kubectl apply {file}: {out}{err}");
}

/// `kubectl exec` and `port-forward` from the tenant reach the pod through
/// the syncer's kubelet proxy; the proxy itself answers only the tenant
/// apiserver's kubelet-client certificate and only the kubelet calls it
/// serves.
async fn kubelet_calls_of_the_tenant_work(
    client: &kube::Client,
    tenant: &Path,
    cp: &str,
    web_pod: &str,
    dir: &Path,
) {
    let (ok, out, err) = kubectl(
        tenant,
        &["exec", web_pod, "--", "cat", "/tmp/www/index.html"],
    );
    assert!(
        ok && out.contains("hello from"),
        "tenant kubectl exec: {out}{err}"
    );
    let (ok, _, err) = kubectl(tenant, &["exec", web_pod, "--", "sh", "-c", "exit 3"]);
    assert!(
        !ok && err.contains("exit code 3"),
        "exec's exit code: {err}"
    );
    // The tenant's apiserver reaches its pods, as a cluster's does (the
    // `pods/proxy` subresource here; admission webhooks and aggregated
    // APIs the same way), through the workloads namespace's fence.
    let (ok, out, err) = kubectl(
        tenant,
        &[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{web_pod}:8080/proxy/index.html"),
        ],
    );
    assert!(
        ok && out.contains("hello from"),
        "the apiserver's pod proxy: {out}{err}"
    );

    let kubectl_binary = vnest_tests::upstream_binaries()
        .locate_binary("kubectl")
        .unwrap();
    let mut forward = tokio::process::Command::new(kubectl_binary)
        .arg("--kubeconfig")
        .arg(tenant)
        .args(["port-forward", &format!("pod/{web_pod}"), "18080:8080"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let page = wait_until(
        "a page through kubectl port-forward",
        Duration::from_secs(30),
        || async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect("127.0.0.1:18080")
                .await
                .ok()?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
            let mut page = String::new();
            stream.read_to_string(&mut page).await.ok()?;
            page.contains("hello from").then_some(page)
        },
    )
    .await;
    eprintln!("through port-forward: {page}");
    forward.kill().await.ok();

    // Straight to the proxy: the tenant's admin certificate is not the
    // apiserver's kubelet client; paths a real kubelet would also serve are
    // not served.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), cp);
    let pki = secrets.get("vnest-pki").await.unwrap().data.unwrap();
    for key in [
        "admin.crt",
        "admin.key",
        "apiserver-kubelet-client.crt",
        "apiserver-kubelet-client.key",
    ] {
        std::fs::write(dir.join(key), &pki[key].0).unwrap();
    }
    // Through a port-forward: NetworkPolicy admits only the tenant's
    // apiserver to the proxy's port, so this machine reaches it as an admin
    // with port-forward rights would.
    let pods: Api<Pod> = Api::namespaced(client.clone(), cp);
    let syncer_pod = pods
        .list(&ListParams::default().labels("vnest.dev/component=syncer"))
        .await
        .unwrap()
        .items
        .into_iter()
        .find_map(|p| p.metadata.name)
        .unwrap();
    let (proxy_port, forward) = vnest_tests::forward_local(pods, &syncer_pod, 10250).await;
    let proxy = format!("127.0.0.1:{proxy_port}");
    let empty = dir.join("empty-kubeconfig");
    std::fs::write(&empty, "apiVersion: v1\nkind: Config\n").unwrap();
    let raw = |who: &str, path: &str| {
        let (ok, out, err) = kubectl(
            &empty,
            &[
                &format!("--server=https://{proxy}"),
                "--insecure-skip-tls-verify",
                &format!(
                    "--client-certificate={}",
                    dir.join(format!("{who}.crt")).display()
                ),
                &format!("--client-key={}", dir.join(format!("{who}.key")).display()),
                "get",
                "--raw",
                path,
            ],
        );
        (ok, format!("{out}{err}"))
    };
    let logs = format!("/containerLogs/default/{web_pod}/web");
    let (ok, said) = raw("apiserver-kubelet-client", &logs);
    assert!(
        ok && said.contains("greeting=hello"),
        "the apiserver's identity: {said}"
    );
    let (ok, said) = raw("admin", &logs);
    assert!(!ok && said.contains("Forbidden"), "anyone else: {said}");
    // The Service-address webhook on the same listener: nobody but the
    // tenant apiserver can make the syncer create host Services.
    let review = dir.join("review.json");
    std::fs::write(
        &review,
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"CREATE","namespace":"default","object":{"apiVersion":"v1","kind":"Service","metadata":{"name":"forged"},"spec":{"ports":[{"port":80}]}}}}"#,
    )
    .unwrap();
    let (ok, out, err) = kubectl(
        &empty,
        &[
            &format!("--server=https://{proxy}"),
            "--insecure-skip-tls-verify",
            &format!("--client-certificate={}", dir.join("admin.crt").display()),
            &format!("--client-key={}", dir.join("admin.key").display()),
            "create",
            "--raw",
            "/admission/services",
            "-f",
            review.to_str().unwrap(),
        ],
    );
    assert!(
        !ok && format!("{out}{err}").contains("Forbidden"),
        "a forged review: {out}{err}"
    );
    let (ok, said) = raw("apiserver-kubelet-client", "/stats/summary");
    assert!(
        !ok && said.contains("NotFound"),
        "no stats of the host: {said}"
    );
    forward.abort();
    let metrics = syncer_metrics(client, cp).await;
    assert!(
        metrics.contains("vnest_syncer_kubelet_requests_total{kind=\"exec\",code=\"101\"}"),
        "{metrics}"
    );
}

const SELECTORLESS: &str = r#"
apiVersion: v1
kind: Service
metadata: { name: web-external }
spec:
  ports: [{ name: http, port: 80, targetPort: 8080 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-external-1
  labels: { kubernetes.io/service-name: web-external, endpointslice.kubernetes.io/managed-by: tenant-admin }
addressType: IPv4
ports: [{ name: http, port: 8080 }]
endpoints: [{ addresses: ["@POD_IP@"] }]
---
apiVersion: v1
kind: Service
metadata: { name: to-node }
spec:
  ports: [{ name: kubelet, port: 10250 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: to-node-1
  labels: { kubernetes.io/service-name: to-node, endpointslice.kubernetes.io/managed-by: tenant-admin }
addressType: IPv4
ports: [{ name: kubelet, port: 10250 }]
endpoints: [{ addresses: ["@NODE_IP@"] }]
"#;

const INGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: web }
spec:
  rules:
    - host: web.shop.example.com
      http:
        paths: [{ path: /, pathType: Prefix, backend: { service: { name: web, port: { name: http } } } }]
"#;

/// A tenant claim goes down, the host binds it (local volumes on the pool's
/// node), a pod writes to it; the tenant sees its claim Bound to a volume
/// that names no host path, and the host's StorageClasses. Deleting the
/// claim removes the host claim and the tenant's volume.
async fn claims_are_bound_to_host_volumes(
    client: &kube::Client,
    tenant: &Path,
    wl: &str,
    cp: &str,
    dir: &Path,
) {
    let (ok, classes, err) = kubectl(tenant, &["get", "storageclass", "-o", "name"]);
    assert!(ok, "{err}");
    if !classes.contains("storageclass.storage.k8s.io/local") {
        panic!(
            "the host's classes: {classes}\nsyncer log:\n{}",
            syncer_log(client, cp).await
        );
    }
    apply(tenant, dir, "data.yaml", DATA);
    let volume = wait_until(
        "the tenant claim is Bound and its pod Runs",
        Duration::from_secs(180),
        || async {
            let (_, phase, _) = kubectl(
                tenant,
                &["get", "pod", "writer", "-o", "jsonpath={.status.phase}"],
            );
            let (_, claim, _) = kubectl(
                tenant,
                &[
                    "get",
                    "pvc",
                    "data",
                    "-o",
                    "jsonpath={.status.phase} {.spec.volumeName}",
                ],
            );
            let (bound, volume) = claim.split_once(' ')?;
            (phase == "Running" && bound == "Bound" && !volume.is_empty())
                .then(|| volume.to_owned())
        },
    )
    .await;
    let (_, source, _) = kubectl(
        tenant,
        &[
            "get",
            "pv",
            &volume,
            "-o",
            "jsonpath={.spec.csi.driver} {.spec.local.path}",
        ],
    );
    assert_eq!(
        source.trim(),
        "host-volume.vnest.dev",
        "no host path in the tenant: {source}"
    );
    let (ok, out, err) = kubectl(tenant, &["exec", "writer", "--", "cat", "/data/note"]);
    assert!(
        ok && out.contains("kept"),
        "the pod wrote to its volume: {out}{err}"
    );
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), wl);
    let host_claim = claims.get(&host_name("default", "data")).await.unwrap();
    assert_eq!(
        host_claim.spec.unwrap().volume_name.as_deref(),
        Some(volume.as_str())
    );

    let (ok, out, err) = kubectl(
        tenant,
        &[
            "delete",
            "-f",
            &dir.join("data.yaml").display().to_string(),
            "--wait=true",
        ],
    );
    assert!(ok, "{out}{err}");
    wait_until(
        "the claim's copies are gone",
        Duration::from_secs(120),
        || async {
            let on_host = claims.get_opt(&host_name("default", "data")).await.ok()?;
            let (_, volumes, _) = kubectl(tenant, &["get", "pv", "-o", "name"]);
            (on_host.is_none() && volumes.trim().is_empty()).then_some(())
        },
    )
    .await;
}

const DATA: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: { name: data }
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local
  resources: { requests: { storage: 1Gi } }
---
apiVersion: v1
kind: Pod
metadata: { name: writer }
spec:
  terminationGracePeriodSeconds: 1
  securityContext: { runAsNonRoot: true, runAsUser: 65534, fsGroup: 65534, seccompProfile: { type: RuntimeDefault } }
  containers:
    - name: writer
      image: vnest.local/busybox:1
      command: [sh, -c, "echo kept > /data/note && exec sleep 3600"]
      volumeMounts: [{ name: data, mountPath: /data }]
      securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
  volumes: [{ name: data, persistentVolumeClaim: { claimName: data } }]
"#;

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
              # Retried: the NetworkPolicy enforcer admits a new pod's
              # traffic a moment after the pod starts.
              for i in $(seq 1 30); do
                HOME=/tmp kubectl get --raw /api >/dev/null && echo token-accepted && break
                sleep 1
              done
              for i in $(seq 1 30); do
                SA=/var/run/secrets/kubernetes.io/serviceaccount
                HOME=/tmp kubectl --server=https://kubernetes.default.svc --token="$(cat $SA/token)" \
                  --certificate-authority=$SA/ca.crt --request-timeout=5s get --raw /api >/dev/null && echo apiserver-by-name && break
                sleep 1
              done
              echo checks-done
              mkdir -p /tmp/www && echo "hello from $HOSTNAME" > /tmp/www/index.html
              exec httpd -f -p 8080 -h /tmp/www
          ports: [{ name: http, containerPort: 8080 }]
          readinessProbe: { tcpSocket: { port: http }, periodSeconds: 1 }
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: v1
kind: Service
metadata: { name: web-direct }
spec:
  clusterIP: None
  selector: { app: web }
  ports: [{ name: http, port: 8080 }]
"#;

/// A tenant pod printing its downward-API files every two seconds.
const PODINFO: &str = r#"
apiVersion: v1
kind: Pod
metadata: { name: podinfo, labels: { app: podinfo } }
spec:
  terminationGracePeriodSeconds: 1
  securityContext: { runAsNonRoot: true, runAsUser: 65534, seccompProfile: { type: RuntimeDefault } }
  containers:
    - name: podinfo
      image: vnest.local/clients:1
      imagePullPolicy: Never
      command:
        - sh
        - -c
        - |
          while true; do
            echo "name=$(cat /info/name) namespace=$(cat /all/namespace) uid=$(cat /info/uid)"
            echo "tier=$(cat /info/tier 2>/dev/null || true)-"
            tr '\n' ' ' < /all/labels; echo
            sleep 2
          done
      volumeMounts:
        - { name: info, mountPath: /info }
        - { name: all, mountPath: /all }
      securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
  volumes:
    - name: info
      downwardAPI:
        items:
          - { path: name, fieldRef: { fieldPath: metadata.name } }
          - { path: uid, fieldRef: { fieldPath: metadata.uid } }
          - { path: tier, fieldRef: { fieldPath: "metadata.labels['tier']" } }
    - name: all
      projected:
        sources:
          - downwardAPI:
              items:
                - { path: namespace, fieldRef: { fieldPath: metadata.namespace } }
                - { path: labels, fieldRef: { fieldPath: metadata.labels } }
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
          get() { printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 "$1" "${2:-80}" | grep -q "hello from web"; }
          try() { for i in $(seq 1 30); do get "$@" && return 0; sleep 2; done; return 1; }
          try web.default.svc.cluster.local. && echo BY-NAME
          try "$WEB_IP" && echo BY-IP
          try web-direct.default.svc.cluster.local. 8080 && echo HEADLESS
          try web-external.default.svc.cluster.local. && echo SELECTORLESS
          # The tenant kubelet's Service variables: the tenant Service's address.
          [ "$WEB_SERVICE_HOST" = "$WEB_IP" ] && [ "$WEB_SERVICE_PORT_HTTP" = 80 ] && echo SERVICE-LINKS
          true
      securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
"#;

/// Pods for simulated nodes: they tolerate kwok's taint and need no DNS or
/// token, so the test measures the syncer's bookkeeping, not the machine.
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
