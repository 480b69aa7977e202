//! The `VirtualCluster` custom resource: one tenant's own control plane on
//! the host, as a cluster admin (or GitOps, or a CI job) asks for it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The Kubernetes version a VirtualCluster runs when it names none: the one
/// this vnest release is built and tested with (tools/upstream/go.mod).
pub const DEFAULT_KUBERNETES_VERSION: &str = "v1.37.2";
/// The etcd image tag tenant datastores run (etcd 3.7.3, tools/upstream/go.mod).
pub const ETCD_IMAGE_TAG: &str = "3.7.3-0";

/// A tenant's own Kubernetes control plane (apiserver, etcd,
/// controller-manager) running as pods in host namespaces of its own, with
/// its workloads synced to a node pool of its own.
// clippy reads the repeated `type_ = …` of `printcolumn(…)` as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "vnest.dev",
    version = "v1alpha1",
    kind = "VirtualCluster",
    namespaced,
    shortname = "vc",
    category = "vnest",
    doc = "A tenant's own Kubernetes control plane on the host; see docs/ for the isolation layers it gets.",
    status = "VirtualClusterStatus",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        priority = 1
    ),
    printcolumn(name = "Expires", type_ = "date", json_path = ".status.expiresAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!(has(self.ttl) && has(self.expiresAt))").message("set either ttl or expiresAt, not both"))]
#[x_kube(validation = Rule::new("!has(self.nodePool.mode) || self.nodePool.mode != 'Shared' || has(self.isolation) && has(self.isolation.runtimeClassName) || has(self.nodePool.acceptSharedKernel) && self.nodePool.acceptSharedKernel").message("a Shared node pool needs isolation.runtimeClassName (a sandbox such as gvisor), or nodePool.acceptSharedKernel: true to accept that tenants share the nodes' kernel"))]
#[x_kube(validation = Rule::new("!has(self.backup) || !has(self.datastore) || !has(self.datastore.external)").message("backup snapshots the tenant's own etcd; back up an external etcd with its own tools"))]
#[serde(rename_all = "camelCase")]
pub struct VirtualClusterSpec {
    /// The tenant's Kubernetes version, like `v1.37.2`. Unset means the
    /// version this vnest release pins.
    #[x_kube(validation = Rule::new(r"self.matches('^v1\\.[0-9]+\\.[0-9]+$')").message("must be a Kubernetes release like v1.37.2"))]
    #[x_kube(validation = Rule::new("!self.matches('^v1\\\\.[0-9]+\\\\.[0-9]+$') || !oldSelf.matches('^v1\\\\.[0-9]+\\\\.[0-9]+$') || (int(self.split('.')[1]) >= int(oldSelf.split('.')[1]) && int(self.split('.')[1]) <= int(oldSelf.split('.')[1]) + 1)").message("a running control plane moves one minor version up at a time: no minor downgrade, no skipped minor"))]
    #[schemars(length(max = 32))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,

    #[serde(default)]
    pub control_plane: ControlPlane,

    #[serde(default)]
    pub datastore: Datastore,

    /// Required: which nodes run the tenant's workloads is a decision the
    /// admin makes, not a default.
    pub node_pool: NodePool,

    #[serde(default)]
    pub isolation: Isolation,

    /// Delete the cluster this long after it was created: a number and a
    /// unit, e.g. `30m`, `2h`, `7d`, or `1h30m`.
    #[x_kube(validation = Rule::new(r"self.matches('^([0-9]+(s|m|h|d))+$')").message(crate::ttl::MESSAGE))]
    #[schemars(length(max = 32))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,

    /// Delete the cluster at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// Scale the control plane to zero, keeping its data; false resumes it.
    #[serde(default)]
    pub paused: bool,

    /// Snapshots of the tenant's etcd on a schedule, kept on a volume of
    /// the control-plane namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
}

/// Snapshots of the tenant's own etcd, taken on a schedule by a CronJob of
/// the control-plane namespace (etcd's snapshot call, the tenant keeps
/// serving) and kept on a volume there, the newest `keep` of them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    /// When, in UTC, in cron syntax: five fields (minute, hour, day of the
    /// month, month, day of the week), like `0 3 * * *`, or a macro such as
    /// `@daily`.
    #[x_kube(validation = Rule::new(r"self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[^ ]+( [^ ]+){4})$')").message("must be five cron fields (minute hour day-of-month month day-of-week), like `0 3 * * *`, or @hourly, @daily, @weekly, @monthly, @yearly"))]
    #[schemars(length(max = 100))]
    pub schedule: String,
    /// How many snapshots to keep: after each new one, the oldest beyond
    /// this count are removed.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("must be between 1 and 100"))]
    #[serde(default = "default_keep")]
    pub keep: i32,
    /// The size of the backups' volume: room for `keep` snapshots and one
    /// being written.
    #[serde(default = "default_backup_storage")]
    pub storage: Quantity,
    /// The StorageClass of the backups' volume; unset uses the host's
    /// default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// How many snapshots `spec.backup` keeps unless told.
