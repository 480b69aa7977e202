//! The ingress host patterns each VirtualCluster holds: what its admin
//! granted (`spec.isolation.ingress.hosts`), less each pattern that
//! overlaps one an older VirtualCluster was granted (it stays that one's),
//! so two tenants never claim the same host name on the host's ingress
//! controllers. Pure: fed the VirtualClusters as listed.

use vnest_api::VirtualCluster;
use vnest_api::host_names::identity;
use vnest_api::ingress_hosts::overlap;

/// What `vc` holds, and what it was granted but an older VirtualCluster
/// holds: `(pattern, "namespace/name" of the older one)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub hosts: Vec<String>,
    pub withheld: Vec<(String, String)>,
}

/// `vc`'s patterns among `all` (every VirtualCluster; those being deleted
/// hold nothing).
pub fn held(vc: &VirtualCluster, all: &[VirtualCluster]) -> Held {
    let age = |v: &VirtualCluster| {
        let (namespace, name) = identity(v);
        (
            v.metadata.creation_timestamp.clone().map(|t| t.0),
            format!("{namespace}/{name}"),
        )
    };
    let mine = age(vc);
    let older: Vec<&VirtualCluster> = all
        .iter()
        .filter(|other| other.metadata.deletion_timestamp.is_none())
        .filter(|other| age(other) < mine)
        .collect();
    let mut held = Held::default();
    for pattern in &vc.spec.isolation.ingress.hosts {
        let holder = older.iter().find(|other| {
            other
                .spec
                .isolation
                .ingress
                .hosts
                .iter()
                .any(|theirs| overlap(theirs, pattern))
        });
        match holder {
            Some(other) => held.withheld.push((pattern.clone(), age(other).1)),
            None => held.hosts.push(pattern.clone()),
        }
    }
    held
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn vc(name: &str, created: &str, hosts: &[&str]) -> VirtualCluster {
        serde_json::from_value(json!({
            "apiVersion": "vnest.dev/v1alpha1", "kind": "VirtualCluster",
            "metadata": { "name": name, "namespace": "tenants", "creationTimestamp": created },
            "spec": { "nodePool": { "nodeSelector": { "pool": name } },
                      "isolation": { "ingress": { "hosts": hosts } } },
        }))
        .unwrap()
    }

    #[test]
    fn the_older_cluster_keeps_an_overlapping_pattern() {
        let shop = vc("shop", "2026-01-01T00:00:00Z", &["*.shop.example.com"]);
        let mallory = vc(
            "mallory",
            "2026-02-01T00:00:00Z",
            &["pay.shop.example.com", "mallory.example.com"],
        );
        let all = [shop.clone(), mallory.clone()];
        assert_eq!(
            held(&shop, &all),
            Held {
                hosts: vec!["*.shop.example.com".into()],
                withheld: vec![],
            }
        );
        assert_eq!(
            held(&mallory, &all),
            Held {
                hosts: vec!["mallory.example.com".into()],
                withheld: vec![("pay.shop.example.com".into(), "tenants/shop".into())],
            }
        );
        // Once the older one is being deleted, the pattern is free.
        let mut going = shop;
        going.metadata.deletion_timestamp = mallory.metadata.creation_timestamp.clone();
        assert!(
            held(&mallory, &[going, mallory.clone()])
                .withheld
                .is_empty()
        );
    }
}
