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
    /// Waits for the host to finish deleting the object's copy.
    #[error("waiting for host {0} to be deleted")]
    StillDeleting(String),
    #[error("not yet: {0}")]
    NotYet(#[from] crate::translate::NotYet),
    /// The watch of the tenant's namespaces or NetworkPolicies ended.
    #[error("the tenant's namespaces or NetworkPolicies are no longer watched")]
    NetworkUnwatched(#[from] kube::runtime::reflector::store::WriterDropped),
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
