//! The syncer: one per tenant, in the tenant's control-plane namespace on
//! the host. It mirrors the tenant's objects down into the tenant's
//! workloads namespace, where real kubelets run them, and their status up;
//! in between, `policy` refuses what a tenant may not do on the host.

pub mod naming;
pub mod policy;
