//! The two host namespaces of a VirtualCluster and the Pod Security labels
//! that make the pod-level isolation layer of each.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::ObjectMeta;
use vnest_api::host_names::{HostNamespaceRole, host_namespace, identity, labels};
use vnest_api::{PodSecurityLevel, VirtualCluster};

const PSA_PREFIX: &str = "pod-security.kubernetes.io/";

/// Both host namespaces of `vc`: its control plane's and its workloads'.
///
/// - The workloads namespace enforces the Pod Security level the
///   VirtualCluster asks for (restricted by default).
/// - The control-plane namespace always enforces `restricted`: vnest's own
///   etcd, apiserver and controller-manager need nothing more, and a tenant
///   never chooses what runs there.
///
/// `warn` and `audit` follow `enforce`, so `kubectl` users see a refusal's
/// reason as a warning too. Versions track `latest` of the host.
pub fn host_namespaces(vc: &VirtualCluster) -> [Namespace; 2] {
    let (ns, name) = identity(vc);
    let workload_level = vc.spec.isolation.pod_security;
    [
        namespace(
            ns,
            name,
            HostNamespaceRole::ControlPlane,
            PodSecurityLevel::Restricted,
        ),
        namespace(ns, name, HostNamespaceRole::Workloads, workload_level),
    ]
}

fn namespace(
    vc_namespace: &str,
    vc_name: &str,
    role: HostNamespaceRole,
    level: PodSecurityLevel,
) -> Namespace {
    let mut labels_map = BTreeMap::from([
        (labels::MANAGED_BY.to_owned(), labels::MANAGER.to_owned()),
        (labels::VIRTUAL_CLUSTER.to_owned(), vc_name.to_owned()),
        (
            labels::VIRTUAL_CLUSTER_NAMESPACE.to_owned(),
            vc_namespace.to_owned(),
        ),
        (labels::ROLE.to_owned(), role.label_value().to_owned()),
    ]);
    let level = level.as_str();
    for mode in ["enforce", "warn", "audit"] {
        labels_map.insert(format!("{PSA_PREFIX}{mode}"), level.to_owned());
        labels_map.insert(format!("{PSA_PREFIX}{mode}-version"), "latest".to_owned());
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(host_namespace(vc_namespace, vc_name, role)),
            labels: Some(labels_map),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vc(level: Option<PodSecurityLevel>) -> VirtualCluster {
        let mut vc = crate::desired::test_cluster();
        if let Some(level) = level {
            vc.spec.isolation.pod_security = level;
        }
        vc
    }

    fn label<'a>(ns: &'a Namespace, key: &str) -> Option<&'a str> {
        ns.metadata.labels.as_ref()?.get(key).map(String::as_str)
    }

    #[test]
    fn workloads_get_the_asked_level_and_the_control_plane_always_restricted() {
        let cases = [
            (None, "restricted"),
            (Some(PodSecurityLevel::Baseline), "baseline"),
            (Some(PodSecurityLevel::Privileged), "privileged"),
        ];
        for (asked, expected) in cases {
            let [cp, wl] = host_namespaces(&vc(asked));
            for mode in ["enforce", "warn", "audit"] {
                let key = format!("{PSA_PREFIX}{mode}");
                assert_eq!(label(&wl, &key), Some(expected), "{asked:?} {mode}");
                assert_eq!(label(&cp, &key), Some("restricted"), "{asked:?} {mode}");
            }
        }
    }

    #[test]
    fn namespaces_say_whose_they_are_and_what_they_hold() {
        let [cp, wl] = host_namespaces(&vc(None));
        assert_ne!(cp.metadata.name, wl.metadata.name);
        for (ns, role) in [(&cp, "control-plane"), (&wl, "workloads")] {
            assert_eq!(label(ns, labels::MANAGED_BY), Some("vnest-supervisor"));
            assert_eq!(label(ns, labels::VIRTUAL_CLUSTER), Some("team-a"));
            assert_eq!(
                label(ns, labels::VIRTUAL_CLUSTER_NAMESPACE),
                Some("tenants")
            );
            assert_eq!(label(ns, labels::ROLE), Some(role));
        }
        assert_eq!(
            cp.metadata.name.as_deref(),
            Some(host_namespace("tenants", "team-a", HostNamespaceRole::ControlPlane).as_str())
        );
    }
}
