//! A Kubernetes control plane run as local child processes: etcd,
//! kube-apiserver, kube-controller-manager and optionally kube-scheduler,
//! on free loopback ports, with certificates from `vnest-pki`.
//!
//! It is the throwaway API server for tests and CI jobs that have no host
//! cluster. Dropping or stopping a [`LocalControlPlane`] leaves no process and
//! no directory behind; if the owning process dies without unwinding, the
//! kernel kills the children (`PR_SET_PDEATHSIG`) and the next start sweeps the
//! orphaned directory.

mod binaries;
mod control_plane;
mod error;
mod health;
pub mod layout;
pub mod process;
mod workdir;

pub use binaries::{BIN_DIR_ENV, Component, UpstreamBinaries};
pub use control_plane::{LocalControlPlane, LocalOptions, Progress, validate_name};
pub use error::{Error, Result};
pub use process::process_running;
