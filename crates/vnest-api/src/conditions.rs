//! The condition types of a VirtualCluster's status: one per stage of
//! bringing its control plane up, then `Ready`. The supervisor writes them;
//! the CLI shows them as progress.

pub const CERTIFICATES: &str = "Certificates";
pub const DATASTORE: &str = "Datastore";
pub const APISERVER: &str = "APIServer";
pub const CONTROLLER_MANAGER: &str = "ControllerManager";
/// The tenant's own kube-scheduler; shown only with `nodePool.scheduler:
/// Tenant`.
pub const SCHEDULER: &str = "Scheduler";
pub const CLUSTER_DNS: &str = "ClusterDNS";
pub const SYNCER: &str = "Syncer";
pub const READY: &str = "Ready";
/// Whether the pool's nodes hold `spec.isolation.pidLimit` (their kubelets'
/// `podPidsLimit`); shown only when the spec asks for a limit, and not a
/// stage: Ready does not wait for it.
pub const PID_LIMIT: &str = "PIDLimit";
/// Whether a Dedicated pool has its nodes to itself (no other
/// VirtualCluster's pool takes any of them); not a stage either.
pub const NODE_POOL: &str = "NodePool";
/// Whether the control plane's pods run apart from other VirtualClusters'
/// pools (a container escape on a node reaches what runs there, this
/// cluster's CA keys among it); not a stage either.
pub const CONTROL_PLANE_PLACEMENT: &str = "ControlPlanePlacement";

/// Whether the ingress host patterns granted to this cluster are its own
/// (none overlaps an older VirtualCluster's); shown only when some are
/// granted, and not a stage.
pub const INGRESS_HOSTS: &str = "IngressHosts";

/// Whether scheduled snapshots (`spec.backup`) are being taken: when the
/// last one was, or that the last run failed; shown only with
/// `spec.backup`, and not a stage.
pub const BACKUP: &str = "Backup";

/// A change of `spec.kubernetesVersion` under way: the snapshot taken
/// first, the apiservers moving, then the controllers; shown only while
/// one is, and not a stage.
pub const UPGRADE: &str = "Upgrade";

/// The stages in the order they come.
pub const STAGES: [&str; 7] = [
    CERTIFICATES,
    DATASTORE,
    APISERVER,
    CONTROLLER_MANAGER,
    SCHEDULER,
    CLUSTER_DNS,
    SYNCER,
];
