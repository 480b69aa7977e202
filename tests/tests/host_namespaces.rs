//! The supervisor's desired host namespaces on a real kube-apiserver: they
//! are accepted as computed, and their Pod Security labels really make the
//! apiserver refuse a privileged pod in a restricted tenant namespace, while
//! a baseline one admits what baseline allows; the quota and limit range of
//! a workloads namespace are enforced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, ResourceQuota, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use vnest_api::{PodSecurityLevel, VirtualCluster};
use vnest_supervisor::desired::namespaces::host_namespaces;
use vnest_supervisor::desired::quota::{limit_range, resource_quota};
use vnest_tests::TestControlPlane;

fn pod(name: &str, security_context: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "containers": [{ "name": "c", "image": "vnest.local/busybox:1", "securityContext": security_context }] },
    }))
    .unwrap()
}

#[tokio::test]
async fn pod_security_labels_of_the_host_namespaces_are_enforced() {
    let cp = TestControlPlane::start("psa").await;
    let client = cp.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());

    let mut restricted = VirtualCluster::new("strict", Default::default());
    restricted.metadata.namespace = Some("tenants".into());
    let mut baseline = VirtualCluster::new("lenient", Default::default());
    baseline.metadata.namespace = Some("tenants".into());
    baseline.spec.isolation.pod_security = PodSecurityLevel::Baseline;

    let [strict_cp, strict_wl] = host_namespaces(&restricted);
    let [_, lenient_wl] = host_namespaces(&baseline);
    for ns in [&strict_cp, &strict_wl, &lenient_wl] {
        namespaces.create(&PostParams::default(), ns).await.unwrap();
    }

    let privileged = pod("root", json!({ "privileged": true }));
    let plain = pod("plain", json!({}));
    for ns in [&strict_wl, &strict_cp] {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns.metadata.name.as_deref().unwrap());
        for candidate in [&privileged, &plain] {
            // `plain` lacks runAsNonRoot, seccomp and dropped capabilities:
            // restricted refuses it too.
            let err = pods
                .create(&PostParams::default(), candidate)
                .await
                .expect_err("restricted refuses");
            let kube::Error::Api(status) = err else {
                panic!("{err}")
            };
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status
                    .message
                    .contains("violates PodSecurity \"restricted:latest\""),
                "{}",
                status.message
            );
        }
    }

    let lenient: Api<Pod> =
        Api::namespaced(client.clone(), lenient_wl.metadata.name.as_deref().unwrap());
    let err = lenient
        .create(&PostParams::default(), &privileged)
        .await
        .expect_err("baseline refuses privileged");
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert!(
        status
            .message
            .contains("violates PodSecurity \"baseline:latest\""),
        "{}",
        status.message
    );
    lenient
        .create(&PostParams::default(), &plain)
        .await
        .expect("baseline admits a plain pod");
    cp.stop().await;
}

/// A pod the restricted level admits.
fn hardened_pod(name: &str) -> Pod {
    pod(
        name,
        json!({
            "runAsNonRoot": true,
            "runAsUser": 65534,
            "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"] },
            "seccompProfile": { "type": "RuntimeDefault" },
        }),
    )
}

#[tokio::test]
async fn the_quota_and_limit_range_of_a_workloads_namespace_are_enforced() {
    let cp = TestControlPlane::start("quota").await;
    let client = cp.client();
    let mut vc = VirtualCluster::new("capped", Default::default());
    vc.metadata.namespace = Some("tenants".into());
    vc.spec
        .isolation
        .resource_quota
        .insert("pods".into(), Quantity("2".into()));
    let [_, workloads] = host_namespaces(&vc);
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &workloads)
        .await
        .unwrap();
    let ns = workloads.metadata.name.clone().unwrap();
    Api::<ResourceQuota>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &resource_quota(&vc))
        .await
        .unwrap();
    Api::<LimitRange>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &limit_range(&vc))
        .await
        .unwrap();

    // Admission refuses creates ("status unknown for quota") until the
    // controller-manager has computed the quota's status once.
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns);
    for _ in 0..200 {
        let quota = quotas.get("vnest-tenant").await.unwrap();
        if quota.status.and_then(|s| s.hard).is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let first = pods
        .create(&PostParams::default(), &hardened_pod("p1"))
        .await
        .unwrap();
    let requests = first.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap()
        .requests
        .unwrap();
    assert_eq!(
        requests.get("cpu"),
        Some(&Quantity("1m".into())),
        "the limit range filled in requests"
    );
    pods.create(&PostParams::default(), &hardened_pod("p2"))
        .await
        .unwrap();
    let err = pods
        .create(&PostParams::default(), &hardened_pod("p3"))
        .await
        .expect_err("a third pod exceeds pods: 2");
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert!(
        status.message.contains("exceeded quota"),
        "{}",
        status.message
    );

    let nodeport: Service = serde_json::from_value(json!({
        "metadata": { "name": "np" },
        "spec": { "type": "NodePort", "ports": [{ "port": 80 }] },
    }))
    .unwrap();
    let err = Api::<Service>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &nodeport)
        .await
        .expect_err("no node ports for tenants by default");
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert!(
        status.message.contains("services.nodeports"),
        "{}",
        status.message
    );
    cp.stop().await;
}
