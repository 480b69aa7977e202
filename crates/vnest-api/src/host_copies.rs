//! How a tenant object is named on the host, and how to find the way back.
//!
//! All of a tenant's namespaced objects land in one host namespace (its
//! workloads namespace), so a host name must carry the tenant namespace and
//! stay unique: `<name>-<namespace>-<hash>`, where the hash (10 hex digits
//! of SHA-256 over `namespace/name`) is always present and only the
//! readable part is shortened to fit 63 characters. Two tenant objects
//! therefore never share a host name, however long their names. The exact
//! origin is kept on the host object: label [`TENANT_NAMESPACE`] and
//! annotations [`TENANT_NAMESPACE_ANNOTATION`] and [`TENANT_NAME`].

use std::collections::BTreeMap;

use crate::host_names::hashed_label;

/// Label with the tenant namespace (namespace names are valid label values).
pub const TENANT_NAMESPACE: &str = "vnest.dev/tenant-namespace";
/// Annotations with the exact tenant namespace and name (names can be
/// longer than a label value may be).
pub const TENANT_NAMESPACE_ANNOTATION: &str = "vnest.dev/tenant-namespace";
pub const TENANT_NAME: &str = "vnest.dev/tenant-name";
/// Annotation of a host pod with its tenant pod's UID: a tenant pod made
/// again under the same name (a StatefulSet's) is another pod, whose host
/// pod the deletion of the old one must not take.
pub const TENANT_UID: &str = "vnest.dev/tenant-uid";
/// Label marking objects the syncer owns on the host.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "vnest-syncer";

/// The host name of tenant object `namespace/name`.
pub fn host_name(namespace: &str, name: &str) -> String {
    hashed_label(
        &format!("{name}-{namespace}"),
        &format!("{namespace}/{name}"),
        "",
    )
}

/// The labels every synced host object carries besides its own.
pub fn origin_labels(namespace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (TENANT_NAMESPACE.to_owned(), namespace.to_owned()),
    ])
}

/// The annotations naming the tenant object exactly.
pub fn origin_annotations(namespace: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TENANT_NAMESPACE_ANNOTATION.to_owned(), namespace.to_owned()),
        (TENANT_NAME.to_owned(), name.to_owned()),
    ])
}

/// The tenant `(namespace, name)` a host object came from, if it is one of
/// the syncer's.
pub fn origin(annotations: Option<&BTreeMap<String, String>>) -> Option<(String, String)> {
    let annotations = annotations?;
    Some((
        annotations.get(TENANT_NAMESPACE_ANNOTATION)?.clone(),
        annotations.get(TENANT_NAME)?.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_readable_unique_and_valid_labels() {
        let cases = [
            (("default", "web"), ("default", "web")),
            (("a-b", "c"), ("a", "b-c")),
            (("ns", &"x".repeat(253)[..]), ("ns", &"x".repeat(252)[..])),
        ];
        for ((ns1, n1), (ns2, n2)) in cases {
            let (a, b) = (host_name(ns1, n1), host_name(ns2, n2));
            for name in [&a, &b] {
                assert!(
                    name.len() <= 63 && !name.starts_with('-') && !name.ends_with('-'),
                    "{name}"
                );
            }
            if (ns1, n1) != (ns2, n2) {
                assert_ne!(a, b, "{ns1}/{n1} and {ns2}/{n2} share {a}");
            }
        }
        assert!(host_name("default", "web").starts_with("web-default-"));
    }

    #[test]
    fn the_origin_is_read_back_from_the_annotations() {
        let annotations = origin_annotations("team", &"n".repeat(200));
        assert_eq!(
            origin(Some(&annotations)),
            Some(("team".to_owned(), "n".repeat(200)))
        );
        assert_eq!(origin(None), None);
    }
}
