//! How a VirtualCluster's objects on the host are named and labelled.
//!
//! Host namespace names are deterministic and never collide: a tenant's
//! namespace and name may both contain `-`, so plain concatenation is
//! ambiguous (`a-b`/`c` and `a`/`b-c` would both give `a-b-c`) and a tenant
//! could claim another's host namespace. Every name therefore ends in a hash
//! of the unambiguous `namespace/name`; the readable part is only a hint and
//! is shortened, never the hash, when the 63-character limit bites. The
//! exact identity is also in labels.

use sha2::{Digest, Sha256};

use crate::VirtualCluster;

/// Label keys and values vnest puts on every host object it creates.
pub mod labels {
    /// Which component manages the object (`vnest-supervisor`).
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGER: &str = "vnest-supervisor";
    /// The VirtualCluster's name and namespace the object belongs to.
    pub const VIRTUAL_CLUSTER: &str = "vnest.dev/virtualcluster";
    pub const VIRTUAL_CLUSTER_NAMESPACE: &str = "vnest.dev/virtualcluster-namespace";
    /// What a host namespace holds: `control-plane` or `workloads`.
    pub const ROLE: &str = "vnest.dev/role";
    /// Which control-plane component a pod or Service is.
    pub const COMPONENT: &str = "vnest.dev/component";
}

/// The tenant apiserver on the host: its Service (in the control-plane
/// namespace, `apiserver.<cp namespace>.svc` is in its certificate), its
/// pods' component label value, and the port its pods serve on.
pub mod apiserver {
    pub const SERVICE: &str = "apiserver";
    pub const COMPONENT: &str = "apiserver";
    pub const SECURE_PORT: u16 = 6443;
}

/// The tenant's own etcd on the host: its headless Service (members are
/// `etcd-<i>.etcd.<cp namespace>.svc`, and `etcd.<cp namespace>.svc` is in
/// their serving certificate), its pods' component label value, and the
/// port members serve clients on.
pub mod etcd {
    pub const SERVICE: &str = "etcd";
    pub const COMPONENT: &str = "etcd";
    pub const CLIENT_PORT: u16 = 2379;
}

/// Scheduled snapshots of the tenant's etcd (`spec.backup`): the CronJob
/// taking them in the control-plane namespace, its pods' component label
/// value, and the claim they are kept on.
pub mod etcd_backup {
    pub const CRON_JOB: &str = "etcd-backup";
    pub const COMPONENT: &str = "etcd-backup";
    pub const CLAIM: &str = "etcd-backups";
    /// The Job snapshotting etcd into the backups' volume before an
    /// upgrade, followed by the version (`v1-37-2`).
    pub const BEFORE_UPGRADE_JOB_PREFIX: &str = "etcd-before-upgrade-to-";
}

/// The tenant's syncer on the host: its Deployment, in the control-plane
/// namespace, runs vnest's own image.
pub mod syncer {
    pub const DEPLOYMENT: &str = "syncer";
    pub const COMPONENT: &str = "syncer";
}

/// The Secret in the control-plane namespace holding the tenant's whole
/// PKI set (kubeadm's file names as keys, see [`pki_secret_key`]).
pub const PKI_SECRET: &str = "vnest-pki";

/// The key of PKI file `path` (kubeadm's name, `etcd/ca.crt`) in
/// [`PKI_SECRET`]: Secret data keys may not contain `/`, so it is stored
/// as `etcd-ca.crt`.
pub fn pki_secret_key(path: &str) -> String {
    path.replace('/', "-")
}

/// What a host namespace of a VirtualCluster holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostNamespaceRole {
    /// etcd, apiserver, controller-manager, syncer.
    ControlPlane,
    /// The tenant's pods, synced down.
    Workloads,
}

impl HostNamespaceRole {
    pub fn label_value(self) -> &'static str {
        match self {
            HostNamespaceRole::ControlPlane => "control-plane",
            HostNamespaceRole::Workloads => "workloads",
        }
    }
    fn suffix(self) -> &'static str {
        match self {
            HostNamespaceRole::ControlPlane => "cp",
            HostNamespaceRole::Workloads => "wl",
        }
    }
}

