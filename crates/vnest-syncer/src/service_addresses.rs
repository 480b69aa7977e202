//! Tenant Services get their ClusterIP and node ports from the host. A
//! tenant's pods run on the host, where only the host's kube-proxy routes
//! Service addresses and opens node ports, so what a tenant Service has
//! must be what its host copy has. The two apiservers allocate
//! independently, so the syncer makes the host allocate first: a mutating
//! admission webhook in the tenant apiserver (served by the syncer,
//! registered by it at start) creates the host copy of every Service being
//! created, or updated to take an address (from ExternalName) or node
//! ports (to NodePort, or a port added), and gives the tenant Service the
//! host's address and node ports. What the tenant asks for explicitly is
//! asked of the host; when the host has given it away or will not give it
//! (its quota grants the tenant no node ports), the request is refused
//! with the reason, never accepted with an address or port that would not
//! route.
//!
//! The webhook sits behind the kubelet proxy's TLS listener, which accepts
//! only the tenant apiserver's client certificate (the supervisor points
//! the apiserver's webhook kubeconfig at it), so nobody else can make the
//! syncer create host objects. Dry runs and objects the tenant already has
//! cause nothing on the host, and a create of a name the tenant has keeps
//! the apiserver's answer "already exists".

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::runtime::reflector::ObjectRef;
use serde::Deserialize;
use serde_json::{Value, json};
use vnest_api::host_copies::host_name;
use vnest_kube::apply::{ApplyError, apply_cluster, apply_namespaced};

use crate::context::{FIELD_MANAGER, Syncer};
use crate::error::refused_by_host;
use crate::host_copies::desired_hash;
use crate::{host_quota, translate};

/// The path the webhook is served at, on the kubelet proxy's listener.
pub const WEBHOOK_PATH: &str = "/admission/services";
/// The tenant's MutatingWebhookConfiguration.
pub const WEBHOOK_CONFIGURATION: &str = "vnest-syncer-service-addresses";

/// What the webhook does with a Service being admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do on the host (a dry run, a headless or ExternalName
    /// Service, one the syncer does not mirror, a name the apiserver
    /// generates later, an update that allocates nothing).
    Allow,
    /// Create the host copy and take its address and node ports.
    Allocate,
    /// Update the host copy and take the address and node ports it got.
    Reallocate,
}

/// The part of an `AdmissionReview` (admission.k8s.io/v1) the webhook reads.
#[derive(Debug, Deserialize)]
pub struct Review {
    pub request: Option<Request>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub uid: String,
    pub operation: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub dry_run: Option<bool>,
    #[serde(default)]
    pub object: Option<Service>,
    #[serde(default)]
    pub old_object: Option<Service>,
}

/// Whether admitting `service` (updating `old`, if it is an update) needs
/// the host to allocate first.
pub fn plan(service: &Service, old: Option<&Service>, operation: &str, dry_run: bool) -> Plan {
    let spec = service.spec.as_ref();
    let headless = spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    let unnamed = service
        .metadata
        .name
        .as_deref()
        .unwrap_or_default()
        .is_empty();
    if dry_run || headless || unnamed || !translate::is_mirrored_service(service) {
        return Plan::Allow;
    }
    match (operation, old) {
        ("CREATE", _) => Plan::Allocate,
        ("UPDATE", Some(old)) => {
            // From ExternalName (not mirrored): the apiserver would give it
            // an address of its own.
            let gets_address = !translate::is_mirrored_service(old);
            let gets_node_ports = translate::is_node_port(service)
                && (!translate::is_node_port(old) || node_ports_of(service).any(|p| p == 0));
            if gets_address || gets_node_ports {
                Plan::Reallocate
            } else {
                Plan::Allow
            }
        }
        _ => Plan::Allow,
    }
}

/// Each port's node port, 0 where it has none.
fn node_ports_of(service: &Service) -> impl Iterator<Item = i32> + '_ {
    service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| p.node_port.unwrap_or(0))
}

/// The address the tenant asked for, if it asked for one.
pub fn requested_address(service: &Service) -> Option<&str> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
}

