//! Hostile input to host naming: for any tenant namespace and object name
//! Kubernetes accepts (and any VirtualCluster namespace and name), the host
//! names vnest derives are valid, never shared by two origins, and lead back
//! to their origin. Property tests: `PROPTEST_CASES=N` runs more cases.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use vnest_api::host_copies::{host_name, origin, origin_annotations};
use vnest_api::host_names::{HostNamespaceRole, host_namespace};

/// A DNS-1123 label: what a namespace (and many a name) is.
fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
}

/// A DNS-1123 subdomain: what most object names (and a VirtualCluster's)
/// may be, up to 253 characters.
fn dns_subdomain() -> impl Strategy<Value = String> {
    prop::collection::vec(dns_label(), 1..6)
        .prop_map(|labels| labels.join("."))
        .prop_filter("at most 253 characters", |s| s.len() <= 253)
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

proptest! {
    /// A host copy's name is a valid name for its kind: a subdomain of at
    /// most 63 characters, a label when the tenant's name is one (Services
    /// and namespaces' objects named by labels), and it starts as the
    /// tenant's name does (a Service name must start with a letter).
    #[test]
    fn host_copy_names_are_valid(namespace in dns_label(), name in dns_subdomain()) {
        let host = host_name(&namespace, &name);
        prop_assert!(host.len() <= 63 && is_subdomain(&host), "{host}");
        if is_label(&name) {
            prop_assert!(is_label(&host), "{host}");
        }
        prop_assert_eq!(host.chars().next(), name.chars().next());
    }

    /// Two tenant objects never share a host name, whatever their names
    /// (dashes, dots and lengths that only differ past the cut).
    #[test]
    fn host_copy_names_never_collide(
        a in (dns_label(), dns_subdomain()),
        b in (dns_label(), dns_subdomain()),
    ) {
        prop_assume!(a != b);
        prop_assert_ne!(host_name(&a.0, &a.1), host_name(&b.0, &b.1));
    }

    /// Names that agree on the first 63 characters still get names of
    /// their own.
    #[test]
    fn long_names_differ_by_their_hash(
        namespace in dns_label(),
        stem in "[a-z]{60}",
        a in "[a-z0-9]{1,100}",
        b in "[a-z0-9]{1,100}",
    ) {
        prop_assume!(a != b);
        let (a, b) = (format!("{stem}{a}"), format!("{stem}{b}"));
        prop_assert_ne!(host_name(&namespace, &a), host_name(&namespace, &b));
    }

    /// The way back: the origin annotations give the exact tenant object.
    #[test]
    fn a_host_copy_leads_back_to_its_origin(namespace in dns_label(), name in dns_subdomain()) {
        let annotations = origin_annotations(&namespace, &name);
        prop_assert_eq!(origin(Some(&annotations)), Some((namespace, name)));
    }

    /// A VirtualCluster's host namespaces are valid namespace names (DNS
    /// labels) for any namespace and name the host accepts, one per
    /// VirtualCluster and role.
    #[test]
    fn host_namespaces_are_valid_and_unique(
        a in (dns_label(), dns_subdomain()),
        b in (dns_label(), dns_subdomain()),
    ) {
        let roles = [HostNamespaceRole::ControlPlane, HostNamespaceRole::Workloads];
        for role in roles {
            let host = host_namespace(&a.0, &a.1, role);
            prop_assert!(is_label(&host), "{host}");
            if a != b {
                prop_assert_ne!(&host, &host_namespace(&b.0, &b.1, role));
            }
        }
        prop_assert_ne!(
            host_namespace(&a.0, &a.1, roles[0]),
            host_namespace(&a.0, &a.1, roles[1])
        );
    }
}
