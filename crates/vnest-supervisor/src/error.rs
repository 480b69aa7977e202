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
    /// The teardown waits for every pod of the tenant in this host
    /// namespace to be stopping.
    #[error("waiting for every pod in host namespace {0} to be stopping")]
    Stopping(String),
    /// Cleanup waits for etcd's volumes in this namespace to be emptied.
    #[error("emptying the etcd volumes in {0}")]
    Wiping(String),
    #[error("the object has no {0}")]
    Incomplete(&'static str),
    #[error("making the apiserver's encryption key: {0}")]
    EncryptionKey(#[source] std::io::Error),
    /// A reconcile ran past its deadline (a call that never answered) and
    /// was abandoned, to be tried again.
    #[error("the reconcile did not finish within {} s (a call to an apiserver did not answer); trying again", .0.as_secs())]
    TimedOut(std::time::Duration),
}

impl Error {
    /// What failed, as the `outcome` label of the reconcile metric counts
    /// it (a cleanup's or apply's error by the error inside the finalizer).
    pub fn kind(&self) -> &'static str {
        use kube::runtime::finalizer::Error as Finalizer;
        match self {
            Error::Kube(_) => "host_api",
            Error::Apply(_) => "apply",
            Error::Certificates(_) => "certificates",
            Error::Pki(_) => "kubeconfig",
            Error::Finalizer(wrapped) => match wrapped.as_ref() {
                Finalizer::ApplyFailed(inner) | Finalizer::CleanupFailed(inner) => inner.kind(),
                _ => "finalizer",
            },
            Error::Stopping(_) => "stopping",
            Error::Wiping(_) => "wiping",
            Error::Incomplete(_) => "incomplete",
            Error::EncryptionKey(_) => "encryption_key",
            Error::TimedOut(_) => "timed_out",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finalizer_error_counts_as_the_error_inside() {
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::CleanupFailed(
            Error::Wiping("ns".into()),
        )));
        assert_eq!(wrapped.kind(), "wiping");
        assert_eq!(Error::Incomplete("name").kind(), "incomplete");
    }
}
