//! The supervisor's desired host namespaces on a real kube-apiserver: they
//! are accepted as computed, and their Pod Security labels really make the
//! apiserver refuse a privileged pod in a restricted tenant namespace, while
//! a baseline one admits what baseline allows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use vnest_api::{PodSecurityLevel, VirtualCluster};
use vnest_supervisor::desired::namespaces::host_namespaces;
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
