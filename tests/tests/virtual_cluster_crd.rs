//! The VirtualCluster CRD on a real kube-apiserver: it installs, a valid
//! object gets the documented defaults, and each invalid one is refused by
//! the schema with the message that says what to fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, CustomResourceExt};
use serde_json::json;
use vnest_api::{NodePoolMode, PodSecurityLevel, VirtualCluster};
use vnest_tests::TestControlPlane;

async fn install_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &VirtualCluster::crd())
        .await
        .unwrap();
    for _ in 0..100 {
        let crd = crds.get("virtualclusters.vnest.dev").await.unwrap();
        let established = crd.status.and_then(|s| s.conditions).is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
        if established {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the CRD never became Established");
}

/// Untyped, so that objects the Rust type could not even hold reach the
/// apiserver's validation.
fn object(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "vnest.dev/v1alpha1",
        "kind": "VirtualCluster",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap()
}

#[tokio::test]
async fn the_schema_defaults_valid_clusters_and_refuses_invalid_ones_with_a_reason() {
    let cp = TestControlPlane::start("crd").await;
    let client = cp.client();
    install_crd(&client).await;
    let vcs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::erase::<VirtualCluster>(&()),
    );
    let valid = json!({ "nodePool": { "nodeSelector": { "pool": "a" } } });
    vcs.create(&PostParams::default(), &object("ok", valid))
        .await
        .unwrap();
    let typed: Api<VirtualCluster> = Api::namespaced(client.clone(), "default");
    let spec = typed.get("ok").await.unwrap().spec;
    assert_eq!(spec.control_plane.replicas, 1);
    assert_eq!(spec.node_pool.mode, NodePoolMode::Dedicated);
    assert_eq!(spec.isolation.pod_security, PodSecurityLevel::Restricted);
    assert!(
        spec.isolation.network_policy,
        "NetworkPolicy is on by default"
    );
    assert!(!spec.paused);
    assert_eq!(spec.isolation.pod_labels, vnest_api::PodLabels::Prefixed);
    assert_eq!(spec.node_pool.scheduler, vnest_api::PodScheduler::Host);
    assert!(
        spec.isolation.ingress.hosts.is_empty(),
        "no ingress host by default"
    );

    // A Shared pool with a sandbox, or with the shared kernel accepted.
    for (name, spec) in [
        (
            "shared-sandboxed",
            json!({ "nodePool": { "mode": "Shared" }, "isolation": { "runtimeClassName": "gvisor" } }),
        ),
        (
            "shared-accepted",
            json!({ "nodePool": { "mode": "Shared", "acceptSharedKernel": true } }),
        ),
        (
            "tenant-scheduled",
            json!({ "nodePool": { "nodeSelector": { "pool": "a" }, "scheduler": "Tenant" } }),
        ),
        (
            "ingress-granted",
            json!({ "nodePool": { "nodeSelector": { "pool": "a" } },
                    "isolation": { "ingress": { "hosts": ["*", "shop.example.com", "*.shop.example.com"], "classNames": ["public"] } } }),
        ),
        (
            "backed-up",
            json!({ "nodePool": { "nodeSelector": { "pool": "a" } }, "backup": { "schedule": "30 2 * * 1-5" } }),
        ),
    ] {
        vcs.create(&PostParams::default(), &object(name, spec))
            .await
            .unwrap();
    }
    let backup = typed.get("backed-up").await.unwrap().spec.backup.unwrap();
    assert_eq!(
        (backup.keep, backup.storage.0.as_str()),
        (7, "5Gi"),
        "defaults"
    );

    let pool = json!({ "nodeSelector": { "pool": "a" } });
    let cases = [
        ("no-pool", json!({}), "spec.nodePool: Required value"),
        (
            "empty-pool",
            json!({ "nodePool": {} }),
            "a Dedicated node pool needs a nodeSelector",
        ),
        (
            "both-expiries",
            json!({ "nodePool": pool, "ttl": "2h", "expiresAt": "2030-01-01T00:00:00Z" }),
            "set either ttl or expiresAt, not both",
        ),
        (
            "bad-ttl",
            json!({ "nodePool": pool, "ttl": "2 hours" }),
            "must be a duration like 30m",
        ),
        (
            "bad-version",
            json!({ "nodePool": pool, "kubernetesVersion": "1.37" }),
            "must be a Kubernetes release like v1.37.2",
        ),
        (
            "no-replicas",
            json!({ "nodePool": pool, "controlPlane": { "replicas": 0 } }),
            "must be between 1 and 5",
        ),
        (
            "bad-args",
            json!({ "nodePool": pool, "controlPlane": { "extraApiServerArgs": ["--v"] } }),
            "each argument must look like --name=value",
        ),
        (
            "bad-expose",
            json!({ "nodePool": pool, "controlPlane": { "expose": { "type": "Ingress" } } }),
            "Unsupported value: \"Ingress\"",
        ),
        (
            "two-datastores",
            json!({ "nodePool": pool, "datastore": { "etcd": {}, "external": { "endpoints": ["https://e:2379"], "clientCertSecretName": "s" } } }),
            "not both",
        ),
        (
            "even-etcd",
            json!({ "nodePool": pool, "datastore": { "etcd": { "replicas": 2 } } }),
            "must be 1, 3 or 5",
        ),
        (
            "plain-http-etcd",
            json!({ "nodePool": pool, "datastore": { "external": { "endpoints": ["http://e:2379"], "clientCertSecretName": "s" } } }),
            "each https://host:port",
        ),
        (
            "shared-kernel-unsaid",
            json!({ "nodePool": { "mode": "Shared" } }),
            "a Shared node pool needs isolation.runtimeClassName",
        ),
        (
            "shared-tenant-scheduler",
            json!({ "nodePool": { "mode": "Shared", "acceptSharedKernel": true, "scheduler": "Tenant" } }),
            "scheduler: Tenant needs a Dedicated node pool",
        ),
        (
            "bad-backup-schedule",
            json!({ "nodePool": pool, "backup": { "schedule": "every night" } }),
            "must be five cron fields",
        ),
        (
            "backup-keeping-none",
            json!({ "nodePool": pool, "backup": { "schedule": "@daily", "keep": 0 } }),
            "must be between 1 and 100",
        ),
        (
            "backup-of-external-etcd",
            json!({ "nodePool": pool, "backup": { "schedule": "@daily" }, "datastore": { "external": { "endpoints": ["https://e:2379"], "clientCertSecretName": "s" } } }),
            "back up an external etcd with its own tools",
        ),
        (
            "tiny-pid-limit",
            json!({ "nodePool": pool, "isolation": { "pidLimit": 2 } }),
            "must be at least 16",
        ),
        (
            "bad-ingress-host",
            json!({ "nodePool": pool, "isolation": { "ingress": { "hosts": ["shop.example.com", "*example.com"] } } }),
            "each host is a lowercase DNS name, *.name, or *",
        ),
    ];
    for (name, spec, expected) in cases {
        match vcs
            .create(&PostParams::default(), &object(name, spec))
            .await
        {
            Ok(_) => panic!("{name}: accepted"),
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{name}: {status:?}");
                assert!(
                    status.message.contains(expected),
                    "{name}: expected {expected:?} in {:?}",
                    status.message
                );
            }
            Err(other) => panic!("{name}: {other}"),
        }
    }

    // A version moves one minor up at a time: no downgrade of a minor, no
    // skipped minor; patch releases move both ways.
    let pinned = json!({ "nodePool": pool, "kubernetesVersion": "v1.36.3" });
    vcs.create(&PostParams::default(), &object("upgrading", pinned))
        .await
        .unwrap();
    let set_version = |version: &'static str| {
        let vcs = vcs.clone();
        async move {
            vcs.patch(
                "upgrading",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "kubernetesVersion": version } })),
            )
            .await
        }
    };
    for refused in ["v1.38.0", "v1.35.9"] {
        match set_version(refused).await {
            Err(kube::Error::Api(status)) => assert!(
                status.code == 422 && status.message.contains("one minor version up at a time"),
                "{refused}: {status:?}"
            ),
            other => panic!("{refused}: {other:?}"),
        }
    }
    set_version("v1.36.0").await.expect("a patch release back");
    set_version("v1.37.2").await.expect("one minor up");
    cp.stop().await;
}
