//! The supervisor: a controller on the host that turns a `VirtualCluster`
//! into a running, isolated tenant control plane.
//!
//! As in linkerd's policy controller, what the host should hold for a
//! VirtualCluster is computed by pure functions over types (`desired`),
//! tested table-driven without a server; reconcile applies it with
//! server-side apply. So far only the desired state of the host namespaces
//! exists.

pub mod desired;
