//! The attacker's test suite: what a hostile tenant admin tries, holding
//! nothing but its own cluster's kubeconfig, and what must happen. Each
//! entry of [`attempts`] names the attempt, the MITRE ATT&CK for Kubernetes
//! technique it stands for, the tenant objects it writes (plain `kubectl
//! apply` in the tenant) and the expected outcome: a pod refused with a
//! reason the tenant sees and never on the host, an object refused with a
//! `Refused` event, or a host-side check that what arrived there is
//! contained. Network paths are attacked in `supervisor_on_host.rs` (37
//! connections, tenant NetworkPolicies) and by `vnest verify`.
//!
//! Needs root and the packages of tools/host/install-prerequisites.sh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;
use vnest_api::VirtualCluster;
use vnest_api::host_copies::host_name;
use vnest_api::host_names::{HostNamespaceRole, host_namespace};
use vnest_tests::{HostSlot, TestHost, kubectl};

mod common;
use common::*;

const TENANT: &str = "mallory";
/// The quota of Services the tenant is given (its DNS Service and the
/// suite's `plain` take two).
const SERVICE_QUOTA: &str = "3";
/// The quota of ConfigMaps.
const CONFIG_MAP_QUOTA: &str = "12";

/// What must happen to an attempt.
enum Expect {
    /// Pod `name` is refused (`status.reason: Refused`, a Warning event)
    /// with this in its message, and no host pod is made.
    PodRefused(&'static str),
    /// Object `kind/name` gets a `Refused` event with this in its message,
    /// and has no host copy.
    Refused(&'static str),
    /// Checked on the host.
    OnHost(HostCheck),
}

#[derive(Clone, Copy, Debug)]
enum HostCheck {
    /// The host claim made from an ephemeral volume's template names no
    /// volume, selector or data source.
    ClaimAsksNoMore,
    /// The host pod's affinity terms look only at the tenant's own pods.
    AffinityStaysHome,
    /// The pod's token is the one vnest issued, not a tenant Secret named
    /// like its host Secret.
    TokenNotForged,
    /// A pod certificate is asked of the tenant's API (where the host's
    /// signers are not), and the host pod projects no podCertificate.
    CertificateAskedOfTenant,
    /// No more host Services than the quota, and the tenant's create of a
    /// Service over it was refused quoting the host.
    ServicesWithinQuota,
    /// A pod pointed at the host's DNS (10.96.0.10) gets no answer, while
    /// its own cluster's DNS answers it.
    HostDnsClosed,
    /// No more host ConfigMaps than the quota, and one over it has a
    /// `Refused` event quoting the host.
    ConfigMapsWithinQuota,
    /// The syncer's Service-address webhook, called through the tenant
    /// apiserver's node proxy (which presents the apiserver's kubelet
    /// client certificate), refuses and makes no host Service.
    WebhookClosedToNodeProxy,
    /// The host's selector of its own DNS pods (`k8s-app=kube-dns`) does not
    /// select the tenant pod labelled like them.
    HostSelectorsNotFooled,
}

struct Attempt {
    /// What is tried, as the attacker would say it.
    tries: &'static str,
    technique: &'static str,
    /// The tenant object the outcome is read from.
    kind: &'static str,
    name: &'static str,
    /// Tenant objects, YAML (none for an attempt its check makes itself);
    /// `@HOST_APISERVER@`, `@HOST_DNS@` and `@OWN_APISERVER_POD@` are
    /// filled in.
    manifest: &'static str,
    /// Whether the tenant's own apiserver takes the write (the syncer's
    /// Service-address webhook refuses a Service the host will not take).
    admitted: bool,
    expect: Expect,
}

const IMAGE: &str = "vnest.local/busybox:1";
/// A pod spec's fields that pass the host's Pod Security `restricted`
/// (pods whose host copy must exist for the check).
const RESTRICTED: &str = r#""terminationGracePeriodSeconds": 1,
    "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
    "containers": [{ "name": "c", "image": "@IMAGE@", "imagePullPolicy": "Never", "command": ["sleep", "3600"],
        "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } } }]"#;

fn attempts() -> Vec<Attempt> {
    use Expect::*;
    use HostCheck::*;
    vec![
        Attempt {
            tries: "run a privileged container",
            technique: "T1611 Escape to Host",
            kind: "pod",
            name: "privileged",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "privileged" },
                "spec": { "containers": [{ "name": "c", "image": "@IMAGE@", "securityContext": { "privileged": true } }] } }"#,
            admitted: true,
            expect: PodRefused("privileged containers would control the host node"),
        },
        Attempt {
            tries: "share the node's network namespace",
            technique: "T1611 Escape to Host",
            kind: "pod",
            name: "host-network",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "host-network" },
                "spec": { "hostNetwork": true, "containers": [{ "name": "c", "image": "@IMAGE@" }] } }"#,
            admitted: true,
            expect: PodRefused("hostNetwork shares the host node's namespace"),
        },
        Attempt {
            tries: "share the node's process namespace",
            technique: "T1611 Escape to Host",
            kind: "pod",
            name: "host-pid",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "host-pid" },
                "spec": { "hostPID": true, "containers": [{ "name": "c", "image": "@IMAGE@" }] } }"#,
            admitted: true,
            expect: PodRefused("hostPID shares the host node's namespace"),
        },
        Attempt {
            tries: "mount the node's root filesystem",
            technique: "T1611 Escape to Host (writable hostPath mount)",
            kind: "pod",
            name: "host-path",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "host-path" },
                "spec": { "containers": [{ "name": "c", "image": "@IMAGE@" }], "volumes": [{ "name": "root", "hostPath": { "path": "/" } }] } }"#,
            admitted: true,
            expect: PodRefused("of type hostPath reaches the host node"),
        },
        Attempt {
            tries: "listen on a port of the node",
            technique: "T1046 Network Service Discovery",
            kind: "pod",
            name: "host-port",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "host-port" },
                "spec": { "containers": [{ "name": "c", "image": "@IMAGE@", "ports": [{ "containerPort": 80, "hostPort": 10250 }] }] } }"#,
            admitted: true,
            expect: PodRefused("asks for host port 10250"),
        },
        Attempt {
            tries: "add CAP_SYS_ADMIN",
            technique: "T1611 Escape to Host",
            kind: "pod",
            name: "sys-admin",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "sys-admin" },
                "spec": { "containers": [{ "name": "c", "image": "@IMAGE@", "securityContext": { "capabilities": { "add": ["SYS_ADMIN"] } } }] } }"#,
            admitted: true,
            expect: PodRefused("adds capability SYS_ADMIN"),
        },
        Attempt {
            tries: "run on another tenant's node by name",
            technique: "T1610 Deploy Container",
            kind: "pod",
            name: "node-name",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "node-name" },
                "spec": { "nodeName": "vnest-node2", "containers": [{ "name": "c", "image": "@IMAGE@" }] } }"#,
            admitted: true,
            expect: PodRefused("nodeName vnest-node2 is not a node of this cluster's pool"),
        },
        Attempt {
            tries: "run on another tenant's node by affinity",
            technique: "T1610 Deploy Container",
            kind: "pod",
            name: "node-affinity",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "node-affinity" },
                "spec": { "containers": [{ "name": "c", "image": "@IMAGE@" }], "affinity": { "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [{ "matchExpressions": [
                        { "key": "kubernetes.io/hostname", "operator": "In", "values": ["vnest-node2"] }] }] } } } } }"#,
            admitted: true,
            expect: PodRefused("node affinity names vnest-node2"),
        },
        Attempt {
            tries: "tolerate every taint",
            technique: "T1610 Deploy Container",
            kind: "pod",
            name: "tolerate-all",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "tolerate-all" },
                "spec": { "containers": [{ "name": "c", "image": "@IMAGE@" }], "tolerations": [{ "operator": "Exists" }] } }"#,
            admitted: true,
            expect: PodRefused("would let the pod onto other tenants' nodes"),
        },
        Attempt {
            tries: "pick a runtime of its own",
            technique: "T1611 Escape to Host",
            kind: "pod",
            name: "runtime-class",
            manifest: r#"{ "apiVersion": "v1", "kind": "List", "items": [
                { "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": { "name": "runc-unconfined" }, "handler": "runc" },
                { "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "runtime-class" },
                  "spec": { "runtimeClassName": "runc-unconfined", "containers": [{ "name": "c", "image": "@IMAGE@" }] } } ] }"#,
            admitted: true,
            expect: PodRefused("runtimeClassName runc-unconfined is not allowed"),
        },
        Attempt {
            tries: "have the host's CSI driver mount a volume with the host's identity",
            technique: "T1528 Steal Application Access Token",
            kind: "pod",
            name: "inline-csi",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "inline-csi" },
                "spec": { "containers": [{ "name": "c", "image": "@IMAGE@" }],
                    "volumes": [{ "name": "v", "csi": { "driver": "secrets-store.csi.k8s.io" } }] } }"#,
            admitted: true,
            expect: PodRefused("inline CSI volume"),
        },
        Attempt {
            tries: "get a certificate from the host's signer",
            technique: "T1528 Steal Application Access Token",
            kind: "pod",
            name: "pod-certificate",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "pod-certificate" },
                "spec": { "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
                    "containers": [{ "name": "c", "image": "@IMAGE@",
                        "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } } }],
                    "volumes": [{ "name": "v", "projected": { "sources": [{ "podCertificate": {
                        "signerName": "kubernetes.io/kube-apiserver-client-pod", "keyType": "ED25519", "credentialBundlePath": "b.pem" } }] } }] } }"#,
            admitted: true,
            expect: OnHost(HostCheck::CertificateAskedOfTenant),
        },
        Attempt {
            tries: "point a Service at the host apiserver's real address",
            technique: "T1613 Container and Resource Discovery",
            kind: "endpointslice",
            name: "to-host-apiserver",
            manifest: r#"{ "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": { "name": "to-host-apiserver", "labels": { "kubernetes.io/service-name": "plain" } },
                "addressType": "IPv4", "ports": [{ "port": 443 }], "endpoints": [{ "addresses": ["@HOST_APISERVER@"] }] }"#,
            admitted: true,
            expect: Refused("is not this cluster's to point at"),
        },
        Attempt {
            tries: "point a Service at the host's DNS",
            technique: "T1046 Network Service Discovery",
            kind: "endpointslice",
            name: "to-host-dns",
            manifest: r#"{ "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": { "name": "to-host-dns", "labels": { "kubernetes.io/service-name": "plain" } },
                "addressType": "IPv4", "ports": [{ "port": 1053 }], "endpoints": [{ "addresses": ["@HOST_DNS@"] }] }"#,
            admitted: true,
            expect: Refused("is not this cluster's to point at"),
        },
        Attempt {
            tries: "point a Service at a control-plane pod (its etcd's neighbour)",
            technique: "T1552.007 Container API",
            kind: "endpointslice",
            name: "to-control-plane",
            manifest: r#"{ "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": { "name": "to-control-plane", "labels": { "kubernetes.io/service-name": "plain" } },
                "addressType": "IPv4", "ports": [{ "port": 6443 }], "endpoints": [{ "addresses": ["@OWN_APISERVER_POD@"] }] }"#,
            admitted: true,
            expect: Refused("is not this cluster's to point at"),
        },
        Attempt {
            tries: "bind a chosen host volume or clone data through an ephemeral volume",
            technique: "T1530 Data from Cloud Storage",
            kind: "pod",
            name: "ephemeral",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "ephemeral" },
                "spec": { @RESTRICTED@, "volumes": [{ "name": "scratch", "ephemeral": {
                    "volumeClaimTemplate": { "metadata": { "annotations": { "volume.kubernetes.io/selected-node": "vnest-node2" } },
                        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Mi" } },
                            "storageClassName": "vnest-attack-none", "volumeName": "someone-elses",
                            "selector": { "matchLabels": { "tenant": "other" } },
                            "dataSource": { "kind": "PersistentVolumeClaim", "name": "other" } } } } }] } }"#,
            admitted: true,
            expect: OnHost(ClaimAsksNoMore),
        },
        Attempt {
            tries: "learn where other tenants' pods run through pod affinity",
            technique: "T1613 Container and Resource Discovery",
            kind: "pod",
            name: "oracle",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "oracle" },
                "spec": { @RESTRICTED@, "affinity": { "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [{ "topologyKey": "kubernetes.io/hostname",
                        "namespaceSelector": {}, "labelSelector": { "matchLabels": { "vnest.dev/component": "apiserver" } } }] } } } }"#,
            admitted: true,
            expect: OnHost(AffinityStaysHome),
        },
        Attempt {
            tries: "hand a pod a token of its choosing (a Secret named like the pod's token)",
            technique: "T1528 Steal Application Access Token",
            kind: "pod",
            name: "victim",
            manifest: r#"{ "apiVersion": "v1", "kind": "List", "items": [
                { "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "victim-token" },
                  "stringData": { "token": "forged", "ca.crt": "forged", "namespace": "forged" } },
                { "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "victim" },
                  "spec": { "terminationGracePeriodSeconds": 1,
                    "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
                    "containers": [{ "name": "c", "image": "@IMAGE@", "imagePullPolicy": "Never",
                      "command": ["sh", "-c", "cat /var/run/secrets/kubernetes.io/serviceaccount/token; echo; echo token-read; sleep 3600"],
                      "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } } }] } } ] }"#,
            admitted: true,
            expect: OnHost(TokenNotForged),
        },
        Attempt {
            tries: "make Services beyond what the host gives it",
            technique: "T1499 Endpoint Denial of Service",
            kind: "service",
            name: "flood",
            manifest: r#"{ "apiVersion": "v1", "kind": "List", "items": [
                { "apiVersion": "v1", "kind": "Service", "metadata": { "name": "flood-1" }, "spec": { "ports": [{ "port": 80 }], "selector": { "app": "x" } } },
                { "apiVersion": "v1", "kind": "Service", "metadata": { "name": "flood-2" }, "spec": { "ports": [{ "port": 80 }], "selector": { "app": "x" } } },
                { "apiVersion": "v1", "kind": "Service", "metadata": { "name": "flood-3" }, "spec": { "ports": [{ "port": 80 }], "selector": { "app": "x" } } },
                { "apiVersion": "v1", "kind": "Service", "metadata": { "name": "flood-4" }, "spec": { "ports": [{ "port": 80 }], "selector": { "app": "x" } } } ] }"#,
            admitted: false,
            expect: OnHost(ServicesWithinQuota),
        },
        Attempt {
            tries: "resolve through the host's DNS (which knows every host Service)",
            technique: "T1046 Network Service Discovery",
            kind: "pod",
            name: "host-dns",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "host-dns" },
                "spec": { "terminationGracePeriodSeconds": 1, "dnsPolicy": "None", "dnsConfig": { "nameservers": ["10.96.0.10"] },
                    "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
                    "containers": [{ "name": "c", "image": "@IMAGE@", "imagePullPolicy": "Never",
                      "command": ["sh", "-c", "n=0; until nslookup kubernetes.default.svc.cluster.local @TENANT_DNS@ >/dev/null 2>&1 || [ $n -ge 30 ]; do n=$((n+1)); sleep 1; done; if [ $n -lt 30 ]; then echo OWN-DNS-ANSWERS; fi; if nslookup kubernetes.default.svc.cluster.local 10.96.0.10 >/dev/null 2>&1; then echo HOST-DNS-ANSWERS; else echo HOST-DNS-CLOSED; fi; sleep 3600"],
                      "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } } }] } }"#,
            admitted: true,
            expect: OnHost(HostDnsClosed),
        },
        Attempt {
            tries: "have the syncer's webhook make host Services, through the node proxy",
            technique: "T1190 Exploit Public-Facing Application",
            kind: "service",
            name: "squat",
            manifest: "",
            admitted: true,
            expect: OnHost(WebhookClosedToNodeProxy),
        },
        Attempt {
            tries: "route another tenant's host name (and every unclaimed one) to itself",
            technique: "T1557 Adversary-in-the-Middle",
            kind: "ingress",
            name: "hijack",
            manifest: r#"{ "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": { "name": "hijack" },
                "spec": { "defaultBackend": { "service": { "name": "plain", "port": { "number": 80 } } },
                    "rules": [{ "host": "www.mallory.example.com" }, { "host": "shop.example.com" }],
                    "tls": [{ "hosts": ["bank.example.com"], "secretName": "stolen" }] } }"#,
            admitted: true,
            expect: Refused("host shop.example.com is not this cluster's to claim"),
        },
        Attempt {
            tries: "pass a pod off as the host's DNS to the host's own selectors",
            technique: "T1036 Masquerading",
            kind: "pod",
            name: "masquerade",
            manifest: r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "masquerade", "labels": { "k8s-app": "kube-dns" } },
                "spec": { @RESTRICTED@ } }"#,
            admitted: true,
            expect: OnHost(HostSelectorsNotFooled),
        },
        Attempt {
            tries: "fill the host's etcd with ConfigMaps",
            technique: "T1499 Endpoint Denial of Service",
            kind: "configmap",
            name: "hoard",
            manifest: "@HOARD@",
            admitted: true,
            expect: OnHost(ConfigMapsWithinQuota),
        },
    ]
}