/// The JSON patch giving the tenant Service the host copy's address and,
/// when it is a NodePort Service, its node ports (the copy has the
/// tenant's ports, in order).
pub fn address_patch(host: &Service) -> Option<Value> {
    let spec = host.spec.as_ref()?;
    let ip = spec.cluster_ip.clone().filter(|ip| !ip.is_empty())?;
    let ips = spec.cluster_ips.clone().unwrap_or_else(|| vec![ip.clone()]);
    let mut patch = vec![
        json!({ "op": "add", "path": "/spec/clusterIP", "value": ip }),
        json!({ "op": "add", "path": "/spec/clusterIPs", "value": ips }),
    ];
    if translate::is_node_port(host) {
        for (index, port) in node_ports_of(host).enumerate() {
            if port != 0 {
                patch.push(json!({ "op": "add", "path": format!("/spec/ports/{index}/nodePort"), "value": port }));
            }
        }
    }
    Some(Value::Array(patch))
}

/// An `AdmissionReview` answer: allowed (with an optional JSON patch) or
/// refused with `message`, which the tenant's client shows.
pub fn answer(uid: &str, outcome: Result<Option<Value>, String>) -> Value {
    let response = match outcome {
        Ok(None) => json!({ "uid": uid, "allowed": true }),
        Ok(Some(patch)) => json!({
            "uid": uid,
            "allowed": true,
            "patchType": "JSONPatch",
            "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string()),
        }),
        Err(message) => json!({
            "uid": uid,
            "allowed": false,
            "status": { "code": 422, "reason": "Invalid", "message": message },
        }),
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    })
}

/// Answers one review from the tenant apiserver. `Err` is a body that is
/// not an `AdmissionReview` at all.
pub async fn review(syncer: &Syncer, body: &[u8]) -> Result<Value, String> {
    let review: Review = serde_json::from_slice(body)
        .map_err(|e| format!("not an AdmissionReview (admission.k8s.io/v1): {e}"))?;
    let request = review.request.ok_or("the AdmissionReview has no request")?;
    let Some(mut service) = request.object else {
        return Ok(answer(&request.uid, Ok(None)));
    };
    if service
        .metadata
        .namespace
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        service.metadata.namespace = request.namespace.clone();
    }
    let dry_run = request.dry_run.unwrap_or(false);
    let outcome = match plan(
        &service,
        request.old_object.as_ref(),
        &request.operation,
        dry_run,
    ) {
        Plan::Allow => return Ok(answer(&request.uid, Ok(None))),
        Plan::Allocate => allocate(syncer, &service).await,
        Plan::Reallocate => take_from_host(syncer, &service).await,
    };
    syncer
        .metrics
        .service_address(if outcome.is_ok() { "given" } else { "refused" });
    Ok(answer(&request.uid, outcome))
}

/// Creates (or finds) the host copy of `service` and returns the patch that
/// gives the tenant Service its address.
async fn allocate(syncer: &Syncer, service: &Service) -> Result<Option<Value>, String> {
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    if tenant_has(syncer, &namespace, &name).await {
        return Ok(None);
    }
    take_from_host(syncer, service).await
}

/// Whether the tenant already has Service `namespace/name`: then its create
/// fails in the apiserver after this webhook (409), and the host copy
/// belongs to the existing Service. The address must then be left alone:
/// given the existing Service's address, the apiserver would refuse it as
/// "already allocated" (422) before it finds the name taken, which a client
/// retrying a create whose answer it lost does not take for "it exists".
///
/// A create of a new name, which neither the watch of the tenant's
/// Services nor the host's copies know, asks nothing. Otherwise the tenant
/// apiserver is asked, as the watch may lag (it reconnects while an
/// apiserver stops; a Service just deleted may still be in it); if it
/// cannot answer, the watch decides.
async fn tenant_has(syncer: &Syncer, namespace: &str, name: &str) -> bool {
    let key = ObjectRef::new(name).within(namespace);
    let watched = syncer.network.services.get(&key).is_some();
    let copies = syncer.host_copies.of::<Service>();
    copies.listed().await;
    if !watched && !copies.has(&host_name(namespace, name)) {
        return false;
    }
    let services: Api<Service> = Api::namespaced(syncer.tenant.clone(), namespace);
    match services.get_metadata_opt(name).await {
        Ok(found) => found.is_some(),
        Err(error) => {
            tracing::warn!(%namespace, %name, %error, watched, "could not ask the tenant apiserver whether it has this Service; its watch decides");
            watched
        }
    }
}

