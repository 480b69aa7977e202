//! The supervisor: a controller on the host that turns a `VirtualCluster`
//! into a running, isolated tenant control plane.
//!
//! As in linkerd's policy controller, what the host should hold for a
//! VirtualCluster is computed by pure functions over types (`desired`) and
//! what the user is told by pure functions too (`status`), both tested
//! without a server; `reconcile` applies the one with server-side apply,
//! deletes what it owns and no longer wants (`prune`) and writes the other;
//! `controller` runs reconcile on every change.

pub mod context;
pub mod controller;
pub mod datastore_restore;
pub mod datastore_wipe;
pub mod desired;
pub mod error;
pub mod etcd_backup;
pub mod host_facts;
pub mod ingress_grants;
pub mod metrics;
pub mod pod_problems;
pub mod pool_nodes;
pub mod prune;
pub mod recently_applied;
pub mod reconcile;
pub mod rollout;
pub mod status;
pub mod teardown;
pub mod tenant_waits;
