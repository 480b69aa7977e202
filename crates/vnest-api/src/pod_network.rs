//! The labels on a tenant's host pods: the tenant's own (moved under
//! vnest's domain unless the admin chose otherwise, [`pod_label_key`]), and
//! those that carry what its NetworkPolicies need: which pods a tenant
//! policy governs, and the labels of each pod's tenant namespace. The syncer writes them; vnest's own policies in the
//! workloads namespace (the supervisor's) and the tenant's mirrored
//! policies select on them.
//!
//! All labels in vnest's domain (`vnest.dev/…` and `*.vnest.dev/…`) are
//! vnest's alone: a tenant label with such a key never reaches the host, so
//! a tenant cannot forge them.

use sha2::{Digest, Sha256};

use crate::PodLabels;

/// vnest's NetworkPolicies in a tenant's workloads namespace: the base
/// isolating every pod both ways, and vnest's allowances for the pods no
/// tenant policy governs (those without [`INGRESS_POLICY`] /
/// [`EGRESS_POLICY`]).
pub const WORKLOADS_ISOLATE: &str = "vnest-workloads-isolate";
pub const WORKLOADS_INGRESS: &str = "vnest-workloads-ingress";
pub const WORKLOADS_EGRESS: &str = "vnest-workloads-egress";
pub const WORKLOADS_POLICIES: [&str; 3] = [WORKLOADS_ISOLATE, WORKLOADS_INGRESS, WORKLOADS_EGRESS];

/// On a host pod whose ingress a tenant NetworkPolicy governs: vnest's own
/// "tenant pods may reach each other" allowance then leaves it to the
/// tenant's policies, which can only narrow it.
pub const INGRESS_POLICY: &str = "vnest.dev/tenant-ingress-policy";
/// The same for egress.
pub const EGRESS_POLICY: &str = "vnest.dev/tenant-egress-policy";
/// Tenant namespace labels are carried on host pods under this domain:
/// `team` as `ns.vnest.dev/team`, `kubernetes.io/metadata.name` as
/// `kubernetes.io.ns.vnest.dev/metadata.name`.
const NAMESPACE_LABELS: &str = "ns.vnest.dev";
/// Tenant pod labels are carried on host pods under this domain (unless
/// the admin chose [`PodLabels::Verbatim`]): `app` as `pod.vnest.dev/app`,
/// `app.kubernetes.io/name` as `app.kubernetes.io.pod.vnest.dev/name`.
const POD_LABELS: &str = "pod.vnest.dev";
const DOMAIN: &str = "vnest.dev";

/// Whether `key` is in vnest's label domain.
pub fn is_vnest_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, _)) => {
            prefix == DOMAIN
                || prefix
                    .strip_suffix(DOMAIN)
                    .is_some_and(|rest| rest.ends_with('.'))
        }
        None => false,
    }
}

/// `key` moved under `domain`, keeping its name; `None` when the prefix
/// would grow past the 253 characters a label prefix may have.
fn under(domain: &str, key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (format!("{prefix}.{domain}"), name),
        None => (domain.to_owned(), key),
    };
    (prefix.len() <= 253).then(|| format!("{prefix}/{name}"))
}

/// The host pod label carrying tenant namespace label `key`; `None` when
/// the prefix would grow past the 253 characters a label prefix may have.
pub fn namespace_label_key(key: &str) -> Option<String> {
    under(NAMESPACE_LABELS, key)
}

/// The host pod label carrying tenant pod label `key` (one outside vnest's
/// domain), as `mode` says. Every host selector of tenant pods the syncer
/// writes (Service selectors, NetworkPolicies, affinity) goes through it,
/// so they select what the tenant's selectors select and nothing else.
pub fn pod_label_key(key: &str, mode: PodLabels) -> String {
    match mode {
        PodLabels::Verbatim => key.to_owned(),
        PodLabels::Prefixed => under(POD_LABELS, key).unwrap_or_else(|| {
            // A prefix too long to grow stands for itself by its hash.
            let (prefix, name) = key.split_once('/').unwrap_or_default();
            let hash: String = Sha256::digest(prefix.as_bytes())[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("{hash}.{POD_LABELS}/{name}")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnest_owns_its_domain_and_no_other() {
        for key in [
            "vnest.dev/x",
            "ns.vnest.dev/team",
            "kubernetes.io.ns.vnest.dev/metadata.name",
            INGRESS_POLICY,
            EGRESS_POLICY,
        ] {
            assert!(is_vnest_key(key), "{key}");
        }
        for key in [
            "app",
            "vnest.dev",
            "notvnest.dev/x",
            "vnest.dev.example.com/x",
            "example.com/vnest.dev",
        ] {
            assert!(!is_vnest_key(key), "{key}");
        }
    }

    #[test]
    fn namespace_labels_get_distinct_vnest_keys() {
        let cases = [
            ("team", "ns.vnest.dev/team"),
            (
                "kubernetes.io/metadata.name",
                "kubernetes.io.ns.vnest.dev/metadata.name",
            ),
            ("example.com/team", "example.com.ns.vnest.dev/team"),
        ];
        for (tenant, host) in cases {
            let key = namespace_label_key(tenant);
            assert_eq!(key.as_deref(), Some(host));
            assert!(is_vnest_key(host));
        }
        // `team` and `x/team` stay apart.
        assert_ne!(namespace_label_key("team"), namespace_label_key("x/team"));
        let long = format!("{}/a", "p".repeat(250));
        assert_eq!(namespace_label_key(&long), None);
    }

    #[test]
    fn pod_labels_prefixed_are_vnest_keys_and_stay_apart() {
        let cases = [
            ("app", "pod.vnest.dev/app"),
            (
                "app.kubernetes.io/name",
                "app.kubernetes.io.pod.vnest.dev/name",
            ),
            ("k8s-app", "pod.vnest.dev/k8s-app"),
        ];
        for (tenant, host) in cases {
            assert_eq!(pod_label_key(tenant, PodLabels::Prefixed), host);
            assert!(is_vnest_key(host));
            assert_eq!(pod_label_key(tenant, PodLabels::Verbatim), tenant);
        }
        assert_ne!(
            pod_label_key("team", PodLabels::Prefixed),
            pod_label_key("x/team", PodLabels::Prefixed)
        );
        // A prefix with no room to grow still gets a key of vnest's, and
        // two such prefixes stay apart.
        let long_a = format!("{}/a", "p".repeat(250));
        let long_b = format!("{}/a", "q".repeat(250));
        let (a, b) = (
            pod_label_key(&long_a, PodLabels::Prefixed),
            pod_label_key(&long_b, PodLabels::Prefixed),
        );
        assert!(is_vnest_key(&a) && a.ends_with("/a") && a.len() < 64, "{a}");
        assert_ne!(a, b);
    }
}