/// Applies the host copy of `service` and returns the patch that gives
/// the tenant Service what the host allocated.
async fn take_from_host(syncer: &Syncer, service: &Service) -> Result<Option<Value>, String> {
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let desired = translate::service(service, &syncer.placement());
    let host_name = desired.metadata.name.clone().unwrap_or_default();
    let mut tries = 1;
    let applied = loop {
        let applied = host_quota::within::<Service, _, _>(syncer, &host_name, async {
            Ok(apply_namespaced(&syncer.host, FIELD_MANAGER, &desired).await?)
        })
        .await;
        if tries == QUOTA_CONFLICT_TRIES || !lost_quota_race(&applied) {
            break applied;
        }
        tries += 1;
    };
    match applied {
        Ok(Ok(host)) => {
            // The syncer's own write: its watch event starts no sync, which
            // would read the tenant Service from before this change (the
            // tenant apiserver stores it only after this answer) and undo
            // it, closing the node ports just given.
            syncer.host_copies.of::<Service>().wrote(
                &host_name,
                desired_hash(&desired),
                host.metadata.resource_version.as_deref(),
            );
            tracing::info!(%namespace, %name, ip = ?host.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()), node_ports = ?node_ports_of(&host).collect::<Vec<_>>(), "host address given to a tenant Service");
            Ok(address_patch(&host))
        }
        Ok(Err(over_quota)) => Err(format!("the host refused it: {over_quota}")),
        Err(crate::error::Error::Apply(ApplyError::Api {
            source: kube::Error::Api(status),
            ..
        })) => Err(refusal_message(service, &status)),
        Err(e) => Err(format!(
            "vnest's syncer could not reserve a host address for this Service: {e}; try again"
        )),
    }
}

/// How often the webhook applies a host copy whose create lost a race for
/// the host quota's usage (the tenant's create waits meanwhile).
const QUOTA_CONFLICT_TRIES: usize = 3;

/// Whether the host's quota admission refused the copy only because
/// another create updated the quota's usage at the same moment (409 on the
/// ResourceQuota, which a client is to retry), not because it is over.
fn lost_quota_race<T>(applied: &crate::error::Result<T>) -> bool {
    matches!(
        applied,
        Err(crate::error::Error::Apply(ApplyError::Api {
            source: kube::Error::Api(status),
            ..
        })) if status.code == 409 && status.message.contains("resourcequotas")
    )
}

/// What the tenant is told when the host refuses `service`'s copy.
fn refusal_message(service: &Service, status: &kube::core::Status) -> String {
    if status.code == 403 && status.message.contains("services.nodeports") {
        return format!(
            "the host refused it: {}; this cluster's admin grants node ports (spec.isolation.resourceQuota `services.nodeports` of its VirtualCluster)",
            status.message
        );
    }
    if status.code == 422 && translate::is_node_port(service) && status.message.contains("nodePort")
    {
        return format!(
            "the node ports asked for cannot be given to this Service: the host cluster, where they must be open, refused them ({}); leave spec.ports[].nodePort empty and vnest gives the Service free ones",
            status.message
        );
    }
    if status.code == 422 && requested_address(service).is_some() {
        return format!(
            "spec.clusterIP {} cannot be given to this Service: the host cluster, where it must answer, refused it ({}); leave spec.clusterIP empty and vnest gives the Service a free address",
            requested_address(service).unwrap_or_default(),
            status.message
        );
    }
    if refused_by_host(status) {
        return format!("the host refused it: {}", status.message);
    }
    format!(
        "vnest's syncer could not reserve a host address for this Service: {}; try again",
        status.message
    )
}

/// Which requests reach the webhook: every create, and updates to a
/// NodePort Service or from an ExternalName one ([`plan`] decides the
/// rest).
const MAY_ALLOCATE: &str = "request.operation == 'CREATE' || object.spec.type == 'NodePort' || oldObject.spec.type == 'ExternalName'";

/// The tenant's webhook configuration: every Service create goes through
/// the syncer at `url`, whose certificate chains to `ca_bundle` (PEM). A
/// create fails while the syncer is away rather than take an address that
/// does not route.
pub fn configuration(url: &str, ca_bundle: &[u8]) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(WEBHOOK_CONFIGURATION.to_owned()),
            labels: Some(
                [(
                    vnest_api::host_copies::MANAGED_BY.to_owned(),
                    vnest_api::host_copies::MANAGER.to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: "service-addresses.vnest.dev".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            client_config: WebhookClientConfig {
                url: Some(url.to_owned()),
                ca_bundle: Some(k8s_openapi::ByteString(ca_bundle.to_vec())),
                service: None,
            },
            failure_policy: Some("Fail".to_owned()),
            match_policy: Some("Equivalent".to_owned()),
            reinvocation_policy: Some("Never".to_owned()),
            side_effects: "NoneOnDryRun".to_owned(),
            timeout_seconds: Some(10),
            // Updates that may allocate only: the others never wait for
            // the syncer, nor fail while it is away.
            match_conditions: Some(vec![MatchCondition {
                name: "may-allocate".to_owned(),
                expression: MAY_ALLOCATE.to_owned(),
            }]),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec![String::new()]),
                api_versions: Some(vec!["v1".to_owned()]),
                operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
                resources: Some(vec!["services".to_owned()]),
                scope: Some("Namespaced".to_owned()),
            }]),
            ..MutatingWebhook::default()
        }]),
    }
}

