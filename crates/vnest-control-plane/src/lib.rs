//! What a Kubernetes control plane is made of, as pure data: the command
//! lines of etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler ([`flags`]), where their files live ([`Layout`]), and the
//! objects of a cluster's DNS ([`cluster_dns`]).
//!
//! No client and no processes: `vnest-local` starts the components from
//! these command lines, the supervisor puts them in pods, and the
//! development host runs the same DNS. Each consumer does its own I/O.

pub mod cluster_dns;
pub mod flags;
mod layout;

pub use layout::Layout;
