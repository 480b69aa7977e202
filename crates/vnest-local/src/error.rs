use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong while running a local control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{binary} was not found in {searched}.\n\
         Build the pinned upstream binaries and point vnest at them:\n  \
         export {env}=\"$(tools/upstream/build.sh)\"",
        env = crate::binaries::BIN_DIR_ENV
    )]
    BinaryNotFound {
        binary: &'static str,
        searched: String,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Pki(#[from] vnest_pki::Error),

    #[error("{process} exited ({status}); last lines of {log}:\n{tail}")]
    Exited {
        process: String,
        status: String,
        log: PathBuf,
        tail: String,
    },

    #[error("{process} was not ready after {waited:?}; last lines of {log}:\n{tail}")]
    NotReady {
        process: String,
        waited: Duration,
        log: PathBuf,
        tail: String,
    },

    #[error("the admin kubeconfig could not be loaded: {0}")]
    Kubeconfig(#[source] kube::config::KubeconfigError),

    #[error("a client for the apiserver could not be built: {0}")]
    Client(#[source] kube::Error),

    #[error("{0:?} is not a valid URL")]
    InvalidUrl(String),

    #[error(
        "the name {0:?} is not valid: use lower-case letters, digits and '-', at most 40 characters"
    )]
    InvalidName(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches what was being done to an I/O error.
pub(crate) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}