/// Registers (or updates) the webhook in the tenant cluster.
pub async fn register(syncer: &Syncer, url: &str, ca_bundle: &[u8]) -> Result<(), ApplyError> {
    apply_cluster(
        &syncer.tenant,
        FIELD_MANAGER,
        &configuration(url, ca_bundle),
    )
    .await?;
    tracing::info!(%url, "tenant Services get their addresses from the host");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;

    /// Only a conflict on the quota's usage is tried again: a create over
    /// the quota (403) or any other conflict is the tenant's to hear.
    #[test]
    fn a_lost_race_for_the_quota_is_tried_again() {
        let refused = |code: u16, message: &str| -> crate::error::Result<()> {
            Err(crate::error::Error::Apply(ApplyError::Api {
                kind: "Service".into(),
                name: "x".into(),
                source: kube::Error::Api(Box::new(kube::core::Status {
                    code,
                    message: message.into(),
                    ..Default::default()
                })),
            }))
        };
        let race = "Operation cannot be fulfilled on resourcequotas \"vnest-tenant\": the object has been modified";
        assert!(lost_quota_race(&refused(409, race)));
        assert!(!lost_quota_race(&refused(
            403,
            "exceeded quota: vnest-tenant"
        )));
        assert!(!lost_quota_race(&refused(
            409,
            "services \"x\" already exists"
        )));
        assert!(!lost_quota_race(&Ok(())));
    }

    fn service(namespace: &str, name: &str, type_: &str, cluster_ip: Option<&str>) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some(namespace.to_owned()),
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some(type_.to_owned()),
                cluster_ip: cluster_ip.map(str::to_owned),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn only_creates_of_addressed_mirrored_services_need_the_host() {
        use Plan::*;
        let cases = [
            (
                "plain ClusterIP",
                service("default", "web", "ClusterIP", None),
                "CREATE",
                false,
                Allocate,
            ),
            (
                "NodePort",
                service("default", "web", "NodePort", None),
                "CREATE",
                false,
                Allocate,
            ),
            (
                "explicit address",
                service("default", "web", "ClusterIP", Some("10.96.5.5")),
                "CREATE",
                false,
                Allocate,
            ),
            (
                "dry run",
                service("default", "web", "ClusterIP", None),
                "CREATE",
                true,
                Allow,
            ),
            (
                "headless",
                service("default", "web", "ClusterIP", Some("None")),
                "CREATE",
                false,
                Allow,
            ),
            (
                "ExternalName",
                service("default", "web", "ExternalName", None),
                "CREATE",
                false,
                Allow,
            ),
            (
                "generated name",
                service("default", "", "ClusterIP", None),
                "CREATE",
                false,
                Allow,
            ),
            (
                "the tenant's kubernetes",
                service("default", "kubernetes", "ClusterIP", None),
                "CREATE",
                false,
                Allow,
            ),
        ];
        for (case, svc, operation, dry_run, want) in cases {
            assert_eq!(plan(&svc, None, operation, dry_run), want, "{case}");
        }
    }

    #[test]
    fn updates_that_would_allocate_ask_the_host() {
        use Plan::*;
        let with_ports = |type_: &str, node_ports: &[i32]| {
            let mut svc = service("default", "web", type_, Some("10.96.0.7"));
            svc.spec.as_mut().unwrap().ports = Some(
                node_ports
                    .iter()
                    .enumerate()
                    .map(|(i, n)| k8s_openapi::api::core::v1::ServicePort {
                        port: 80 + i as i32,
                        node_port: (*n != 0).then_some(*n),
                        ..Default::default()
                    })
                    .collect(),
            );
            svc
        };
        let external = service("default", "web", "ExternalName", None);
        let cases = [
            (
                "ClusterIP stays",
                with_ports("ClusterIP", &[0]),
                with_ports("ClusterIP", &[0]),
                Allow,
            ),
            (
                "to NodePort",
                with_ports("ClusterIP", &[0]),
                with_ports("NodePort", &[0]),
                Reallocate,
            ),
            (
                "a port added",
                with_ports("NodePort", &[30001]),
                with_ports("NodePort", &[30001, 0]),
                Reallocate,
            ),
            (
                "NodePort, its ports kept",
                with_ports("NodePort", &[30001]),
                with_ports("NodePort", &[30001]),
                Allow,
            ),
            (
                "NodePort to ClusterIP",
                with_ports("NodePort", &[30001]),
                with_ports("ClusterIP", &[0]),
                Allow,
            ),
            (
                "from ExternalName",
                external.clone(),
                service("default", "web", "ClusterIP", None),
                Reallocate,
            ),
            (
                "to ExternalName",
                with_ports("ClusterIP", &[0]),
                external,
                Allow,
            ),
        ];
        for (case, old, new, want) in cases {
            assert_eq!(plan(&new, Some(&old), "UPDATE", false), want, "{case}");
            assert_eq!(
                plan(&new, Some(&old), "UPDATE", true),
                Allow,
                "{case}, dry run"
            );
        }
    }

    #[test]
    fn the_patch_gives_the_hosts_addresses() {
        let mut host = service("wl", "web-default-x", "ClusterIP", Some("10.99.1.2"));
        assert_eq!(
            address_patch(&host).unwrap(),
            json!([
                { "op": "add", "path": "/spec/clusterIP", "value": "10.99.1.2" },
                { "op": "add", "path": "/spec/clusterIPs", "value": ["10.99.1.2"] },
            ])
        );
        let spec = host.spec.as_mut().unwrap();
        spec.type_ = Some("NodePort".to_owned());
        spec.ports = Some(vec![
            k8s_openapi::api::core::v1::ServicePort {
                port: 80,
                node_port: Some(31080),
                ..Default::default()
            },
            k8s_openapi::api::core::v1::ServicePort {
                port: 443,
                node_port: Some(31443),
                ..Default::default()
            },
        ]);
        let patch = address_patch(&host).unwrap();
        assert_eq!(
            patch[2],
            json!({ "op": "add", "path": "/spec/ports/0/nodePort", "value": 31080 })
        );
        assert_eq!(
            patch[3],
            json!({ "op": "add", "path": "/spec/ports/1/nodePort", "value": 31443 })
        );
        host.spec.as_mut().unwrap().cluster_ip = None;
        assert_eq!(address_patch(&host), None, "no address, no patch");
    }

    #[test]
    fn answers_are_admission_reviews() {
        let allowed = answer(
            "u1",
            Ok(Some(json!([{ "op": "add", "path": "/a", "value": 1 }]))),
        );
        assert_eq!(allowed["response"]["uid"], "u1");
        assert_eq!(allowed["response"]["allowed"], true);
        assert_eq!(allowed["response"]["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(allowed["response"]["patch"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&patch).unwrap()[0]["path"],
            "/a"
        );
        let refused = answer("u2", Err("taken".to_owned()));
        assert_eq!(refused["response"]["allowed"], false);
        assert_eq!(refused["response"]["status"]["message"], "taken");
        assert_eq!(refused["kind"], "AdmissionReview");
    }

    #[test]
    fn a_review_is_read_with_its_namespace_and_dry_run() {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "abc",
                "operation": "CREATE",
                "namespace": "shop",
                "dryRun": true,
                "object": { "apiVersion": "v1", "kind": "Service", "metadata": { "name": "web" }, "spec": { "type": "ClusterIP" } }
            }
        });
        let review: Review = serde_json::from_value(body).unwrap();
        let request = review.request.unwrap();
        assert_eq!(request.namespace.as_deref(), Some("shop"));
        assert_eq!(request.dry_run, Some(true));
        assert_eq!(
            request.object.unwrap().metadata.name.as_deref(),
            Some("web")
        );
    }

    #[test]
    fn the_configuration_fails_closed_and_spares_dry_runs() {
        let config = configuration(
            "https://kubelet-proxy.cp.svc:10250/admission/services",
            b"PEM",
        );
        let hook = &config.webhooks.unwrap()[0];
        assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
        assert_eq!(hook.side_effects, "NoneOnDryRun");
        let rule = &hook.rules.as_ref().unwrap()[0];
        assert_eq!(
            rule.operations.as_deref(),
            Some(&["CREATE".to_owned(), "UPDATE".to_owned()][..])
        );
        // Only updates that may allocate wait for the syncer.
        let condition = &hook.match_conditions.as_ref().unwrap()[0];
        assert!(condition.expression.contains("'NodePort'"));
        assert!(condition.expression.contains("'ExternalName'"));
        assert_eq!(
            rule.resources.as_deref(),
            Some(&["services".to_owned()][..])
        );
    }
}