pub const DEFAULT_BACKUP_KEEP: i32 = 7;
/// The size of the backups' volume unless `spec.backup` says.
pub const DEFAULT_BACKUP_STORAGE: &str = "5Gi";

fn default_keep() -> i32 {
    DEFAULT_BACKUP_KEEP
}

fn default_backup_storage() -> Quantity {
    Quantity(DEFAULT_BACKUP_STORAGE.to_owned())
}

/// The tenant's apiserver and controller-manager.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlane {
    /// apiserver replicas.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 5").message("must be between 1 and 5"))]
    #[serde(default = "one")]
    pub replicas: i32,

    /// Requests and limits of the apiserver container; unset, vnest's
    /// default requests (docs/virtualcluster.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Requests and limits of the other control-plane containers; each
    /// one unset gets vnest's default requests.
    #[serde(default, skip_serializing_if = "ComponentResources::is_unset")]
    pub component_resources: ComponentResources,

    /// More kube-apiserver flags, each `--name=value`. Flags vnest sets for
    /// isolation (authorization, admission, etcd, certificates) cannot be
    /// overridden here.
    #[x_kube(validation = Rule::new("self.all(a, a.startsWith('--') && a.contains('='))").message("each argument must look like --name=value"))]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_api_server_args: Vec<String>,

    #[serde(default)]
    pub expose: Expose,

    /// Host node labels the control plane's pods (etcd, apiserver,
    /// controller-manager) are placed on; unset places them on any node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
}

impl Default for ControlPlane {
    fn default() -> Self {
        Self {
            replicas: 1,
            resources: None,
            component_resources: ComponentResources::default(),
            extra_api_server_args: Vec::new(),
            expose: Expose::default(),
            node_selector: BTreeMap::new(),
        }
    }
}

/// Requests and limits of the control-plane containers other than the
/// apiserver.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComponentResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_manager: Option<ResourceRequirements>,
    /// Each member of the tenant's own etcd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syncer: Option<ResourceRequirements>,
    /// The tenant's kube-scheduler, run with `nodePool.scheduler: Tenant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<ResourceRequirements>,
}

impl ComponentResources {
    pub fn is_unset(&self) -> bool {
        self == &ComponentResources::default()
    }
}

fn one() -> i32 {
    1
}

/// How the tenant's apiserver is reached from outside its host namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Expose {
    #[serde(default, rename = "type")]
    pub type_: ExposeType,

    /// More DNS names or IP addresses for the apiserver's certificate.
    #[schemars(length(max = 64), inner(length(max = 253)))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_sans: Vec<String>,
}

/// The kind of host Service in front of the tenant's apiserver.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExposeType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// Where the tenant's data lives: an etcd of its own (the default) or
/// external etcd endpoints.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!(has(self.etcd) && has(self.external))").message("choose an etcd of the tenant's own or external endpoints, not both"))]
#[x_kube(validation = Rule::new("self == oldSelf").message("the datastore cannot be changed after creation (etcd members and volumes are fixed when the cluster is made)"))]
#[serde(rename_all = "camelCase")]
pub struct Datastore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<OwnedEtcd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalEtcd>,
}

impl Datastore {
    /// How many members the tenant's own etcd has (one unless set); the
    /// count also applies, unused, while the datastore is external.
    pub fn members(&self) -> i32 {
        self.etcd.as_ref().map_or(1, |e| e.replicas.max(1))
    }
}

/// An etcd run for this tenant alone, as a StatefulSet in its namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OwnedEtcd {
    /// Members: 1, 3 or 5 (an even number adds no fault tolerance).
    #[x_kube(validation = Rule::new("self in [1, 3, 5]").message("must be 1, 3 or 5"))]
    #[serde(default = "one")]
    pub replicas: i32,
    /// The size of each member's volume.
    #[serde(default = "default_storage")]
    pub storage: Quantity,
    /// The StorageClass of the members' volumes; unset uses the host's
    /// default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for OwnedEtcd {
    fn default() -> Self {
        Self {
            replicas: 1,
            storage: default_storage(),
            storage_class_name: None,
        }
    }
}

fn default_storage() -> Quantity {
    Quantity("1Gi".to_owned())
}

