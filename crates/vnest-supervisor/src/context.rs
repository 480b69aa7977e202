//! What every reconcile shares, apart from the controller that runs them
//! (so that `controller` uses `reconcile` and not the other way round).

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::Recorder;

use crate::desired::pods::Settings;
use crate::metrics::Metrics;
use crate::pool_nodes::KubeletConfigs;
use crate::recently_applied::RecentlyApplied;
use crate::tenant_waits::TenantWaits;

/// The field manager of every object the supervisor applies.
pub const FIELD_MANAGER: &str = "vnest-supervisor";
/// The finalizer that removes a VirtualCluster's host objects before it goes.
pub const FINALIZER: &str = "vnest.dev/cleanup";

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub kubelets: KubeletConfigs,
    pub settings: Settings,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// What was applied for each tenant lately (host objects no watch
    /// covers, CoreDNS in the tenant).
    pub recently_applied: RecentlyApplied,
    /// Watches of tenants for what their status waits for.
    pub tenant_waits: TenantWaits,
}
