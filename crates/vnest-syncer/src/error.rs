//! What can go wrong while syncing one object.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("talking to the {side} apiserver: {source}")]
    Kube {
        side: Side,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Apply(#[from] vnest_kube::apply::ApplyError),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A sync that got no answer in time ([`crate::context::SYNC_DEADLINE`]).
    #[error("no answer after {0:?}; abandoned, to be tried again")]
    Stalled(std::time::Duration),
    /// Waits for the host to finish deleting the object's copy.
    #[error("waiting for host {0} to be deleted")]
    StillDeleting(String),
    #[error(transparent)]
    PodCertificate(#[from] crate::pod_certificates::KeyError),
    #[error("not yet: {0}")]
    NotYet(#[from] crate::translate::NotYet),
    /// A watch the syncer reads from instead of asking (the tenant's
    /// namespaces, NetworkPolicies and pods; the host's pods and quotas)
    /// ended before it listed anything.
    #[error("a watch the syncer reads from has ended")]
    Unwatched(#[from] kube::runtime::reflector::store::WriterDropped),
}

impl Error {
    /// What failed, as the label of `vnest_syncer_sync_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube {
                side: Side::Tenant, ..
            } => "tenant_api",
            Error::Kube {
                side: Side::Host, ..
            } => "host_api",
            Error::Apply(_) => "apply",
            Error::Finalizer(error) => match error.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
            Error::Stalled(_) => "stalled",
            Error::StillDeleting(_) => "still_deleting",
            Error::PodCertificate(_) => "pod_certificate",
            Error::NotYet(_) => "not_yet",
            Error::Unwatched(_) => "unwatched",
        }
    }
}

/// Whether the host's admission refused a write for good (Pod Security,
/// quota, an invalid field), so the tenant is told, rather than for the
/// moment: an apiserver that has just started answers 403 "not yet ready
/// to handle request" until its admission caches are warm, and that write
/// is simply tried again.
pub fn refused_by_host(status: &kube::core::Status) -> bool {
    (status.code == 403 || status.code == 422)
        && !status.message.contains("not yet ready to handle request")
}

/// Which cluster a call went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Tenant,
    Host,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Tenant => "tenant",
            Side::Host => "host",
        })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tags a kube error with the side it came from.
pub trait OnSide<T> {
    fn on(self, side: Side) -> Result<T>;
}

impl<T> OnSide<T> for Result<T, kube::Error> {
    fn on(self, side: Side) -> Result<T> {
        self.map_err(|source| Error::Kube { side, source })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn status(code: u16, message: &str) -> kube::core::Status {
        kube::core::Status::failure(message, "Forbidden").with_code(code)
    }

    #[test]
    fn a_warming_apiserver_does_not_refuse_for_good() {
        assert!(refused_by_host(&status(
            403,
            "pods \"x\" is forbidden: exceeded quota: vnest-tenant"
        )));
        assert!(refused_by_host(&status(
            422,
            "spec.clusterIP: Invalid value"
        )));
        assert!(!refused_by_host(&status(
            403,
            "pods \"x\" is forbidden: not yet ready to handle request"
        )));
        assert!(!refused_by_host(&status(409, "already exists")));
    }
}
