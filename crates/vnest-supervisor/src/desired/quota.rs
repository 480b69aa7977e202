//! The resource isolation layer of a tenant's workloads namespace: a
//! ResourceQuota that caps what the tenant can take from the host, and a
//! LimitRange that gives every container requests (so the scheduler and
//! the quota see it) and a memory limit (so one container cannot take the
//! node). Control-plane pods live in the other namespace and do not count.
//! The quota counts every kind the syncer may create there (a test holds
//! it to the syncer's host role), so no mirrored kind is unbounded.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ObjectMeta;
use vnest_api::VirtualCluster;
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};

pub const QUOTA_NAME: &str = "vnest-tenant";
pub const LIMIT_RANGE_NAME: &str = "vnest-tenant";

/// What the quota holds when the VirtualCluster says nothing: every kind
/// of object the syncer (or the host's controllers on its behalf) makes in
/// the workloads namespace is counted, storage and compute are bounded,
/// and there are no node ports or load balancers, which would open the
/// host's network to the tenant. Entries of `spec.isolation.resourceQuota`
/// replace these and add to them.
pub fn default_quota() -> BTreeMap<String, Quantity> {
    [
        ("pods", "100"),
        ("requests.cpu", "32"),
        ("requests.memory", "64Gi"),
        ("limits.memory", "128Gi"),
        // Each a rule on every node (kube-proxy) and host etcd bytes.
        ("services", "100"),
        ("services.nodeports", "0"),
        ("services.loadbalancers", "0"),
        ("count/endpoints", "200"),
        ("count/endpointslices.discovery.k8s.io", "400"),
        ("configmaps", "300"),
        // A pod's tenant token is a host Secret too.
        ("secrets", "400"),
        ("count/serviceaccounts", "20"),
        ("persistentvolumeclaims", "50"),
        ("requests.storage", "500Gi"),
        ("count/ingresses.networking.k8s.io", "50"),
        ("count/networkpolicies.networking.k8s.io", "100"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
    .collect()
}

/// Container defaults when the VirtualCluster gives none. The quota counts
/// requests, so every container needs one; a CPU request of `1m` is what a
/// kubelet gives a container that asks for none (the smallest CPU weight),
/// so a tenant container without a request keeps upstream's meaning on the
/// host: it gets no more CPU weight than the tenant asked for, and a later
/// in-place resize that adds a request raises its weight.
pub fn default_container_requests() -> BTreeMap<String, Quantity> {
    [("cpu", "1m"), ("memory", "64Mi")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
        .collect()
}
pub fn default_container_limits() -> BTreeMap<String, Quantity> {
    BTreeMap::from([("memory".to_owned(), Quantity("512Mi".to_owned()))])
}

pub fn resource_quota(vc: &VirtualCluster) -> ResourceQuota {
    let mut hard = default_quota();
    hard.extend(vc.spec.isolation.resource_quota.clone());
    ResourceQuota {
        metadata: ObjectMeta {
            name: Some(QUOTA_NAME.to_owned()),
            namespace: Some(host_namespace_of(vc, HostNamespaceRole::Workloads)),
            ..ObjectMeta::default()
        },
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

pub fn limit_range(vc: &VirtualCluster) -> LimitRange {
    // Given entries replace the defaults and add to them: every container
    // keeps a request of each resource the quota bounds.
    let given = vc.spec.isolation.default_container_resources.as_ref();
    let mut requests = default_container_requests();
    requests.extend(given.and_then(|r| r.requests.clone()).unwrap_or_default());
    let mut limits = default_container_limits();
    limits.extend(given.and_then(|r| r.limits.clone()).unwrap_or_default());
    LimitRange {
        metadata: ObjectMeta {
            name: Some(LIMIT_RANGE_NAME.to_owned()),
            namespace: Some(host_namespace_of(vc, HostNamespaceRole::Workloads)),
            ..ObjectMeta::default()
        },
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default_request: Some(requests),
                default: Some(limits),
                ..LimitRangeItem::default()
            }],
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use vnest_api::host_names::host_namespace;
    use vnest_api::quota_keys::count_keys;

    use crate::desired::test_cluster as vc;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_owned())
    }

    #[test]
    fn the_quota_defaults_close_host_ports_and_admin_entries_win() {
        let mut vc = vc();
        let hard = resource_quota(&vc).spec.unwrap().hard.unwrap();
        assert_eq!(hard.get("services.nodeports"), Some(&q("0")));
        assert_eq!(hard.get("services.loadbalancers"), Some(&q("0")));
        assert_eq!(hard.get("pods"), Some(&q("100")));

        vc.spec.isolation.resource_quota = BTreeMap::from([
            ("pods".to_owned(), q("5")),
            ("requests.cpu".to_owned(), q("2")),
        ]);
        let quota = resource_quota(&vc);
        let hard = quota.spec.unwrap().hard.unwrap();
        assert_eq!(
            hard.get("pods"),
            Some(&q("5")),
            "the admin's value replaces the default"
        );
        assert_eq!(hard.get("requests.cpu"), Some(&q("2")));
        assert_eq!(
            hard.get("services.nodeports"),
            Some(&q("0")),
            "other defaults stay"
        );
        assert_eq!(
            quota.metadata.namespace.as_deref(),
            Some(host_namespace("tenants", "team-a", HostNamespaceRole::Workloads).as_str())
        );
    }

    #[test]
    fn every_kind_the_syncer_may_create_on_the_host_is_counted() {
        let role = include_str!("../../../../manifests/supervisor/syncer-rbac.yaml");
        let role: serde_json::Value =
            serde_yaml_ng::from_str(role.split("\n---").next().unwrap()).unwrap();
        let hard = resource_quota(&vc()).spec.unwrap().hard.unwrap();
        let mut counted = 0;
        for rule in role["rules"].as_array().unwrap() {
            let creates = rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == "create");
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    let resource = resource.as_str().unwrap();
                    // Subresources (exec, attach, port-forward) make nothing.
                    if !creates || resource.contains('/') {
                        continue;
                    }
                    let keys = count_keys(resource, group.as_str().unwrap());
                    assert!(
                        keys.iter().any(|key| hard.contains_key(key)),
                        "{keys:?}: none is in the quota"
                    );
                    counted += 1;
                }
            }
        }
        assert!(counted >= 8, "the role was read: {counted}");
        for bound in [
            "requests.storage",
            "requests.cpu",
            "requests.memory",
            "limits.memory",
        ] {
            assert!(hard.contains_key(bound), "{bound}");
        }
    }

    #[test]
    fn containers_get_default_requests_and_a_memory_limit_unless_given() {
        let mut vc = vc();
        let item = &limit_range(&vc).spec.unwrap().limits[0];
        assert_eq!(item.type_, "Container");
        assert_eq!(item.default_request, Some(default_container_requests()));
        assert_eq!(item.default, Some(default_container_limits()));

        vc.spec.isolation.default_container_resources = Some(ResourceRequirements {
            requests: Some(BTreeMap::from([("cpu".to_owned(), q("1"))])),
            ..ResourceRequirements::default()
        });
        let item = &limit_range(&vc).spec.unwrap().limits[0];
        let mut requests = default_container_requests();
        requests.insert("cpu".to_owned(), q("1"));
        assert_eq!(
            item.default_request,
            Some(requests),
            "the given request replaces its default, the others stay (the quota needs them)"
        );
        assert_eq!(
            item.default,
            Some(default_container_limits()),
            "limits still default"
        );
    }
}
