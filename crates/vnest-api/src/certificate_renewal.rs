//! Renewing a tenant's leaf certificates on request (`vnest
//! renew-certificates`), between the CLI that asks and the supervisor that
//! renews.

/// On a VirtualCluster: renew every leaf certificate of its control plane
/// now, under the same CAs. The value names the request (the time it was
/// made); each new value is honoured once.
pub const ASKED: &str = "vnest.dev/renew-certificates";

/// On the tenant's PKI Secret ([`crate::host_names::PKI_SECRET`]): the last
/// request ([`ASKED`]) its leaves were issued for.
pub const DONE: &str = "vnest.dev/renewed-for";
