//! One reconcile of a VirtualCluster: apply everything the host should hold
//! for it (server-side apply, one field manager), read back how far each
//! stage got, and say so in the status. Idempotent: a second run with
//! nothing changed writes nothing. Deletion goes through a finalizer that
//! stops and removes everything of the tenant on the host first
//! ([`crate::teardown`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of, identity};
use vnest_api::{Phase, VirtualCluster, VirtualClusterStatus};

use crate::context::{Context, FIELD_MANAGER, FINALIZER};
use crate::desired::certificates::{self, CertificatePlan, PKI_SECRET};
use crate::desired::host_state::{self, HostObject, HostState, Observed};
use crate::desired::{
    apiserver, controller_manager, datastore, kube_component, kubeconfig, namespaces, pods,
    scheduler, syncer as desired_syncer, upgrade,
};
use crate::error::{Error, Result};
use crate::ingress_grants;
use crate::pool_nodes::{self, Pools};
use crate::recently_applied::hash_of;
use crate::status::{self, Stage};
use crate::{host_facts, pod_problems, prune, rollout};
use vnest_control_plane::cluster_dns::{ClusterDns, ClusterDnsSpec};
use vnest_kube::apply;

pub async fn reconcile(vc: Arc<VirtualCluster>, ctx: Arc<Context>) -> Result<Action> {
    let (namespace, _) = identity(&vc);
    let api: Api<VirtualCluster> = Api::namespaced(ctx.client.clone(), namespace);
    finalizer(&api, FINALIZER, vc, |event| async {
        match event {
            FinalizerEvent::Apply(vc) => apply(&vc, &ctx).await,
            FinalizerEvent::Cleanup(vc) => crate::teardown::teardown(&vc, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// A kind of object the supervisor writes into a host namespace.
trait NamespacedObject:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
{
}

impl<K> NamespacedObject for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned
{
}

/// Applies a namespaced `object` to the host under the supervisor's field
/// manager.
async fn apply_object<K: NamespacedObject>(ctx: &Context, object: &K) -> Result<K> {
    Ok(apply::apply_namespaced(&ctx.client, FIELD_MANAGER, object).await?)
}

/// Creates `object` unless it exists; an existing one is left as it is (a
/// claim's class is fixed and its size can only grow where the class
/// allows; a Job's template is fixed).
async fn make_once<K: NamespacedObject>(ctx: &Context, object: &K) -> Result<()> {
    let namespace = object.meta().namespace.as_deref().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    if api.get_metadata_opt(&object.name_any()).await?.is_some() {
        return Ok(());
    }
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api.create(&params, object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The nodes the control plane's pods run on, each once.
async fn control_plane_nodes(vc: &VirtualCluster, ctx: &Context) -> Result<Vec<String>> {
    let namespace = host_namespace_of(vc, HostNamespaceRole::ControlPlane);
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(ctx.client.clone(), &namespace);
    let mut nodes: Vec<String> = pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.spec?.node_name)
        .collect();
    nodes.sort();
    nodes.dedup();
    Ok(nodes)
}

/// Makes the apiserver's encryption key once. It is created, never applied:
/// a key replaced would leave every Secret sealed with it unreadable.
async fn ensure_encryption_key(vc: &VirtualCluster, ctx: &Context) -> Result<()> {
    let namespace = host_namespace_of(vc, HostNamespaceRole::ControlPlane);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    if secrets
        .get_opt(apiserver::ENCRYPTION_SECRET)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut key))
        .map_err(Error::EncryptionKey)?;
    let secret = apiserver::encryption_secret(vc, &key);
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(()),
        // Made by a reconcile that ran at the same time: keep that one.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What a VirtualCluster's spec asks that the supervisor will not do, or
/// that it has expired: decided before anything is read.
enum Invalid {
    Expired,
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// Phase 1, validate (no client): the TTL, the version change and the
/// extra apiserver flags.
/// Returns when the cluster expires, if it does.
fn validate(vc: &VirtualCluster, now: Timestamp) -> Result<Option<Timestamp>, Invalid> {
    let expires_at = status::expires_at(vc).map_err(|message| Invalid::Refused {
        reason: "InvalidTTL",
        message,
    })?;
    if expires_at.is_some_and(|at| at <= now) {
        return Err(Invalid::Expired);
    }
    // What runs now (the last version the control plane was Ready at) may
    // move one minor version up, not down and not further.
    if let Some(running) = vc.status.as_ref().and_then(|s| s.version.as_deref()) {
        vnest_api::version_change::allowed(running, pods::kubernetes_version(vc)).map_err(
            |message| Invalid::Refused {
                reason: "VersionChangeRefused",
                message,
            },
        )?;
    }
    let protected = apiserver::protected_flags_in_extra_args(vc);
    if !protected.is_empty() {
        return Err(Invalid::Refused {
            reason: "ProtectedFlag",
            message: format!(
                "controlPlane.extraApiServerArgs may not set {}: vnest sets these flags for isolation; nothing was changed",
                protected.join(", ")
            ),
        });
    }
    Ok(expires_at)
}

/// What the rest of the control plane refers to, made first: the host
/// namespaces, the apiserver Service (its address goes into the
/// certificates), the certificates, and the Secrets' encryption key.
struct Prerequisites {
    service: k8s_openapi::api::core::v1::Service,
    apiserver_ip: String,
    pki: vnest_pki::ControlPlanePki,
    pki_data: BTreeMap<String, Vec<u8>>,
    /// The renewal request the certificates were issued for.
    renewal_answered: Option<String>,
    stage: Stage,
}

/// The prerequisites, or (`Break`) when to look again: the status already
/// says what is waited for.
async fn prerequisites(
    vc: &VirtualCluster,
    ctx: &Context,
) -> Result<ControlFlow<Action, Prerequisites>> {
    for namespace in namespaces::host_namespaces(vc) {
        let applied = apply::apply_cluster(&ctx.client, FIELD_MANAGER, &namespace).await?;
        // An earlier VirtualCluster of this name is still going away: its
        // namespace takes no new object until the host has removed it.
        if applied.metadata.deletion_timestamp.is_some() {
            let message = format!(
                "host namespace {} of an earlier VirtualCluster of this name is still being deleted; starting once it is gone",
                applied.name_any()
            );
            let stages = vec![Stage::waiting(
                status::READY,
                "PreviousHostNamespaceTerminating",
                &message,
            )];
            write_stages(vc, ctx, stages, Phase::Provisioning, message).await?;
            return Ok(ControlFlow::Break(Action::requeue(Duration::from_secs(2))));
        }
    }
    let service = apply_object(ctx, &apiserver::service(vc)).await?;
    let Some(apiserver_ip) = service.spec.as_ref().and_then(|s| s.cluster_ip.clone()) else {
        return Err(Error::Incomplete("apiserver Service ClusterIP"));
    };
    // Unusable stored certificates: only the admin can fix them.
    let Some(Certificates {
        pki,
        renewal_answered,
        stage,
    }) = certificates(vc, ctx, Some(&apiserver_ip)).await?
    else {
        return Ok(ControlFlow::Break(Action::requeue(Duration::from_secs(60))));
    };
    ensure_encryption_key(vc, ctx).await?;
    let pki_data = pods::pki_data(&pki);
    Ok(ControlFlow::Continue(Prerequisites {
        service,
        apiserver_ip,
        pki,
        pki_data,
        renewal_answered,
        stage,
    }))
}

/// Phase 2, observe: what the host holds that the desired state depends on.
struct HostView {
    host: host_facts::HostFacts,
    virtual_clusters: Vec<VirtualCluster>,
    external_client_secret: Option<Secret>,
    /// What to do about the version, given the upgrade's snapshot Job.
    upgrade: upgrade::Upgrade,
}

async fn observe(vc: &VirtualCluster, ctx: &Context) -> Result<HostView> {
    let host = host_facts::observe(&ctx.client).await?;
    let virtual_clusters = Api::<VirtualCluster>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let external_client_secret = match &vc.spec.datastore.external {
        Some(external) => {
            let (namespace, _) = identity(vc);
            Api::<Secret>::namespaced(ctx.client.clone(), namespace)
                .get_opt(&external.client_cert_secret_name)
                .await?
        }
        None => None,
    };
    // The upgrade's snapshot Job is looked at only while one is wanted.
    let mut upgrade = upgrade::plan(vc, None);
    if let Some(job) = &upgrade.snapshot_job {
        let jobs: Api<Job> = Api::namespaced(
            ctx.client.clone(),
            &host_namespace_of(vc, HostNamespaceRole::ControlPlane),
        );
        upgrade = upgrade::plan(vc, jobs.get_opt(job).await?.as_ref());
    }
    Ok(HostView {
        host,
        virtual_clusters,
        external_client_secret,
        upgrade,
    })
}

/// What applying the desired state returned, for the status.
#[derive(Default)]
struct Applied {
    deployments: BTreeMap<String, Deployment>,
    stateful_set: Option<k8s_openapi::api::apps::v1::StatefulSet>,
    cron_job: Option<k8s_openapi::api::batch::v1::CronJob>,
}

/// Phase 4, apply: every object of `state`, in order.
async fn apply_state(vc: &VirtualCluster, ctx: &Context, state: &HostState) -> Result<Applied> {
    let tenant = tenant_key(vc);
    let now = std::time::Instant::now();
    let desired: BTreeSet<String> = state.objects.iter().map(memo_key).collect();
    ctx.recently_applied.keep_only(&tenant, &desired);
    let mut applied = Applied::default();
    for object in &state.objects {
        let unwatched = unwatched_hash(object).map(|hash| (memo_key(object), hash));
        if let Some((key, hash)) = &unwatched
            && ctx.recently_applied.holds(&tenant, key, *hash, now)
        {
            continue;
        }
        match object {
            HostObject::ServiceAccount(o) => drop(apply_object(ctx, o).await?),
            HostObject::RoleBinding(o) => drop(apply_object(ctx, o).await?),
            HostObject::ClusterRoleBinding(o) => {
                drop(apply::apply_cluster(&ctx.client, FIELD_MANAGER, o).await?)
            }
            HostObject::FlowSchema(o) => {
                drop(apply::apply_cluster(&ctx.client, FIELD_MANAGER, o).await?)
            }
            HostObject::ResourceQuota(o) => drop(apply_object(ctx, o).await?),
            HostObject::LimitRange(o) => drop(apply_object(ctx, o).await?),
            HostObject::NetworkPolicy(o) => drop(apply_object(ctx, o).await?),
            HostObject::Service(o) => drop(apply_object(ctx, o).await?),
            HostObject::Secret(o) => drop(apply_object(ctx, o).await?),
            HostObject::StatefulSet(o) => applied.stateful_set = Some(apply_object(ctx, o).await?),
            HostObject::CronJob(o) => applied.cron_job = Some(apply_object(ctx, o.as_ref()).await?),
            HostObject::PersistentVolumeClaim(o) => make_once(ctx, o).await?,
            HostObject::Job(o) => make_once(ctx, o.as_ref()).await?,
            HostObject::Deployment(o) => {
                let deployment = apply_object(ctx, o).await?;
                applied
                    .deployments
                    .insert(deployment.name_any(), deployment);
            }
        }
        if let Some((key, hash)) = unwatched {
            ctx.recently_applied.record(&tenant, &key, hash, now);
        }
    }
    Ok(applied)
}

/// `object`'s key to [`Context::recently_applied`].
fn memo_key(object: &HostObject) -> String {
    let key = object.key();
    format!(
        "{}/{}/{}",
        key.kind,
        key.namespace.unwrap_or_default(),
        key.name
    )
}

/// The hash of `object` if it is of a kind no watch of the supervisor
/// covers ([`crate::recently_applied`]); watched kinds, and those whose
/// state the status reads, are applied on every reconcile.
fn unwatched_hash(object: &HostObject) -> Option<u64> {
    match object {
        HostObject::ServiceAccount(o) => Some(hash_of(o)),
        HostObject::RoleBinding(o) => Some(hash_of(o)),
        HostObject::ClusterRoleBinding(o) => Some(hash_of(o)),
        HostObject::FlowSchema(o) => Some(hash_of(o)),
        HostObject::ResourceQuota(o) => Some(hash_of(o)),
        HostObject::LimitRange(o) => Some(hash_of(o)),
        HostObject::NetworkPolicy(o) => Some(hash_of(o)),
        HostObject::Secret(o) => Some(hash_of(o)),
        HostObject::Service(_)
        | HostObject::StatefulSet(_)
        | HostObject::CronJob(_)
        | HostObject::PersistentVolumeClaim(_)
        | HostObject::Job(_)
        | HostObject::Deployment(_) => None,
    }
}

async fn apply(vc: &VirtualCluster, ctx: &Context) -> Result<Action> {
    let now = Timestamp::now();
    let expires_at = match validate(vc, now) {
        Ok(at) => at,
        Err(Invalid::Expired) => return expire(vc, ctx).await,
        Err(Invalid::Refused { reason, message }) => {
            return refuse(vc, ctx, reason, message).await;
        }
    };
    let made = match prerequisites(vc, ctx).await? {
        ControlFlow::Continue(made) => made,
        ControlFlow::Break(again) => return Ok(again),
    };
    let view = observe(vc, ctx).await?;

    // Phase 3, build: one desired state, pure.
    let endpoint = kubeconfig::endpoint(vc, Some(&made.service), &view.host.node_addresses);
    let ingress = ingress_grants::held(vc, &view.virtual_clusters);
    let pools = Pools::new(view.host.nodes, &view.virtual_clusters);
    let pool = pools.members(&vc.spec.node_pool.node_selector);
    let pool_addresses = pool_nodes::addresses(&pool);
    let state = host_state::host_state(
        vc,
        &ctx.settings,
        &Observed {
            pki: &made.pki,
            pki_data: &made.pki_data,
            apiserver_ip: &made.apiserver_ip,
            endpoint: &endpoint,
            forbidden: &view.host.forbidden,
            pool: &pool_addresses,
            ingress_hosts: &ingress.hosts,
            external_client_secret: view.external_client_secret.as_ref(),
            upgrade: &view.upgrade,
        },
    )?;

    // Phase 4, apply it, and delete what is no longer wanted.
    let applied = apply_state(vc, ctx, &state).await?;
    // A failed deletion does not keep the status from being written; the
    // reconcile still fails (and is retried) once it is.
    let pruned = match prune::prune(ctx, vc, &state).await {
        Ok(removed) => {
            if !removed.is_empty() {
                let note = format!("deleted objects no longer desired: {}", removed.join(", "));
                publish(vc, ctx, EventType::Normal, "Pruned", note).await;
            }
            Ok(())
        }
        Err(error) => {
            let note = format!("deleting objects no longer desired failed: {error}");
            publish(vc, ctx, EventType::Warning, "PruneFailed", note).await;
            Err(error)
        }
    };
    // The apiserver's rollout decides whether its API can be written to
    // (a paused one reads as ok, but serves nothing).
    let apiserver_rollout = deployment_stage(
        vc,
        &applied,
        status::APISERVER,
        apiserver::COMPONENT,
        "kube-apiserver",
    );
    // One client of the tenant, once its apiserver serves: CoreDNS goes in
    // through it, and the controllers' work is read through it.
    let tenant = if apiserver_rollout.ok && !vc.spec.paused {
        Some(tenant_client(vc, &made.pki).await)
    } else {
        // What it holds is applied again once it serves (it may have been
        // restored, or be a new version).
        ctx.recently_applied
            .forget_object(&tenant_key(vc), TENANT_DNS);
        None
    };
    let dns_stage = match &tenant {
        Some(client) => tenant_dns(vc, client.as_ref(), ctx, Some(&made.apiserver_ip)).await,
        None => Stage::waiting(
            status::CLUSTER_DNS,
            "WaitingForAPIServer",
            "installed once the tenant apiserver serves",
        ),
    };

    // Phase 5, status: what was applied, as the user reads it.
    let mut stages = vec![made.stage];
    let datastore_stage = datastore_stage(vc, &state, applied.stateful_set.as_ref());
    stages.push(explain(vc, ctx, datastore_stage, datastore::COMPONENT).await);
    let mut apiserver_stage = apiserver_rollout;
    if let Err(waiting) = &endpoint
        && apiserver_stage.ok
    {
        apiserver_stage = Stage::waiting(status::APISERVER, "WaitingForEndpoint", waiting);
    }
    stages.push(explain(vc, ctx, apiserver_stage, apiserver::COMPONENT).await);
    let mut kcm_stage = deployment_stage(
        vc,
        &applied,
        status::CONTROLLER_MANAGER,
        controller_manager::COMPONENT,
        "kube-controller-manager",
    );
    if kcm_stage.ok
        && let Some(client) = &tenant
        && let Err(waiting) = controllers_started(client.as_ref()).await
    {
        if let Ok(client) = client {
            // Its arrival starts the next reconcile.
            ctx.tenant_waits
                .default_account(ObjectRef::from_obj(vc), client.clone());
        }
        kcm_stage = Stage::waiting(status::CONTROLLER_MANAGER, "StartingControllers", waiting);
    }
    stages.push(explain(vc, ctx, kcm_stage, controller_manager::COMPONENT).await);
    if scheduler::runs(vc) {
        let scheduler_stage = deployment_stage(
            vc,
            &applied,
            status::SCHEDULER,
            scheduler::COMPONENT,
            "kube-scheduler",
        );
        stages.push(explain(vc, ctx, scheduler_stage, scheduler::COMPONENT).await);
    }
    stages.push(dns_stage);
    let syncer_stage = deployment_stage(
        vc,
        &applied,
        status::SYNCER,
        desired_syncer::COMPONENT,
        "vnest-syncer",
    );
    stages.push(explain(vc, ctx, syncer_stage, desired_syncer::COMPONENT).await);
    let kubeconfig_secret = endpoint.is_ok().then(|| kubeconfig::secret_name(vc));
    let ready = status::ready(&stages, vc.spec.paused);
    let is_ready = ready.ok;
    stages.push(ready);
    stages.push(status::node_pool(
        vc.spec.node_pool.mode,
        pool.len(),
        &pools.shared_with(vc),
    ));
    if !vc.spec.isolation.ingress.hosts.is_empty() {
        stages.push(status::ingress_hosts(&ingress));
    }
    if let Some(backup) = &vc.spec.backup {
        stages.push(status::backup(
            &backup.schedule,
            backup.keep,
            vc.spec.paused,
            applied.cron_job.as_ref().and_then(|c| c.status.as_ref()),
        ));
    }
    if let Some(wanted) = vc.spec.isolation.pid_limit {
        let limits = ctx.kubelets.pid_limits(&pool).await;
        stages.push(status::pid_limit(wanted, &limits));
    }
    if !vc.spec.paused {
        let nodes = control_plane_nodes(vc, ctx).await?;
        stages.push(status::control_plane_placement(
            &nodes,
            &pools.others_on(vc, &nodes),
        ));
    }

    if let Some(stage) = &view.upgrade.stage {
        stages.push(stage.clone());
    }
    let previous = vc.status.clone().unwrap_or_default();
    let component_versions = component_versions(vc, &applied, &previous);
    // The version every Kubernetes component runs, kept while they differ
    // (an upgrade under way): version changes are judged against it.
    let version = whole_version(vc, &component_versions).or(previous.version.clone());
    if let (Some(from), Some(to)) = (&previous.version, &version)
        && from != to
    {
        let note = format!("every component of the control plane moved from {from} to {to}");
        publish(vc, ctx, EventType::Normal, "Upgraded", note).await;
    }
    // A renewal is rolled out once the control plane, given the renewed
    // certificates (this reconcile's templates carry them), is Ready.
    let renewal_rolled_out = if is_ready && !vc.spec.paused {
        made.renewal_answered.clone()
    } else {
        vc.status
            .as_ref()
            .and_then(|s| s.renewal_rolled_out.clone())
    };
    let new_status = VirtualClusterStatus {
        phase: Some(status::phase(&stages, vc.spec.paused, false)),
        observed_generation: vc.metadata.generation,
        conditions: status::conditions(
            vc.status.as_ref().map_or(&[], |s| &s.conditions),
            &stages,
            vc.metadata.generation,
            // When this was seen, not when the reconcile began: waiting on
            // the tenant's API can take seconds, and a change dated before
            // it was seen reads as older than it is.
            Timestamp::now(),
        ),
        endpoint: endpoint.ok().map(|e| e.url),
        version,
        kubeconfig_secret_name: kubeconfig_secret,
        expires_at: expires_at.map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
        component_versions: Some(component_versions),
        renewal_rolled_out,
    };
    let was = vc.status.as_ref().and_then(|s| s.phase);
    write_status(vc, ctx, &new_status).await?;
    if was != new_status.phase {
        let (type_, reason, note) = match new_status.phase {
            Some(Phase::Ready) => (
                EventType::Normal,
                "Ready",
                "the tenant control plane is serving",
            ),
            Some(Phase::Paused) => (
                EventType::Normal,
                "Paused",
                "the control plane is scaled to zero",
            ),
            _ => (
                EventType::Normal,
                "Provisioning",
                "provisioning the tenant control plane",
            ),
        };
        publish(vc, ctx, type_, reason, note.to_owned()).await;
    }

    // Anything still pending (the tenant's DNS may lag Ready) is looked at
    // again soon; a settled cluster every 5 minutes.
    // (A pool that does not hold the PID limit or shares its nodes is the
    // admin's to change: nothing to look at again every few seconds.)
    let settled = vc.spec.paused
        || new_status.conditions.iter().all(|c| {
            c.status == "True"
                || [
                    status::PID_LIMIT,
                    status::NODE_POOL,
                    status::CONTROL_PLANE_PLACEMENT,
                    status::BACKUP,
                ]
                .contains(&c.type_.as_str())
        });
    // Not settled (starting, rolling out): some of what is waited for
    // starts no watch event (the tenant's controllers making its default
    // ServiceAccount), so it is looked at again soon.
    let recheck = if settled {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(2)
    };
    let until_expiry = expires_at
        .and_then(|at| Duration::try_from(at.duration_since(now)).ok())
        .unwrap_or(recheck);
    pruned?;
    Ok(Action::requeue(recheck.min(until_expiry)))
}

/// The certificates the control plane is given, and the renewal request
/// they answer.
struct Certificates {
    pki: vnest_pki::ControlPlanePki,
    renewal_answered: Option<String>,
    stage: Stage,
}

/// The stored certificates, kept, created or renewed. `None` after a stored
/// set proved unusable (the status says what to do).
async fn certificates(
    vc: &VirtualCluster,
    ctx: &Context,
    apiserver_ip: Option<&str>,
) -> Result<Option<Certificates>> {
    let cp = host_namespace_of(vc, HostNamespaceRole::ControlPlane);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cp);
    let stored = secrets.get_opt(PKI_SECRET).await?;
    let plan = certificates::plan(vc, apiserver_ip, stored.as_ref(), OffsetDateTime::now_utc());
    let written = match &plan {
        Ok(CertificatePlan::Create(pki) | CertificatePlan::Renew { pki, .. }) => {
            Some(apply_object(ctx, &certificates::to_secret(vc, apiserver_ip, pki)).await?)
        }
        _ => None,
    };
    let renewal_answered = written
        .as_ref()
        .or(stored.as_ref())
        .and_then(certificates::renewal_answered)
        .cloned();
    let made = |pki, reason, message: &str| {
        Ok(Some(Certificates {
            pki,
            renewal_answered: renewal_answered.clone(),
            stage: Stage::ok(status::CERTIFICATES, reason, message),
        }))
    };
    match plan {
        Ok(CertificatePlan::Keep(pki)) => made(
            pki,
            "Valid",
            "issued by the tenant's own CAs; leaves are renewed 30 days before they expire",
        ),
        Ok(CertificatePlan::Create(pki)) => {
            publish(
                vc,
                ctx,
                EventType::Normal,
                "CertificatesIssued",
                "issued the tenant's CAs and certificates".into(),
            )
            .await;
            made(pki, "Issued", "issued the tenant's CAs and certificates")
        }
        Ok(CertificatePlan::Renew { pki, why }) => {
            let message =
                format!("renewed every leaf certificate ({why}); the control-plane pods roll");
            publish(
                vc,
                ctx,
                EventType::Normal,
                "CertificatesRenewed",
                message.clone(),
            )
            .await;
            made(pki, "Renewed", &message)
        }
        Err(error) => {
            let message = error.to_string();
            let stages = vec![Stage::waiting(
                status::CERTIFICATES,
                "StoredCertificatesUnusable",
                &message,
            )];
            write_stages(vc, ctx, stages, Phase::Failed, message).await?;
            Ok(None)
        }
    }
}

/// A component's Deployment, as applied, as a stage. Only the
/// controller-manager's and the scheduler's can be missing: they are made
/// once the apiserver has run ([`kube_component::started`]).
fn deployment_stage(
    vc: &VirtualCluster,
    applied: &Applied,
    type_: &'static str,
    component: &str,
    what: &str,
) -> Stage {
    match applied.deployments.get(component) {
        Some(deployment) => rollout_stage(type_, what, deployment, vc.spec.paused),
        None if vc.spec.paused => Stage::ok(type_, "Paused", format!("{what} is not started")),
        None if !kube_component::started(vc) => Stage::waiting(
            type_,
            "WaitingForAPIServer",
            format!("{what} starts once the tenant apiserver serves"),
        ),
        None => Stage::waiting(type_, "NotApplied", format!("{what} is not applied yet")),
    }
}

/// The datastore as a stage: the owned etcd's members, or the external
/// etcd's client Secret.
fn datastore_stage(
    vc: &VirtualCluster,
    state: &HostState,
    stateful_set: Option<&k8s_openapi::api::apps::v1::StatefulSet>,
) -> Stage {
    if let Some(problem) = &state.datastore_problem {
        return Stage::waiting(status::DATASTORE, problem.reason, &problem.message);
    }
    if let Some(external) = &vc.spec.datastore.external {
        return Stage::ok(
            status::DATASTORE,
            "External",
            format!("using external etcd at {}", external.endpoints.join(", ")),
        );
    }
    if vc.spec.paused {
        return Stage::ok(
            status::DATASTORE,
            "Paused",
            "etcd is scaled to zero; its volumes keep the data",
        );
    }
    let want = datastore::owned_etcd(vc).map_or(1, |etcd| etcd.replicas);
    let Some(stateful_set) = stateful_set else {
        return Stage::waiting(
            status::DATASTORE,
            "EtcdStarting",
            format!("0/{want} etcd members ready"),
        );
    };
    let rollout = rollout::stateful_set("etcd members", want, stateful_set);
    let ready = stateful_set
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    if rollout.done {
        Stage::ok(status::DATASTORE, "Running", rollout.message)
    } else if ready < want {
        Stage::waiting(status::DATASTORE, "EtcdStarting", rollout.message)
    } else {
        Stage::waiting(status::DATASTORE, "RollingOut", rollout.message)
    }
}

/// Which tenant `vc` is, to [`Context::recently_applied`].
fn tenant_key(vc: &VirtualCluster) -> String {
    vc.metadata.uid.clone().unwrap_or_default()
}

/// CoreDNS's objects in the tenant, to [`Context::recently_applied`].
const TENANT_DNS: &str = "tenant/coredns";

/// CoreDNS inside the tenant cluster, through the tenant apiserver's
/// Service with the tenant admin's certificate: applied, unless the same
/// objects were applied lately ([`crate::recently_applied`]). Its pods run
/// on the host once the syncer runs tenant pods.
async fn tenant_dns(
    vc: &VirtualCluster,
    client: Result<&kube::Client, &String>,
    ctx: &Context,
    apiserver_ip: Option<&str>,
) -> Stage {
    let failed = |e: String| Stage::waiting(status::CLUSTER_DNS, "TenantAPIUnreachable", e);
    let client = match client {
        Ok(client) => client,
        Err(e) => return failed(e.clone()),
    };
    let image = pods::coredns_image(&ctx.settings);
    let dns = match ClusterDns::new(&ClusterDnsSpec {
        image: &image,
        image_pull_policy: "IfNotPresent",
        service_ip: None,
        cluster_domain: vnest_api::CLUSTER_DOMAIN,
        apiserver_address: apiserver_ip,
    }) {
        Ok(dns) => dns,
        Err(e) => return failed(e.to_string()),
    };
    let installed = || {
        Stage::ok(
            status::CLUSTER_DNS,
            "Installed",
            format!(
                "CoreDNS {} is installed in the tenant cluster",
                pods::COREDNS_TAG
            ),
        )
    };
    let hash = hash_of(&(
        &dns.service_account,
        &dns.cluster_role,
        &dns.cluster_role_binding,
        &dns.config_map,
        &dns.deployment,
        &dns.service,
    ));
    let key = tenant_key(vc);
    let now = std::time::Instant::now();
    if ctx.recently_applied.holds(&key, TENANT_DNS, hash, now) {
        return installed();
    }
    match apply::apply_cluster_dns(client, FIELD_MANAGER, &dns).await {
        Ok(()) => {
            ctx.recently_applied.record(&key, TENANT_DNS, hash, now);
            installed()
        }
        Err(e) => failed(format!("installing CoreDNS in the tenant cluster: {e}")),
    }
}

/// Whether the tenant's controllers run as a user relies on once the
/// cluster is Ready: the `default` ServiceAccount of namespace `default`
/// exists (without it no pod can be created there).
async fn controllers_started(
    client: Result<&kube::Client, &String>,
) -> std::result::Result<(), String> {
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.map_err(String::clone)?.clone(), "default");
    match accounts.get_opt("default").await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(
            "kube-controller-manager runs; its controllers have not made the default ServiceAccount yet"
                .to_owned(),
        ),
        Err(e) => Err(format!("reading the tenant's default ServiceAccount: {e}")),
    }
}

/// A client of the tenant cluster as its admin, through the apiserver's
/// in-cluster Service.
async fn tenant_client(
    vc: &VirtualCluster,
    pki: &vnest_pki::ControlPlanePki,
) -> Result<kube::Client, String> {
    let yaml = kubeconfig::in_cluster_admin(vc, pki).map_err(|e| e.to_string())?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).map_err(|e| e.to_string())?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    // A tenant apiserver that does not answer must not hold up reconciles.
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(15));
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// A waiting stage with what its pods say is wrong, if anything.
async fn explain(vc: &VirtualCluster, ctx: &Context, stage: Stage, component: &str) -> Stage {
    if stage.ok {
        return stage;
    }
    let namespace = host_namespace_of(vc, HostNamespaceRole::ControlPlane);
    match pod_problems::first_problem(&ctx.client, &namespace, component).await {
        Some(problem) => Stage {
            message: format!("{}; {problem}", stage.message),
            ..stage
        },
        None => stage,
    }
}

/// The version each component runs after this reconcile: its template's,
/// once every pod of it runs that ([`upgrade::runs`]).
fn component_versions(
    vc: &VirtualCluster,
    applied: &Applied,
    previous: &VirtualClusterStatus,
) -> vnest_api::ComponentVersions {
    let ran = previous.component_versions.clone().unwrap_or_default();
    let image = |template: &'_ k8s_openapi::api::core::v1::PodTemplateSpec| {
        let container = template.spec.as_ref()?.containers.first()?;
        container.image.clone()
    };
    let deployment = |component: &str, ran: Option<&String>| {
        let deployment = applied.deployments.get(component)?;
        let rolled_out = !vc.spec.paused && rollout::deployment("", deployment).done;
        upgrade::runs(image(&deployment.spec.template).as_deref(), rolled_out, ran)
    };
    let etcd = applied.stateful_set.as_ref().and_then(|set| {
        let want = datastore::owned_etcd(vc)?.replicas;
        let rolled_out = !vc.spec.paused && rollout::stateful_set("", want, set).done;
        upgrade::runs(
            image(&set.spec.template).as_deref(),
            rolled_out,
            ran.etcd.as_ref(),
        )
    });
    vnest_api::ComponentVersions {
        kube_apiserver: deployment(apiserver::COMPONENT, ran.kube_apiserver.as_ref()),
        kube_controller_manager: deployment(
            controller_manager::COMPONENT,
            ran.kube_controller_manager.as_ref(),
        ),
        kube_scheduler: scheduler::runs(vc)
            .then(|| deployment(scheduler::COMPONENT, ran.kube_scheduler.as_ref()))
            .flatten(),
        etcd,
    }
}

/// The Kubernetes version all of `vc`'s Kubernetes components run, if
/// they run one.
fn whole_version(vc: &VirtualCluster, runs: &vnest_api::ComponentVersions) -> Option<String> {
    let apiserver = runs.kube_apiserver.as_ref()?;
    let same = |v: &Option<String>| v.as_ref() == Some(apiserver);
    (same(&runs.kube_controller_manager) && (!scheduler::runs(vc) || same(&runs.kube_scheduler)))
        .then(|| apiserver.clone())
}

/// A Deployment's rollout as a stage ([`rollout::deployment`]).
fn rollout_stage(type_: &'static str, what: &str, deployment: &Deployment, paused: bool) -> Stage {
    if paused {
        return Stage::ok(type_, "Paused", format!("{what} is scaled to zero"));
    }
    let rollout = rollout::deployment(what, deployment);
    if rollout.done {
        Stage::ok(type_, "Running", rollout.message)
    } else {
        Stage::waiting(type_, "RollingOut", rollout.message)
    }
}

async fn write_status(
    vc: &VirtualCluster,
    ctx: &Context,
    status: &VirtualClusterStatus,
) -> Result<()> {
    let (namespace, name) = identity(vc);
    let api: Api<VirtualCluster> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": "vnest.dev/v1alpha1",
        "kind": "VirtualCluster",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    // The gauge follows what was written, not only what a reconcile saw:
    // the status update itself starts no reconcile.
    let phase = status
        .phase
        .map_or_else(|| "Pending".to_owned(), |p| format!("{p:?}"));
    ctx.metrics
        .phase(format!("{namespace}/{name}"), Some(phase));
    Ok(())
}

/// A spec the supervisor will not act on: nothing is applied, the status
/// says why, and only a change of the spec brings it back.
async fn refuse(
    vc: &VirtualCluster,
    ctx: &Context,
    reason: &str,
    message: String,
) -> Result<Action> {
    let stages = vec![Stage::waiting(status::READY, reason, &message)];
    write_stages(vc, ctx, stages, Phase::Failed, message).await?;
    Ok(Action::await_change())
}

/// Writes a status of `stages` alone (a Ready condition added from the
/// first when missing) in `phase`, and an event of `message` (a warning
/// when the phase is Failed).
async fn write_stages(
    vc: &VirtualCluster,
    ctx: &Context,
    mut stages: Vec<Stage>,
    phase: Phase,
    message: String,
) -> Result<()> {
    if !stages.iter().any(|s| s.type_ == status::READY) {
        let first = &stages[0];
        stages.push(Stage::waiting(
            status::READY,
            &first.reason.clone(),
            message.clone(),
        ));
    }
    let reason = stages[0].reason.clone();
    let previous = vc.status.clone().unwrap_or_default();
    let new_status = VirtualClusterStatus {
        phase: Some(phase),
        observed_generation: vc.metadata.generation,
        conditions: status::conditions(
            &previous.conditions,
            &stages,
            vc.metadata.generation,
            Timestamp::now(),
        ),
        ..previous
    };
    write_status(vc, ctx, &new_status).await?;
    let type_ = if phase == Phase::Failed {
        EventType::Warning
    } else {
        EventType::Normal
    };
    publish(vc, ctx, type_, &reason, message).await;
    Ok(())
}

async fn expire(vc: &VirtualCluster, ctx: &Context) -> Result<Action> {
    let (namespace, name) = identity(vc);
    publish(
        vc,
        ctx,
        EventType::Normal,
        "Expired",
        "the TTL or expiry time has passed; deleting".into(),
    )
    .await;
    tracing::info!(name, namespace, "expired; deleting");
    let api: Api<VirtualCluster> = Api::namespaced(ctx.client.clone(), namespace);
    api.delete(name, &DeleteParams::foreground()).await?;
    Ok(Action::await_change())
}

/// Events are for people; failing to record one never fails a reconcile.
pub(crate) async fn publish(
    vc: &VirtualCluster,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &vc.object_ref(&())).await {
        tracing::debug!(%error, reason, "recording an event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(version: Option<&str>, wanted: &str) -> VirtualCluster {
        let mut vc = crate::desired::test_cluster();
        vc.spec.kubernetes_version = Some(wanted.to_owned());
        vc.status = Some(VirtualClusterStatus {
            version: version.map(str::to_owned),
            ..VirtualClusterStatus::default()
        });
        vc
    }

    fn refusal(vc: &VirtualCluster) -> Option<String> {
        match validate(vc, Timestamp::now()) {
            Err(Invalid::Refused { reason, message }) => Some(format!("{reason}: {message}")),
            _ => None,
        }
    }

    #[test]
    fn a_version_change_is_judged_against_what_runs() {
        assert_eq!(refusal(&running(None, "v1.30.0")), None, "nothing runs yet");
        assert_eq!(refusal(&running(Some("v1.36.3"), "v1.37.2")), None);
        let down = refusal(&running(Some("v1.37.2"), "v1.36.3")).unwrap_or_default();
        assert!(down.starts_with("VersionChangeRefused"), "{down}");
        let skip = refusal(&running(Some("v1.35.1"), "v1.37.2")).unwrap_or_default();
        assert!(skip.contains("v1.36.x first"), "{skip}");
        // Unset means the pinned version: judged the same way.
        let mut unset = running(Some("v1.39.0"), "v1.39.0");
        unset.spec.kubernetes_version = None;
        assert!(refusal(&unset).is_some_and(|r| r.contains("cannot be downgraded")));
    }
}