const MAX_LABEL: usize = 63;
const HASH_HEX: usize = 10;

/// The host namespace of `role` for VirtualCluster `namespace/name`:
/// `vnest-<namespace>-<name>-<hash>-<cp|wl>`, shortened to 63 characters.
/// A name may have dots, which a namespace's may not: they become dashes
/// in the readable part (the hash is over the exact name).
pub fn host_namespace(namespace: &str, name: &str, role: HostNamespaceRole) -> String {
    hashed_label(
        &format!("vnest-{namespace}-{name}").replace('.', "-"),
        &format!("{namespace}/{name}"),
        role.suffix(),
    )
}

/// A name of at most 63 characters that is unique for `key`:
/// `<readable>-<hash of key>-<suffix>` (no `-<suffix>` when it is empty);
/// a DNS label when `readable` is one, otherwise a DNS subdomain when it is
/// one. Only `readable` is shortened, never the hash, so two keys never
/// share a name however long they are; `readable` is a hint for people,
/// cut where it may end (not at a `-` or `.`).
pub fn hashed_label(readable: &str, key: &str, suffix: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hash: String = digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..HASH_HEX]
        .to_owned();
    let tail = if suffix.is_empty() {
        format!("-{hash}")
    } else {
        format!("-{hash}-{suffix}")
    };
    let mut readable = readable.to_owned();
    readable.truncate(MAX_LABEL - tail.len());
    let readable = readable.trim_end_matches(['-', '.']);
    format!("{readable}{tail}")
}

/// The namespace and name of `vc` (a VirtualCluster read from the API
/// always has both; `default` and empty stand in otherwise).
pub fn identity(vc: &VirtualCluster) -> (&str, &str) {
    (
        vc.metadata.namespace.as_deref().unwrap_or("default"),
        vc.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// [`host_namespace`] of `vc`.
pub fn host_namespace_of(vc: &VirtualCluster, role: HostNamespaceRole) -> String {
    let (namespace, name) = identity(vc);
    host_namespace(namespace, name, role)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= MAX_LABEL
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn names_are_readable_deterministic_and_per_role() {
        let cp = host_namespace("tenants", "team-a", HostNamespaceRole::ControlPlane);
        assert!(
            cp.starts_with("vnest-tenants-team-a-") && cp.ends_with("-cp"),
            "{cp}"
        );
        assert_eq!(
            cp,
            host_namespace("tenants", "team-a", HostNamespaceRole::ControlPlane)
        );
        let wl = host_namespace("tenants", "team-a", HostNamespaceRole::Workloads);
        assert!(wl.ends_with("-wl"));
        assert_ne!(cp, wl);
    }

    #[test]
    fn dashes_cannot_make_two_clusters_share_a_namespace() {
        let cases = [
            (("a-b", "c"), ("a", "b-c")),
            (("x", "y-z"), ("x-y", "z")),
            (("t", "a"), ("t", "a-")),
        ];
        for ((ns1, n1), (ns2, n2)) in cases {
            for role in [
                HostNamespaceRole::ControlPlane,
                HostNamespaceRole::Workloads,
            ] {
                assert_ne!(
                    host_namespace(ns1, n1, role),
                    host_namespace(ns2, n2, role),
                    "{ns1}/{n1} vs {ns2}/{n2}"
                );
            }
        }
    }

    #[test]
    fn long_names_are_shortened_but_stay_valid_and_distinct() {
        let long_ns = "n".repeat(63);
        let a = host_namespace(&long_ns, &"a".repeat(63), HostNamespaceRole::ControlPlane);
        let b = host_namespace(&long_ns, &"a".repeat(62), HostNamespaceRole::ControlPlane);
        for name in [&a, &b] {
            assert!(is_dns_label(name), "{name} ({} chars)", name.len());
        }
        assert_ne!(a, b, "names that differ only past the cut stay distinct");
        // A cut that lands on a '-' does not leave a double dash or a trailing one.
        let dashy = host_namespace(&"a-".repeat(30), "b", HostNamespaceRole::Workloads);
        assert!(is_dns_label(&dashy) && !dashy.contains("--"), "{dashy}");
    }
}
