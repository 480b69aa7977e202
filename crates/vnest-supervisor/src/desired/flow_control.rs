//! Fair share of the host's apiserver for syncers (API Priority and
//! Fairness). Every tenant's syncer is classified by a FlowSchema of its own
//! into the priority level `vnest-syncers` (manifests/supervisor/
//! flow-control.yaml), apart from the host's own controllers and workloads:
//! a burst of syncers waits in that level's queues and cannot take the
//! seats the host's other clients need. Within the level each syncer is a
//! flow of its own (distinguished by user), so fair queuing shares the
//! level's seats between tenants and one tenant's burst cannot starve
//! another's.
//!
//! One FlowSchema per tenant because a FlowSchema's ServiceAccount subject
//! names one namespace (no wildcard), and every syncer lives in its own
//! tenant's control-plane namespace. FlowSchemas are cluster-scoped, so the
//! supervisor deletes the tenant's itself when the tenant goes.

use k8s_openapi::api::flowcontrol::v1::{
    FlowDistinguisherMethod, FlowSchema, FlowSchemaSpec, NonResourcePolicyRule,
    PolicyRulesWithSubjects, PriorityLevelConfigurationReference, ResourcePolicyRule,
    ServiceAccountSubject, Subject,
};
use kube::api::ObjectMeta;
use vnest_api::VirtualCluster;
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};

use super::pods;
use super::syncer_rbac::SYNCER;

/// The priority level every syncer's requests go to (installed with vnest).
pub const PRIORITY_LEVEL: &str = "vnest-syncers";
/// Below the host's own system flows (leader election, nodes,
/// kube-controller-manager and kube-system ServiceAccounts, all 900 or
/// lower), above the built-in `service-accounts` schema (9000) that would
/// otherwise take the syncer's ServiceAccount.
pub const MATCHING_PRECEDENCE: i32 = 1500;

/// The name of the tenant's FlowSchema (like its node-reading binding's).
pub fn flow_schema_name(vc: &VirtualCluster) -> String {
    format!(
        "{SYNCER}-{}",
        host_namespace_of(vc, HostNamespaceRole::ControlPlane)
    )
}

/// Every request of the tenant's syncer, to [`PRIORITY_LEVEL`].
pub fn flow_schema(vc: &VirtualCluster) -> FlowSchema {
    let all = || vec!["*".to_owned()];
    FlowSchema {
        metadata: ObjectMeta {
            name: Some(flow_schema_name(vc)),
            labels: Some(pods::component_labels(vc, "syncer")),
            ..ObjectMeta::default()
        },
        spec: FlowSchemaSpec {
            distinguisher_method: Some(FlowDistinguisherMethod {
                type_: "ByUser".to_owned(),
            }),
            matching_precedence: Some(MATCHING_PRECEDENCE),
            priority_level_configuration: PriorityLevelConfigurationReference {
                name: PRIORITY_LEVEL.to_owned(),
            },
            rules: Some(vec![PolicyRulesWithSubjects {
                subjects: vec![Subject {
                    kind: "ServiceAccount".to_owned(),
                    service_account: Some(ServiceAccountSubject {
                        name: SYNCER.to_owned(),
                        namespace: host_namespace_of(vc, HostNamespaceRole::ControlPlane),
                    }),
                    ..Subject::default()
                }],
                resource_rules: Some(vec![ResourcePolicyRule {
                    api_groups: all(),
                    resources: all(),
                    verbs: all(),
                    cluster_scope: Some(true),
                    namespaces: Some(all()),
                }]),
                non_resource_rules: Some(vec![NonResourcePolicyRule {
                    non_resource_urls: all(),
                    verbs: all(),
                }]),
            }]),
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::desired::test_cluster as vc;

    #[test]
    fn the_tenants_syncer_and_no_one_else_goes_to_the_syncers_level() {
        let vc = vc();
        let schema = flow_schema(&vc);
        let spec = schema.spec;
        assert_eq!(spec.priority_level_configuration.name, PRIORITY_LEVEL);
        let rules = spec.rules.unwrap();
        assert_eq!(rules.len(), 1);
        let subjects = &rules[0].subjects;
        assert_eq!(subjects.len(), 1);
        let account = subjects[0].service_account.as_ref().unwrap();
        assert_eq!(account.name, SYNCER);
        assert_eq!(
            account.namespace,
            host_namespace_of(&vc, HostNamespaceRole::ControlPlane)
        );
        assert!(subjects[0].user.is_none() && subjects[0].group.is_none());
        // Each tenant a flow of its own.
        assert_eq!(spec.distinguisher_method.unwrap().type_, "ByUser");
    }

    #[test]
    fn the_schema_wins_over_service_accounts_and_not_over_the_hosts_system_flows() {
        let precedence = flow_schema(&vc()).spec.matching_precedence;
        // kube-system-service-accounts (900) and service-accounts (9000).
        assert!(precedence > Some(900) && precedence < Some(9000));
    }

    #[test]
    fn the_level_is_the_one_vnest_installs() {
        let manifest = include_str!("../../../../manifests/supervisor/flow-control.yaml");
        let level: serde_json::Value = serde_yaml_ng::from_str(manifest).unwrap();
        assert_eq!(level["kind"], "PriorityLevelConfiguration");
        assert_eq!(level["metadata"]["name"], PRIORITY_LEVEL);
        assert_eq!(level["spec"]["type"], "Limited");
    }
}
