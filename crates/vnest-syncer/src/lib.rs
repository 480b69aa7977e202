//! The syncer: one per tenant, in the tenant's control-plane namespace on
//! the host. It mirrors the tenant's objects down into the tenant's
//! workloads namespace, where real kubelets run them, and their status up;
//! in between, `policy` refuses what a tenant may not do on the host.
//!
//! - `vnest_api::host_copies` (tenant object ↔ host name, collision-free)
//!   is shared with the CLI.
//! - `policy`: what is refused, one rule each, with the reason shown.
//! - `translate`: tenant object → host object (pure).
//! - `downward`: the downward API showing the tenant pod, not the host's.
//! - `etc_hosts`: a pod's `/etc/hosts` naming its tenant namespace.
//! - `service_links`: the Service variables the tenant's kubelet would give.
//! - `mirror`: ConfigMaps, Secrets, Services, PersistentVolumeClaims down.
//! - `volumes`: volumes bound to the tenant's claims, and StorageClasses, up.
//! - `pods`: pods down, status and binding up, refusals.
//! - `nodes`: the pool's nodes up.
//! - `node_selection`: pods choose nodes by the tenant's node labels.
//! - `events`: host events about pods up.
//! - `kubelet_proxy`: the tenant apiserver's logs/exec/port-forward calls,
//!   answered through the host apiserver.
//! - `service_addresses`: tenant Services get their ClusterIP from the
//!   host (an admission webhook behind the kubelet proxy's listener).
//! - `host_copies`: what the syncer knows of its host objects, from
//!   watches: names for counting, its own last writes.
//! - `host_quota`: the host's object counts, kept exactly on create.
//! - `statusless`: tenant Services read without a status they may not
//!   decode.
//! - `gc`: host objects whose tenant origin is gone.
//! - `certificate_reload`: renewed certificates taken without a restart.
//! - `command`: the `vnest-syncer` command line.

pub mod certificate_reload;
pub mod command;
pub mod context;
pub mod downward;
pub mod error;
pub mod etc_hosts;
pub mod events;
pub mod gc;
pub mod host_copies;
pub mod host_quota;
pub mod kubelet_proxy;
pub mod metrics;
pub mod mirror;
pub mod network_policy;
pub mod node_selection;
pub mod nodes;
pub mod own_writes;
pub mod pod_certificates;
pub mod pod_status;
pub mod pods;
pub mod policy;
pub mod selectors;
pub mod service_addresses;
pub mod service_links;
pub mod statusless;
pub mod translate;
pub mod trust_bundles;
pub mod volumes;
