//! Certificates and kubeconfigs for one Kubernetes control plane, issued by
//! vnest itself so that no tenant's trust ever depends on the host cluster's CA.
//!
//! The set mirrors what kubeadm creates (`/etc/kubernetes/pki`): a cluster CA,
//! an etcd CA, a front-proxy CA, the service-account signing key pair, serving
//! certificates for etcd and kube-apiserver, and client certificates for every
//! component that talks to another. All keys are ECDSA P-256.

mod authority;
mod control_plane;
mod error;
mod kubeconfig;

pub use authority::{CertAndKey, CertificateAuthority, LeafSpec, Usage, Validity};
pub use control_plane::{
    ControlPlanePki, ControlPlaneSpec, PkiFile, ServiceAccountKeyPair, WEBHOOK_CLIENT,
    WEBHOOK_CLIENT_CA, identity,
};
pub use error::{Error, Result};
pub use kubeconfig::{ClientCredentials, Server, render_kubeconfig};