/// Twelve ConfigMaps: more than the quota left (the host namespace already
/// holds its own root CA and the copies of the tenant's).
fn hoard() -> String {
    let items: Vec<serde_json::Value> = (1..=12)
        .map(|i| {
            json!({ "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": { "name": format!("hoard-{i}") }, "data": { "x": "y" } })
        })
        .collect();
    json!({ "apiVersion": "v1", "kind": "List", "items": items }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_hostile_tenant_admin_tries_is_refused_or_contained() {
    let slot = HostSlot::acquire().await;
    let host =
        TestHost::start_for_vnest(slot, two_pools(), vnest_tests::vnest_image_binaries()).await;
    let client = host.client();
    let admin = host.kubeconfig();
    let work = tempfile::tempdir().unwrap();
    let mut vc: VirtualCluster = virtual_cluster(TENANT, "a");
    vc.spec.isolation.ingress.hosts = vec!["*.mallory.example.com".to_owned()];
    for (key, value) in [
        ("services", SERVICE_QUOTA),
        ("configmaps", CONFIG_MAP_QUOTA),
    ] {
        vc.spec.isolation.resource_quota.insert(
            key.to_owned(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity(value.to_owned()),
        );
    }
    let (_, tenant) = ready_tenant(&client, &admin, vc, work.path()).await;
    let wl = host_namespace(TENANTS, TENANT, HostNamespaceRole::Workloads);
    let cp = host_namespace(TENANTS, TENANT, HostNamespaceRole::ControlPlane);

    let first_address = |namespace: &'static str, selector: &'static str| {
        let client = client.clone();
        async move {
            let slices: Api<EndpointSlice> = Api::namespaced(client, namespace);
            let list = slices
                .list(&ListParams::default().labels(selector))
                .await
                .unwrap();
            list.items[0].endpoints.as_ref().unwrap()[0].addresses[0].clone()
        }
    };
    let host_apiserver = first_address("default", "kubernetes.io/service-name=kubernetes").await;
    let host_dns = first_address("kube-system", "kubernetes.io/service-name=kube-dns").await;
    let own_apiserver_pod = {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &cp);
        let list = pods
            .list(&ListParams::default().labels("vnest.dev/component=apiserver"))
            .await
            .unwrap();
        list.items[0].status.clone().unwrap().pod_ip.unwrap()
    };
    let (ok, tenant_dns, err) = kubectl(
        &tenant,
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
    assert!(ok && !tenant_dns.is_empty(), "{err}");
    // The selector-less Service the EndpointSlices belong to.
    apply_in_tenant(
        &tenant,
        work.path(),
        "plain.json",
        r#"{ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "plain" }, "spec": { "ports": [{ "port": 443 }] } }"#,
    )
    .await;

    let attempts = attempts();
    let mut refused_writes = std::collections::BTreeMap::new();
    for attempt in attempts.iter().filter(|a| !a.manifest.is_empty()) {
        let manifest = attempt
            .manifest
            .replace("@HOARD@", &hoard())
            .replace("@RESTRICTED@", RESTRICTED)
            .replace("@IMAGE@", IMAGE)
            .replace("@HOST_APISERVER@", &host_apiserver)
            .replace("@HOST_DNS@", &host_dns)
            .replace("@OWN_APISERVER_POD@", &own_apiserver_pod)
            .replace("@TENANT_DNS@", &tenant_dns);
        if attempt.admitted {
            let file = format!("{}.json", attempt.name);
            apply_in_tenant(&tenant, work.path(), &file, &manifest).await;
        } else {
            let file = work.path().join(format!("{}.json", attempt.name));
            std::fs::write(&file, &manifest).unwrap();
            let (_, out, err) = kubectl(&tenant, &["apply", "-f", &file.display().to_string()]);
            refused_writes.insert(attempt.name, format!("{out}{err}"));
        }
    }

    let mut outcomes = Vec::new();
    for attempt in &attempts {
        let outcome = match &attempt.expect {
            Expect::PodRefused(reason) => pod_refused(&tenant, &client, &wl, attempt, reason).await,
            Expect::Refused(reason) => object_refused(&tenant, &client, &wl, attempt, reason).await,
            Expect::OnHost(check) => {
                let write = refused_writes
                    .get(attempt.name)
                    .cloned()
                    .unwrap_or_default();
                on_host(*check, &tenant, &client, &wl, &write).await
            }
        };
        outcomes.push((attempt, outcome));
    }
    // Refused for its RuntimeClass alone, a pod is placed as a cluster
    // places one whose handler no node has: bound to a node, never started.
    let (_, placed, _) = kubectl(
        &tenant,
        &[
            "get",
            "pod",
            "runtime-class",
            "-o",
            "jsonpath={.spec.nodeName}|{.status.phase}",
        ],
    );
    assert!(
        placed.starts_with("vnest-node") && placed.ends_with("|Pending"),
        "the RuntimeClass pod is bound and pending: {placed}"
    );
    eprintln!(
        "{:<78} {:<48} {:<32} outcome",
        "attempt", "technique", "object"
    );
    for (attempt, outcome) in &outcomes {
        let shown = match outcome {
            Ok(how) => format!("held: {how}"),
            Err(why) => format!("FAILED: {why}"),
        };
        let object = format!("{}/{}", attempt.kind, attempt.name);
        eprintln!(
            "{:<78} {:<48} {object:<32} {shown}",
            attempt.tries, attempt.technique
        );
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|(attempt, outcome)| {
            outcome
                .as_ref()
                .err()
                .map(|why| format!("{}: {why}", attempt.tries))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "attempts that got through:\n{}",
        failed.join("\n")
    );
    host.stop().await;
}

/// Waits up to a minute for `check` to say yes; its last answer otherwise.
async fn within_a_minute<F, Fut>(mut check: F) -> Result<String, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = check().await;
        if answer.is_ok() || std::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The messages of the tenant's `Refused` events about `name`.
fn refused_events(tenant: &Path, name: &str) -> String {
    let (_, events, _) = kubectl(
        tenant,
        &[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name},reason=Refused"),
            "-o",
            "jsonpath={.items[*].message}",
        ],
    );
    events
}

async fn pod_refused(
    tenant: &Path,
    client: &Client,
    wl: &str,
    attempt: &Attempt,
    reason: &str,
) -> Result<String, String> {
    let status = within_a_minute(|| async {
        let (_, out, _) = kubectl(
            tenant,
            &[
                "get",
                "pod",
                attempt.name,
                "-o",
                "jsonpath={.status.reason}|{.status.message}",
            ],
        );
        if out.starts_with("Refused|") && out.contains(reason) {
            Ok(out)
        } else {
            Err(format!("status is {out:?}, not Refused with {reason:?}"))
        }
    })
    .await?;
    if !refused_events(tenant, attempt.name).contains(reason) {
        return Err("no Refused event tells the tenant".to_owned());
    }
    let host_pods: Api<Pod> = Api::namespaced(client.clone(), wl);
    if host_pods
        .get_opt(&host_name("default", attempt.name))
        .await
        .unwrap()
        .is_some()
    {
        return Err("the pod reached the host".to_owned());
    }
    Ok(status.trim_start_matches("Refused|").to_owned())
}

async fn object_refused(
    tenant: &Path,
    client: &Client,
    wl: &str,
    attempt: &Attempt,
    reason: &str,
) -> Result<String, String> {
    let message = within_a_minute(|| async {
        let events = refused_events(tenant, attempt.name);
        if events.contains(reason) {
            Ok(events)
        } else {
            Err(format!(
                "no Refused event with {reason:?} (events: {events:?})"
            ))
        }
    })
    .await?;
    let on_host = host_name("default", attempt.name);
    let copied = match attempt.kind {
        "endpointslice" => Api::<EndpointSlice>::namespaced(client.clone(), wl)
            .get_opt(&on_host)
            .await
            .unwrap()
            .is_some(),
        "ingress" => Api::<Ingress>::namespaced(client.clone(), wl)
            .get_opt(&on_host)
            .await
            .unwrap()
            .is_some(),
        other => return Err(format!("the suite cannot look for a host {other}")),
    };
    if copied {
        return Err("it reached the host".to_owned());
    }
    Ok(message)
}

/// `write` is what the tenant's `kubectl apply` said, for attempts its
/// apiserver refuses.
async fn on_host(
    check: HostCheck,
    tenant: &Path,
    client: &Client,
    wl: &str,
    write: &str,
) -> Result<String, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), wl);
    match check {
        HostCheck::ClaimAsksNoMore => {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), wl);
            let name = format!("{}-scratch", host_name("default", "ephemeral"));
            within_a_minute(|| async {
                let claim = claims
                    .get_opt(&name)
                    .await
                    .unwrap()
                    .ok_or_else(|| format!("no host claim {name} yet"))?;
                let spec = claim.spec.unwrap_or_default();
                let annotations = claim.metadata.annotations.unwrap_or_default();
                if spec.volume_name.is_some()
                    || spec.selector.is_some()
                    || spec.data_source.is_some()
                    || annotations.contains_key("volume.kubernetes.io/selected-node")
                {
                    return Err(format!(
                        "the host claim asks for more: {spec:?} {annotations:?}"
                    ));
                }
                Ok("the host claim names no volume, selector, data source or node".to_owned())
            })
            .await
        }
        HostCheck::AffinityStaysHome => {
            within_a_minute(|| async {
                let pod = pods
                    .get_opt(&host_name("default", "oracle"))
                    .await
                    .unwrap()
                    .ok_or("no host pod yet")?;
                let term = pod
                    .spec
                    .and_then(|s| s.affinity)
                    .and_then(|a| a.pod_anti_affinity)
                    .and_then(|a| a.required_during_scheduling_ignored_during_execution)
                    .and_then(|terms| terms.into_iter().next())
                    .ok_or("the host pod lost its term")?;
                let selector = serde_json::to_value(&term.label_selector).unwrap();
                let own = selector["matchExpressions"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|r| r["key"] == "vnest.dev/tenant-namespace"));
                if term.namespace_selector.is_some() || term.namespaces.is_some() || !own {
                    return Err(format!("the term looks beyond the tenant: {term:?}"));
                }
                Ok(format!(
                    "the term selects {selector} in the workloads namespace only"
                ))
            })
            .await
        }
        HostCheck::WebhookClosedToNodeProxy => {
            let review = json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": { "uid": "attack", "operation": "CREATE", "namespace": "default",
                    "object": { "apiVersion": "v1", "kind": "Service",
                        "metadata": { "name": "squat", "namespace": "default" },
                        "spec": { "ports": [{ "port": 80 }] } } } });
            let file = std::env::temp_dir().join(format!("vnest-attack-review-{}.json", std::process::id()));
            std::fs::write(&file, review.to_string()).unwrap();
            let (_, node, _) = kubectl(tenant, &["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
            let path = format!("/api/v1/nodes/{}/proxy/admission/services", node.trim());
            let (ok, out, err) = kubectl(tenant, &["create", "--raw", &path, "-f", &file.display().to_string()]);
            let _ = std::fs::remove_file(&file);
            let services: Api<Service> = Api::namespaced(client.clone(), wl);
            let squatted = services
                .get_opt(&host_name("default", "squat"))
                .await
                .unwrap()
                .is_some();
            if ok || squatted {
                return Err(format!("the webhook answered the node proxy (host Service made: {squatted}): {out}{err}"));
            }
            Ok(format!("refused: {}", err.trim()))
        }
        HostCheck::HostSelectorsNotFooled => {
            within_a_minute(|| async {
                let pod = pods
                    .get_opt(&host_name("default", "masquerade"))
                    .await
                    .unwrap()
                    .ok_or("no host pod yet")?;
                let all: Api<Pod> = Api::all(client.clone());
                let selected = all
                    .list(&ListParams::default().labels("k8s-app=kube-dns"))
                    .await
                    .unwrap();
                let fooled: Vec<_> = selected
                    .items
                    .iter()
                    .filter(|p| p.metadata.namespace.as_deref() == Some(wl))
                    .filter_map(|p| p.metadata.name.clone())
                    .collect();
                if !fooled.is_empty() || selected.items.is_empty() {
                    return Err(format!(
                        "k8s-app=kube-dns selects {} host pods, {fooled:?} of the tenant's",
                        selected.items.len()
                    ));
                }
                let labels = pod.metadata.labels.unwrap_or_default();
                Ok(format!(
                    "the host pod carries the label as pod.vnest.dev/k8s-app={}; the host's selector finds only its {} own DNS pods",
                    labels.get("pod.vnest.dev/k8s-app").cloned().unwrap_or_default(),
                    selected.items.len()
                ))
            })
            .await
        }
        HostCheck::TokenNotForged => {
            within_a_minute(|| async {
                let (ok, logs, err) = kubectl(tenant, &["logs", "victim"]);
                if !ok || !logs.contains("token-read") {
                    return Err(format!("no token read yet: {logs}{err}"));
                }
                if logs.contains("forged") {
                    return Err("the pod read the tenant's forged Secret".to_owned());
                }
                Ok("the pod holds the token vnest issued".to_owned())
            })
            .await
        }
        HostCheck::CertificateAskedOfTenant => {
            within_a_minute(|| async {
                let (_, asked, _) = kubectl(
                    tenant,
                    &[
                        "get",
                        "podcertificaterequests",
                        "-o",
                        "jsonpath={.items[*].spec.podName}",
                    ],
                );
                if !asked.contains("pod-certificate") {
                    return Err(format!("no request in the tenant yet: {asked}"));
                }
                let on_host = pods
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let projects_one = on_host.items.iter().any(|pod| {
                    serde_json::to_string(&pod.spec).is_ok_and(|s| s.contains("podCertificate"))
                });
                if projects_one {
                    return Err("a host pod projects a podCertificate".to_owned());
                }
                Ok("the request is the tenant's; no host pod asks the host's signer".to_owned())
            })
            .await
        }
        HostCheck::HostDnsClosed => {
            within_a_minute(|| async {
                let (ok, logs, err) = kubectl(tenant, &["logs", "host-dns"]);
                if !ok || !logs.contains("HOST-DNS-") {
                    return Err(format!("no answer yet: {logs}{err}"));
                }
                if !logs.contains("OWN-DNS-ANSWERS") {
                    return Err(format!(
                        "its own DNS did not answer, so nothing is shown: {logs}"
                    ));
                }
                if logs.contains("HOST-DNS-ANSWERS") {
                    return Err("the host's DNS answered a tenant pod".to_owned());
                }
                Ok("its own DNS answers; the host's does not".to_owned())
            })
            .await
        }
        HostCheck::ServicesWithinQuota => {
            let services: Api<Service> = Api::namespaced(client.clone(), wl);
            let on_host = services
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len();
            let limit: usize = SERVICE_QUOTA.parse().unwrap();
            if on_host > limit {
                return Err(format!("{on_host} host Services under a quota of {limit}"));
            }
            if !write.contains("exceeded quota") {
                return Err(format!("the tenant was not told of the quota: {write}"));
            }
            Ok(format!(
                "{on_host} host Services; the create was refused quoting the host's quota"
            ))
        }
        HostCheck::ConfigMapsWithinQuota => {
            let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
                Api::namespaced(client.clone(), wl);
            within_a_minute(|| async {
                let on_host = config_maps
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .len();
                let limit: usize = CONFIG_MAP_QUOTA.parse().unwrap();
                if on_host > limit {
                    return Err(format!(
                        "{on_host} host ConfigMaps under a quota of {limit}"
                    ));
                }
                let told = (1..=12)
                    .map(|i| refused_events(tenant, &format!("hoard-{i}")))
                    .find(|events| events.contains("exceeded quota"))
                    .ok_or("no ConfigMap over the quota has a Refused event quoting the host")?;
                Ok(format!(
                    "{on_host} host ConfigMaps; the tenant is told: {told}"
                ))
            })
            .await
        }
    }
}
