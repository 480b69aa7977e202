//! Everything the host should hold for one VirtualCluster, built in one
//! pure step from the VirtualCluster and what the reconcile observed, and
//! the choice of which owned objects are no longer wanted.
//!
//! The reconcile applies [`HostState::objects`] in order and deletes what
//! [`unwanted`] names; nothing here talks to a server.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    LimitRange, PersistentVolumeClaim, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::flowcontrol::v1::FlowSchema;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use vnest_api::VirtualCluster;
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};
use vnest_api::syncer_args::HostPort;
use vnest_pki::ControlPlanePki;

use super::addresses::PKI_SECRET;
use super::kubeconfig::Endpoint;
use super::network_policy::HostAddresses;
use super::pods::Settings;
use super::upgrade::Upgrade;
use super::{
    apiserver, backup, controller_manager, datastore, flow_control, kube_component, kubeconfig,
    network_policy, pods, quota, scheduler, syncer, syncer_rbac,
};

/// What the reconcile observed that the desired state depends on.
pub struct Observed<'a> {
    pub pki: &'a ControlPlanePki,
    /// The PKI Secret's data, keyed as pods mount it.
    pub pki_data: &'a BTreeMap<String, Vec<u8>>,
    /// The apiserver Service's ClusterIP (the syncer reaches it there).
    pub apiserver_ip: &'a str,
    /// Where the tenant's admin kubeconfig points, or why it cannot yet.
    pub endpoint: &'a Result<Endpoint, String>,
    /// Addresses tenant traffic must never reach.
    pub forbidden: &'a HostAddresses,
    /// The addresses of the tenant's pool nodes.
    pub pool: &'a [String],
    /// The Ingress host patterns this cluster holds.
    pub ingress_hosts: &'a [String],
    /// The admin's Secret with the external etcd's client certificate,
    /// when the datastore is external and the Secret exists.
    pub external_client_secret: Option<&'a Secret>,
    /// The versions the components are given, and the snapshot an
    /// upgrade takes first.
    pub upgrade: &'a Upgrade,
}

/// One object the supervisor applies, by kind.
#[derive(Clone, Debug)]
pub enum HostObject {
    ServiceAccount(ServiceAccount),
    RoleBinding(RoleBinding),
    ClusterRoleBinding(ClusterRoleBinding),
    FlowSchema(FlowSchema),
    ResourceQuota(ResourceQuota),
    LimitRange(LimitRange),
    NetworkPolicy(NetworkPolicy),
    Service(Service),
    Secret(Secret),
    StatefulSet(StatefulSet),
    Deployment(Deployment),
    /// Made when missing, never changed: a claim's class is fixed and its
    /// size can only grow where the class allows.
    PersistentVolumeClaim(PersistentVolumeClaim),
    CronJob(Box<CronJob>),
    /// Made when missing, never changed (a Job's template is fixed).
    Job(Box<Job>),
}