/// etcd endpoints run elsewhere.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalEtcd {
    /// `https://host:port` URLs.
    #[x_kube(validation = Rule::new("size(self) > 0 && self.all(e, e.startsWith('https://'))").message("give at least one endpoint, each https://host:port"))]
    #[schemars(length(max = 16), inner(length(max = 512)))]
    pub endpoints: Vec<String>,
    /// A Secret in the VirtualCluster's namespace with `ca.crt`, `tls.crt`
    /// and `tls.key` for the etcd client.
    pub client_cert_secret_name: String,
}

/// Which host nodes the tenant's workloads may run on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("self.mode == 'Shared' || size(self.nodeSelector) > 0").message("a Dedicated node pool needs a nodeSelector that names its nodes"))]
#[x_kube(validation = Rule::new("self.mode != 'Shared' || self.scheduler != 'Tenant'").message("scheduler: Tenant needs a Dedicated node pool: on a Shared pool the tenant's scheduler cannot see other tenants' pods"))]
#[serde(rename_all = "camelCase")]
pub struct NodePool {
    #[serde(default)]
    pub mode: NodePoolMode,
    /// Labels the pool's nodes carry; the tenant's pods are bound to them.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// With a Shared pool and no sandbox RuntimeClass, the admin accepts
    /// that this tenant's pods share the nodes' kernel with other tenants.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_shared_kernel: bool,
    /// Who picks a node of the pool for each of the tenant's pods.
    #[serde(default)]
    pub scheduler: PodScheduler,
}

/// Who picks the node each tenant pod runs on.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PodScheduler {
    /// The host's scheduler, among the pool's nodes, by the host's view of
    /// them (the default): what every other pod there uses is counted,
    /// and the tenant's PriorityClasses are not honoured (a tenant may not
    /// rank its pods above the host's or other tenants').
    #[default]
    Host,
    /// A kube-scheduler of the tenant's own, in its control plane, by the
    /// tenant's Node copies: the tenant's PriorityClasses and preemption,
    /// extended resources the tenant declares in its Nodes' status; the
    /// host runs each pod on the node it was bound to. Only for a
    /// Dedicated pool, whose nodes run nothing of other tenants' that this
    /// scheduler cannot see.
    Tenant,
}

impl PodScheduler {
    /// The choice as the syncer's `--scheduler` flag spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PodScheduler::Host => "host",
            PodScheduler::Tenant => "tenant",
        }
    }
}

impl std::str::FromStr for PodScheduler {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [PodScheduler::Host, PodScheduler::Tenant]
            .into_iter()
            .find(|choice| choice.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not host or tenant"))
    }
}

/// Whether other tenants' workloads may share the pool's nodes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NodePoolMode {
    /// Only this tenant's workloads run there (the default): the
    /// `NodePool` condition says when another VirtualCluster's pool takes
    /// any of the same nodes.
    #[default]
    Dedicated,
    /// Other tenants' pools may take the same nodes: needs a sandboxed
    /// `isolation.runtimeClassName`, or `acceptSharedKernel: true`.
    Shared,
}

/// The isolation layers vnest puts around the tenant's workloads on the
/// host; each is on unless turned off.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Isolation {
    /// The Pod Security Standard enforced on the tenant's host namespace.
    #[serde(default)]
    pub pod_security: PodSecurityLevel,
    /// NetworkPolicies: workloads reach their own apiserver and DNS, never
    /// the tenant's etcd, other tenants, the host apiserver or kubelets.
    #[serde(default = "yes")]
    pub network_policy: bool,
    /// ResourceQuota `hard` limits for the tenant's workloads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_quota: BTreeMap<String, Quantity>,
    /// LimitRange defaults for the tenant's containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_container_resources: Option<ResourceRequirements>,
    /// A RuntimeClass (e.g. a VM sandbox) forced on every tenant pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
    /// At most this many processes per tenant pod (fork-bomb guard).
    #[x_kube(validation = Rule::new("self >= 16").message("must be at least 16"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_limit: Option<i64>,
    /// How tenant pod labels appear on their host pods: `Prefixed` (the
    /// default) moves each key under vnest's domain (`app` as
    /// `pod.vnest.dev/app`), so no host selector can be made to select a
    /// tenant pod; `Verbatim` keeps the tenant's keys, for host tooling
    /// that selects tenant pods by their own labels.
    #[serde(default)]
    pub pod_labels: PodLabels,
    /// The host names the tenant's Ingresses may claim on the host's
    /// ingress controllers, and the IngressClasses they may name; none
    /// unless granted.
    #[serde(default, skip_serializing_if = "IngressGrant::is_empty")]
    pub ingress: IngressGrant,
}

