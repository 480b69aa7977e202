//! Development and test tooling, kept apart from vnest's product code: a real
//! host cluster on one machine. A control plane from `vnest-local` listens on
//! a bridge; each node is a network namespace on that bridge running Debian's
//! containerd and runc, the pinned kubelet and kube-proxy, with the bridge CNI
//! plugin and kube-router's firewall enforcing NetworkPolicy; CoreDNS serves
//! cluster DNS; images are assembled locally and
//! imported, so no pull ever leaves the machine.

mod cgroups;
mod command;
mod dns;
mod host;
pub mod images;
mod machine_lock;
mod mounts;
mod network;
pub mod network_policy;
mod node;
pub mod node_config;
mod procs;
pub mod simulated;
pub mod storage;
pub mod topology;

pub use host::{DevHost, DevHostOptions, import_images, mirror_registry, sweep};
pub use node::RunningNode;