impl HostObject {
    /// Kind, namespace and name: what [`unwanted`] compares.
    pub fn key(&self) -> ObjectKey {
        fn key<K: Resource<DynamicType = ()>>(object: &K) -> ObjectKey {
            ObjectKey {
                kind: K::kind(&()).into_owned(),
                namespace: object.namespace(),
                name: object.name_any(),
            }
        }
        match self {
            HostObject::ServiceAccount(o) => key(o),
            HostObject::RoleBinding(o) => key(o),
            HostObject::ClusterRoleBinding(o) => key(o),
            HostObject::FlowSchema(o) => key(o),
            HostObject::ResourceQuota(o) => key(o),
            HostObject::LimitRange(o) => key(o),
            HostObject::NetworkPolicy(o) => key(o),
            HostObject::Service(o) => key(o),
            HostObject::Secret(o) => key(o),
            HostObject::StatefulSet(o) => key(o),
            HostObject::Deployment(o) => key(o),
            HostObject::PersistentVolumeClaim(o) => key(o),
            HostObject::CronJob(o) => key(o.as_ref()),
            HostObject::Job(o) => key(o.as_ref()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn of<K: Resource<DynamicType = ()>>(meta: &ObjectMeta) -> Self {
        ObjectKey {
            kind: K::kind(&()).into_owned(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

/// Why the datastore is not there yet, when that is up to the admin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatastoreProblem {
    pub reason: &'static str,
    pub message: String,
}

/// What the host should hold for one VirtualCluster.
#[derive(Clone, Debug)]
pub struct HostState {
    /// Applied in this order, each after what it refers to.
    pub objects: Vec<HostObject>,
    /// Objects the supervisor owns that are made once, not applied (the
    /// CAs and keys, the Secrets' encryption key), or kept while they
    /// cannot be rebuilt (the kubeconfig Secret while the endpoint is
    /// unknown): never deleted as unwanted.
    pub kept: Vec<ObjectKey>,
    pub datastore_problem: Option<DatastoreProblem>,
}

/// The host state of `vc`. Fails only when a kubeconfig cannot be rendered.
pub fn host_state(
    vc: &VirtualCluster,
    settings: &Settings,
    observed: &Observed<'_>,
) -> Result<HostState, vnest_pki::Error> {
    let cp = host_namespace_of(vc, HostNamespaceRole::ControlPlane);
    let workloads = host_namespace_of(vc, HostNamespaceRole::Workloads);
    let secret_key = |name: &str, namespace: &str| ObjectKey {
        kind: "Secret".to_owned(),
        namespace: Some(namespace.to_owned()),
        name: name.to_owned(),
    };
    let mut kept = vec![
        secret_key(PKI_SECRET, &cp),
        secret_key(apiserver::ENCRYPTION_SECRET, &cp),
        ObjectKey {
            kind: "Service".to_owned(),
            namespace: Some(cp.clone()),
            name: super::addresses::apiserver::SERVICE.to_owned(),
        },
    ];
    let mut objects = vec![
        // The workload guards: quota, default limits, no host token, and
        // the syncer's rights.
        HostObject::ResourceQuota(quota::resource_quota(vc)),
        HostObject::LimitRange(quota::limit_range(vc)),
        HostObject::ServiceAccount(ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".to_owned()),
                namespace: Some(workloads),
                ..ObjectMeta::default()
            },
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        }),
        HostObject::ServiceAccount(syncer_rbac::service_account(vc)),
        HostObject::RoleBinding(syncer_rbac::role_binding(vc)),
        HostObject::ClusterRoleBinding(syncer_rbac::node_reader_binding(vc)),
        HostObject::FlowSchema(flow_control::flow_schema(vc)),
    ];
    objects.extend(
        network_policy::network_policies(vc, settings, observed.forbidden, observed.pool)
            .into_iter()
            .map(HostObject::NetworkPolicy),
    );

    let mut datastore_problem = None;
    if let Some(etcd) = datastore::owned_etcd(vc) {
        objects.push(HostObject::Service(datastore::headless_service(vc)));
        objects.push(HostObject::StatefulSet(datastore::stateful_set(
            vc,
            &etcd,
            settings,
            observed.pki_data,
        )));
    } else if let Some(external) = &vc.spec.datastore.external {
        match observed.external_client_secret {
            None => {
                datastore_problem = Some(DatastoreProblem {
                    reason: "ClientSecretMissing",
                    message: format!(
                        "Secret {}/{} with the etcd client certificate does not exist",
                        vnest_api::host_names::identity(vc).0,
                        external.client_cert_secret_name
                    ),
                });
            }
            Some(source) => match datastore::external_client_secret(vc, source) {
                Ok(copy) => objects.push(HostObject::Secret(copy)),
                Err(message) => {
                    datastore_problem = Some(DatastoreProblem {
                        reason: "ClientSecretIncomplete",
                        message,
                    });
                }
            },
        }
        if datastore_problem.is_some() {
            // The copy made from an earlier, complete Secret stays.
            kept.push(secret_key(datastore::EXTERNAL_CLIENT_SECRET, &cp));
        }
    }

    objects.push(HostObject::Secret(apiserver::admission_secret(vc)));
    let versions = &observed.upgrade.versions;
    objects.push(HostObject::Deployment(apiserver::deployment(
        vc,
        settings,
        observed.pki_data,
        &versions.apiserver,
    )));
    match observed.endpoint {
        Ok(endpoint) => objects.push(HostObject::Secret(kubeconfig::admin_secret(
            vc,
            observed.pki,
            endpoint,
        )?)),
        Err(_) => {
            let (namespace, _) = vnest_api::host_names::identity(vc);
            kept.push(secret_key(&kubeconfig::secret_name(vc), namespace));
        }
    }
    objects.push(HostObject::Secret(controller_manager::kubeconfig_secret(
        vc,
        observed.pki,
    )?));
    objects.push(HostObject::Secret(scheduler::kubeconfig_secret(
        vc,
        observed.pki,
    )?));
    if kube_component::started(vc) {
        objects.push(HostObject::Deployment(controller_manager::deployment(
            vc,
            settings,
            observed.pki_data,
            &versions.controllers,
        )));
        objects.push(HostObject::Deployment(scheduler::deployment(
            vc,
            settings,
            observed.pki_data,
            &versions.controllers,
        )));
    }

    objects.push(HostObject::Secret(syncer::kubeconfig_secret(
        vc,
        observed.pki,
    )?));
    objects.push(HostObject::Service(syncer::kubelet_proxy_service(vc)));
    let hash = pods::pki_hash(observed.pki_data, syncer::RESTART_ON);
    let address = HostPort {
        host: observed.apiserver_ip.to_owned(),
        port: apiserver::SERVICE_PORT,
    };
    objects.push(HostObject::Deployment(syncer::deployment(
        vc,
        settings,
        address,
        observed.forbidden,
        observed.ingress_hosts,
        hash,
    )));
    // Snapshots on a schedule, of the tenant's own etcd. Their volume is
    // kept when backups are switched off: it holds the snapshots.
    kept.push(ObjectKey {
        kind: "PersistentVolumeClaim".to_owned(),
        namespace: Some(cp.clone()),
        name: vnest_api::host_names::etcd_backup::CLAIM.to_owned(),
    });
    if datastore::owned_etcd(vc).is_some() {
        let plan = backup::plan(vc);
        if vc.spec.backup.is_some() || observed.upgrade.snapshot_job.is_some() {
            objects.push(HostObject::PersistentVolumeClaim(backup::claim(vc, &plan)));
        }
        if vc.spec.backup.is_some() {
            objects.push(HostObject::CronJob(Box::new(backup::cron_job(
                vc, &plan, settings,
            ))));
        }
        // An upgrade snapshots etcd first, into the same volume. The Job of
        // the last upgrade stays (its log names the snapshot, and `vnest
        // backups` reads the volume with its pod); an older one goes.
        kept.push(ObjectKey {
            kind: "Job".to_owned(),
            namespace: Some(cp.clone()),
            name: super::upgrade::snapshot_job_name(pods::kubernetes_version(vc)),
        });
        if let Some(name) = &observed.upgrade.snapshot_job {
            objects.push(HostObject::Job(Box::new(backup::one_snapshot(
                vc, &plan, settings, name,
            ))));
        }
    }
    Ok(HostState {
        objects,
        kept,
        datastore_problem,
    })
}

/// The owned objects (`existing`, listed by the owner labels in the host
/// namespaces) that `state` neither applies nor keeps, and that are not
/// already being deleted.
pub fn unwanted(existing: &[(ObjectKey, bool)], state: &HostState) -> Vec<ObjectKey> {
    let wanted: BTreeSet<&ObjectKey> = state.kept.iter().collect();
    let applied: Vec<ObjectKey> = state.objects.iter().map(HostObject::key).collect();
    existing
        .iter()
        .filter(|(key, deleting)| !deleting && !wanted.contains(key) && !applied.contains(key))
        .map(|(key, _)| key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::desired::certificates::{self, CertificatePlan};
    use crate::prune::PRUNED;
    use vnest_api::ExternalEtcd;

    /// A cluster whose status says its components run `runs`.
    fn running(runs: vnest_api::ComponentVersions) -> VirtualCluster {
        let mut vc = new_cluster();
        vc.status = Some(vnest_api::VirtualClusterStatus {
            component_versions: Some(runs),
            ..Default::default()
        });
        vc
    }

    /// A cluster whose apiserver has run: all of its control plane is
    /// wanted.
    fn vc() -> VirtualCluster {
        running(vnest_api::ComponentVersions {
            kube_apiserver: Some("v1.37.2".to_owned()),
            ..Default::default()
        })
    }

    use crate::desired::test_cluster as new_cluster;

    fn pki() -> &'static ControlPlanePki {
        static PKI: std::sync::OnceLock<ControlPlanePki> = std::sync::OnceLock::new();
        PKI.get_or_init(|| {
            let now = time::OffsetDateTime::now_utc();
            match certificates::plan(&vc(), Some("10.96.0.20"), None, now).unwrap() {
                CertificatePlan::Create(pki) => pki,
                _ => unreachable!("no stored Secret: a new set"),
            }
        })
    }

    fn endpoint() -> Result<Endpoint, String> {
        Ok(Endpoint {
            url: "https://192.0.2.1:31443".into(),
            tls_server_name: None,
        })
    }

    fn state_with(
        vc: &VirtualCluster,
        endpoint: &Result<Endpoint, String>,
        external: Option<&Secret>,
    ) -> HostState {
        let pki_data = BTreeMap::new();
        host_state(
            vc,
            &Settings::default(),
            &Observed {
                pki: pki(),
                pki_data: &pki_data,
                apiserver_ip: "10.96.0.20",
                endpoint,
                forbidden: &HostAddresses::default(),
                pool: &[],
                ingress_hosts: &[],
                external_client_secret: external,
                upgrade: &super::super::upgrade::plan(vc, None),
            },
        )
        .unwrap()
    }

    fn state(vc: &VirtualCluster) -> HostState {
        state_with(vc, &endpoint(), None)
    }

    fn keys(state: &HostState, kind: &str) -> Vec<String> {
        state
            .objects
            .iter()
            .map(HostObject::key)
            .filter(|k| k.kind == kind)
            .map(|k| k.name)
            .collect()
    }

    fn existing(state: &HostState) -> Vec<(ObjectKey, bool)> {
        state
            .objects
            .iter()
            .map(|o| (o.key(), false))
            .chain(state.kept.iter().map(|k| (k.clone(), false)))
            .collect()
    }

    fn external(vc: &mut VirtualCluster) {
        vc.spec.datastore.etcd = None;
        vc.spec.datastore.external = Some(ExternalEtcd {
            endpoints: vec!["https://etcd.example:2379".into()],
            client_cert_secret_name: "etcd-cert".into(),
        });
    }

    #[test]
    fn the_controllers_start_once_the_apiserver_has_run_and_stay() {
        let deployments = |vc: &VirtualCluster| keys(&state(vc), "Deployment");
        assert_eq!(
            deployments(&new_cluster()),
            [apiserver::COMPONENT, syncer::COMPONENT],
            "a new cluster starts its apiserver first"
        );
        let after_outage = running(vnest_api::ComponentVersions {
            kube_controller_manager: Some("v1.37.2".to_owned()),
            ..Default::default()
        });
        for vc in [vc(), after_outage] {
            assert!(
                deployments(&vc).contains(&controller_manager::COMPONENT.to_owned()),
                "{:?}",
                vc.status
            );
            assert!(deployments(&vc).contains(&scheduler::COMPONENT.to_owned()));
        }
    }

    #[test]
    fn a_default_cluster_wants_its_whole_control_plane() {
        let state = state(&vc());
        assert_eq!(
            keys(&state, "Deployment"),
            [
                apiserver::COMPONENT,
                controller_manager::COMPONENT,
                scheduler::COMPONENT,
                syncer::COMPONENT
            ]
        );
        assert_eq!(keys(&state, "StatefulSet"), ["etcd"]);
        assert!(keys(&state, "Service").contains(&"etcd".to_owned()));
        assert!(!keys(&state, "NetworkPolicy").is_empty());
        assert!(keys(&state, "Secret").contains(&kubeconfig::secret_name(&vc())));
        assert_eq!(state.datastore_problem, None);
        // Each object is applied once, and before what needs it: the
        // Secrets a Deployment mounts come first.
        let all: Vec<ObjectKey> = state.objects.iter().map(HostObject::key).collect();
        let unique: BTreeSet<&ObjectKey> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
        let at = |kind: &str, name: &str| {
            all.iter()
                .position(|k| k.kind == kind && k.name == name)
                .unwrap()
        };
        assert!(at("Secret", apiserver::ADMISSION_SECRET) < at("Deployment", apiserver::COMPONENT));
        assert!(at("Secret", syncer::KUBECONFIG_SECRET) < at("Deployment", syncer::COMPONENT));
    }

    /// An upgrade waiting for its snapshot: the Job and the backups'
    /// volume are wanted (without `spec.backup`, and no CronJob), and the
    /// apiserver keeps the version it runs.
    #[test]
    fn an_upgrade_snapshots_into_the_backups_volume_before_the_apiserver_moves() {
        let mut upgrading = vc();
        upgrading.spec.kubernetes_version = Some("v1.37.2".into());
        upgrading.status = Some(vnest_api::VirtualClusterStatus {
            version: Some("v1.36.3".into()),
            ..vnest_api::VirtualClusterStatus::default()
        });
        let state = state(&upgrading);
        assert_eq!(keys(&state, "Job"), ["etcd-before-upgrade-to-v1-37-2"]);
        assert_eq!(keys(&state, "PersistentVolumeClaim"), ["etcd-backups"]);
        assert!(keys(&state, "CronJob").is_empty());
        let image = state.objects.iter().find_map(|o| match o {
            HostObject::Deployment(d)
                if d.metadata.name.as_deref() == Some(apiserver::COMPONENT) =>
            {
                d.spec.template.spec.as_ref()?.containers[0].image.clone()
            }
            _ => None,
        });
        assert_eq!(
            image.as_deref(),
            Some("registry.k8s.io/kube-apiserver:v1.36.3")
        );
        // Nothing to upgrade: neither the Job nor the volume.
        let settled = state_with(&vc(), &endpoint(), None);
        assert!(keys(&settled, "Job").is_empty());
        assert!(keys(&settled, "PersistentVolumeClaim").is_empty());
    }

    /// The template of `state`'s Deployment `name`: its annotations.
    fn template_annotations(state: &HostState, name: &str) -> BTreeMap<String, String> {
        state
            .objects
            .iter()
            .find_map(|o| match o {
                HostObject::Deployment(d) if d.metadata.name.as_deref() == Some(name) => {
                    d.spec.template.metadata.as_ref()?.annotations.clone()
                }
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn renewed_leaves_roll_the_apiserver_but_not_the_syncer() {
        let state_of = |pki: &ControlPlanePki| {
            let pki_data = pods::pki_data(pki);
            host_state(
                &vc(),
                &Settings::default(),
                &Observed {
                    pki,
                    pki_data: &pki_data,
                    apiserver_ip: "10.96.0.20",
                    endpoint: &endpoint(),
                    forbidden: &HostAddresses::default(),
                    pool: &[],
                    ingress_hosts: &[],
                    external_client_secret: None,
                    upgrade: &super::super::upgrade::plan(&vc(), None),
                },
            )
            .unwrap()
        };
        let files: BTreeMap<&str, String> = pki()
            .files()
            .into_iter()
            .map(|f| (f.path, f.contents.to_owned()))
            .collect();
        let renewed = ControlPlanePki::from_files(|path| files.get(path).cloned())
            .unwrap()
            .renew_leaves(&certificates::pki_spec(&vc(), Some("10.96.0.20")))
            .unwrap();
        let (before, after) = (state_of(pki()), state_of(&renewed));
        // The syncer takes renewed leaves while it runs
        // (`vnest_syncer::certificate_reload`): no restart, so the Service
        // webhook it serves never stops.
        assert_eq!(
            template_annotations(&before, syncer::COMPONENT),
            template_annotations(&after, syncer::COMPONENT)
        );
        assert_ne!(
            template_annotations(&before, apiserver::COMPONENT),
            template_annotations(&after, apiserver::COMPONENT)
        );
    }

    #[test]
    fn nothing_is_unwanted_while_the_spec_stays() {
        let state = state(&vc());
        assert!(unwanted(&existing(&state), &state).is_empty());
    }

    #[test]
    fn switching_network_policy_off_leaves_the_workloads_fence_unwanted() {
        let before = state(&vc());
        let mut off = vc();
        off.spec.isolation.network_policy = false;
        let after = state(&off);
        let gone = unwanted(&existing(&before), &after);
        let workloads = host_namespace_of(&off, HostNamespaceRole::Workloads);
        let mut names: Vec<&str> = gone.iter().map(|k| k.name.as_str()).collect();
        names.sort_unstable();
        let mut fence = vnest_api::pod_network::WORKLOADS_POLICIES.to_vec();
        fence.sort_unstable();
        assert_eq!(names, fence);
        assert!(gone.iter().all(|k| {
            k.kind == "NetworkPolicy" && k.namespace.as_deref() == Some(workloads.as_str())
        }));
        // The control plane's own fence stays.
        assert!(!keys(&after, "NetworkPolicy").is_empty());
    }

    #[test]
    fn moving_to_an_external_etcd_leaves_the_owned_one_unwanted_and_keeps_a_copied_secret() {
        let before = state(&vc());
        let mut moved = vc();
        external(&mut moved);
        let after = state_with(&moved, &endpoint(), None);
        assert_eq!(
            after.datastore_problem.as_ref().map(|p| p.reason),
            Some("ClientSecretMissing")
        );
        let gone = unwanted(&existing(&before), &after);
        let names: BTreeSet<(String, String)> =
            gone.into_iter().map(|k| (k.kind, k.name)).collect();
        assert!(names.contains(&("StatefulSet".into(), "etcd".into())));
        assert!(names.contains(&("Service".into(), "etcd".into())));
        // The copy of the admin's Secret, made while it was complete,
        // stays while the Secret is missing.
        let copy = ObjectKey {
            kind: "Secret".into(),
            namespace: Some(host_namespace_of(&moved, HostNamespaceRole::ControlPlane)),
            name: datastore::EXTERNAL_CLIENT_SECRET.into(),
        };
        assert!(unwanted(&[(copy, false)], &after).is_empty());
    }

    #[test]
    fn a_complete_external_secret_is_copied() {
        let mut moved = vc();
        external(&mut moved);
        let source: Secret = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "etcd-cert", "namespace": "tenants" },
            "data": { "ca.crt": "Y2E=", "tls.crt": "Y3J0", "tls.key": "a2V5" },
        }))
        .unwrap();
        let state = state_with(&moved, &endpoint(), Some(&source));
        assert_eq!(state.datastore_problem, None);
        assert!(keys(&state, "Secret").contains(&datastore::EXTERNAL_CLIENT_SECRET.to_owned()));
        assert!(keys(&state, "StatefulSet").is_empty());
    }

    #[test]
    fn made_once_secrets_and_a_kubeconfig_waiting_for_its_endpoint_are_never_unwanted() {
        let waiting = Err("no node address yet".to_owned());
        let state = state_with(&vc(), &waiting, None);
        let cp = host_namespace_of(&vc(), HostNamespaceRole::ControlPlane);
        let secret = |namespace: &str, name: &str| {
            (
                ObjectKey {
                    kind: "Secret".into(),
                    namespace: Some(namespace.into()),
                    name: name.into(),
                },
                false,
            )
        };
        let made_once = [
            secret(&cp, PKI_SECRET),
            secret(&cp, apiserver::ENCRYPTION_SECRET),
            secret("tenants", &kubeconfig::secret_name(&vc())),
        ];
        assert!(!keys(&state, "Secret").contains(&kubeconfig::secret_name(&vc())));
        assert!(unwanted(&made_once, &state).is_empty());
        // What is already being deleted is left to finish.
        let going = [(secret(&cp, "old").0, true)];
        assert!(unwanted(&going, &state).is_empty());
        assert_eq!(unwanted(&[secret(&cp, "old")], &state).len(), 1);
    }

    /// The kinds the reconcile does not prune are wanted for every spec.
    #[test]
    fn every_kind_left_out_of_pruning_is_always_wanted() {
        let pruned: Vec<&str> = PRUNED.iter().map(|(kind, _)| *kind).collect();
        let mut off = vc();
        off.spec.isolation.network_policy = false;
        let mut moved = vc();
        external(&mut moved);
        let mut paused = vc();
        paused.spec.paused = true;
        let waiting = Err("waiting".to_owned());
        let mut backed_up = vc();
        backed_up.spec.backup = Some(vnest_api::Backup {
            schedule: "@daily".to_owned(),
            keep: 3,
            storage: k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".to_owned()),
            storage_class_name: None,
        });
        let full = state(&backed_up);
        assert!(!keys(&full, "CronJob").is_empty());
        for variant in [
            state(&vc()),
            state(&off),
            state_with(&moved, &endpoint(), None),
            state(&paused),
            state_with(&vc(), &waiting, None),
        ] {
            for key in full.objects.iter().map(HostObject::key) {
                if pruned.contains(&key.kind.as_str()) {
                    continue;
                }
                let wanted = variant.objects.iter().any(|o| o.key() == key);
                let kept = variant.kept.contains(&key);
                assert!(
                    wanted || kept,
                    "{key:?} dropped out of a variant but is never pruned"
                );
            }
        }
    }
}
