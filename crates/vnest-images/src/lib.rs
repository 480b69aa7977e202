//! Container images assembled from local files into OCI image archives, with
//! no daemon and no registry: what `ctr images import` loads into containerd.
//!
//! An image here is one uncompressed layer built deterministically (entries
//! sorted, owner root, mtime zero), so the same inputs give the same digests.

mod archive;
mod spec;

pub use archive::{ImageDigests, write_oci_archive};
pub use spec::{Entry, ImageSpec};

/// What can go wrong while assembling an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0:?} is not a valid path inside an image: use a relative path without '..'")]
    InvalidPath(String),
    #[error("{0:?} is not a valid image reference like registry.example/name:tag")]
    InvalidReference(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
