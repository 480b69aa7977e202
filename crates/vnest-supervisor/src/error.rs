//! What can go wrong while reconciling a VirtualCluster.

use crate::desired::certificates::CertificateError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("talking to the host apiserver: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Apply(#[from] vnest_kube::apply::ApplyError),
    #[error(transparent)]
    Certificates(#[from] CertificateError),
    #[error("issuing a kubeconfig: {0}")]
    Pki(#[from] vnest_pki::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Cleanup waits for the host to finish deleting these namespaces.
    #[error("waiting for host namespace {0} to be deleted")]
    StillDeleting(String),
    /// Cleanup waits for etcd's volumes in this namespace to be emptied.
    #[error("emptying the etcd volumes in {0}")]
    Wiping(String),
    #[error("the object has no {0}")]
    Incomplete(&'static str),
    #[error("making the apiserver's encryption key: {0}")]
    EncryptionKey(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