/// What a tenant's Ingresses may claim on the host (see
/// [`crate::ingress_hosts`]).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IngressGrant {
    /// Host name patterns: `shop.example.com`, `*.shop.example.com` (every
    /// name under it) or `*` (every name, and rules without a host). A
    /// pattern overlapping an older VirtualCluster's stays that one's.
    #[x_kube(validation = Rule::new(format!("self.all(h, {})", crate::ingress_hosts::PATTERN_CEL.replace("self", "h"))).message("each host is a lowercase DNS name, *.name, or *"))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub hosts: Vec<String>,
    /// IngressClasses of the host a tenant Ingress may name; one naming
    /// none goes to the host's default class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 253)))]
    pub class_names: Vec<String>,
}

impl IngressGrant {
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.class_names.is_empty()
    }
}

fn yes() -> bool {
    true
}

impl Default for Isolation {
    fn default() -> Self {
        Self {
            pod_security: PodSecurityLevel::default(),
            network_policy: true,
            resource_quota: BTreeMap::new(),
            default_container_resources: None,
            runtime_class_name: None,
            pid_limit: None,
            pod_labels: PodLabels::default(),
            ingress: IngressGrant::default(),
        }
    }
}

/// How tenant pod labels appear on their host pods.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PodLabels {
    /// Each key moved under vnest's domain (`app` as `pod.vnest.dev/app`),
    /// so that no selector the host's admin writes for the host's own pods
    /// (a NetworkPolicy peer, a PodDisruptionBudget, a monitoring target)
    /// can be made to select a tenant pod (the default).
    #[default]
    Prefixed,
    /// As the tenant wrote them (but none in vnest's domain), for host
    /// tooling that selects tenant pods by their own labels: the tenant
    /// can then put its pods under any such selector.
    Verbatim,
}

impl PodLabels {
    /// The choice as the syncer's `--pod-labels` flag spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PodLabels::Prefixed => "prefixed",
            PodLabels::Verbatim => "verbatim",
        }
    }
}

impl std::str::FromStr for PodLabels {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [PodLabels::Prefixed, PodLabels::Verbatim]
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not prefixed or verbatim"))
    }
}

/// Pod Security Standards levels.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    Privileged,
    Baseline,
    #[default]
    Restricted,
}

impl PodSecurityLevel {
    /// The level's name as Pod Security admission labels spell it (and as
    /// it is serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurityLevel::Privileged => "privileged",
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Restricted => "restricted",
        }
    }
}

/// The level from its name (`--pod-security` of the CLI and the syncer).
impl std::str::FromStr for PodSecurityLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            PodSecurityLevel::Privileged,
            PodSecurityLevel::Baseline,
            PodSecurityLevel::Restricted,
        ]
        .into_iter()
        .find(|level| level.as_str() == s)
        .ok_or_else(|| format!("{s:?} is not privileged, baseline or restricted"))
    }
}

/// What the supervisor reports.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VirtualClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One per stage: Certificates, Datastore, APIServer, ControllerManager,
    /// Syncer, and Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the tenant's apiserver is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The Kubernetes version running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The Secret holding the tenant's admin kubeconfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// The version each component of the control plane runs: set once
    /// all of its pods run it (during an upgrade, the apiservers move
    /// first, then the controller-manager and scheduler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_versions: Option<ComponentVersions>,
    /// The last certificate renewal asked for (the value of the
    /// `vnest.dev/renew-certificates` annotation) that the control plane
    /// runs with: its pods rolled onto the renewed certificates and it was
    /// Ready after. `vnest renew-certificates --wait` waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_rolled_out: Option<String>,
}

/// The version each upstream component of a control plane runs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentVersions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_apiserver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_controller_manager: Option<String>,
    /// Only with `nodePool.scheduler: Tenant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_scheduler: Option<String>,
    /// The tenant's own etcd (the image's tag); none with an external one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<String>,
}

/// Where a VirtualCluster is in its life.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Provisioning,
    Ready,
    Paused,
    Failed,
    Deleting,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_pod_security_level_reads_back_as_flag_and_as_field() {
        for level in [
            PodSecurityLevel::Privileged,
            PodSecurityLevel::Baseline,
            PodSecurityLevel::Restricted,
        ] {
            assert_eq!(level.as_str().parse::<PodSecurityLevel>(), Ok(level));
            assert_eq!(
                serde_json::to_value(level).unwrap(),
                serde_json::json!(level.as_str())
            );
        }
        assert_eq!(
            "Baseline".parse::<PodSecurityLevel>(),
            Err("\"Baseline\" is not privileged, baseline or restricted".to_owned())
        );
    }
}
