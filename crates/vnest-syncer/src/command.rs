//! The `vnest-syncer` command: one tenant's syncer, run by the supervisor
//! in the tenant's control-plane namespace (the binary is `src/main.rs`).

use std::sync::Arc;

use crate::certificate_reload::{self, ClientSwitch, Reloader};
use crate::context::{FIELD_MANAGER, Settings, Syncer, TenantNetwork, Watched};
use crate::kubelet_proxy::ServingTls;
use crate::network_policy::NetworkScope;
use crate::statusless::Statusless;
use crate::{
    etc_hosts, events, gc, kubelet_proxy, mirror, nodes, pods, service_addresses, volumes,
};
use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, ResourceQuota, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::BTreeMap;
use vnest_api::IngressGrant;
use vnest_api::syncer_args::{Label, SyncerArgs};
use vnest_kube::health::Readiness;

/// Mirrors a tenant cluster's workloads onto the host and their status back.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Command {
    #[command(flatten)]
    args: SyncerArgs,
}

/// The settings' labels as a map.
fn labels(labels: &[Label]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|l| (l.key.clone(), l.value.clone()))
        .collect()
}

/// Every tenant object of kind `K`, kept in `writer`'s store: a stream
/// that yields once per change, after the store has it.
fn watched<K>(
    tenant: &kube::Client,
    writer: Writer<K>,
) -> impl futures::Stream<Item = ()> + Send + 'static
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api: kube::Api<K> = kube::Api::all(tenant.clone());
    watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(crate::context::lighten)
        .reflect(writer)
        .touched_objects()
        .filter_map(|change| async move { change.ok().map(|_| ()) })
}

/// Parses the command line and runs the syncer until SIGTERM or Ctrl-C;
/// `vnest-syncer etc-hosts …` is a pod's init container instead
/// ([`crate::etc_hosts`]).
pub async fn main() -> anyhow::Result<()> {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == etc_hosts::SUBCOMMAND)
    {
        let task = etc_hosts::EtcHosts::parse_from(std::env::args_os().skip(1));
        return task
            .run()
            .with_context(|| format!("writing {}", task.out.display()));
    }
    let args = Command::parse().args;
    vnest_kube::logging::init(args.log_format);
    // Read before they are loaded: a change in between is taken later.
    let certificate_files =
        certificate_reload::contents(&args.tenant_kubeconfig, args.kubelet_proxy_pki.as_deref());
    let kubelet_tls = args
        .kubelet_proxy_pki
        .as_deref()
        .map(kubelet_proxy::tls_config)
        .transpose()
        .context("loading the kubelet proxy's certificates")?
        .map(|tls| Arc::new(ServingTls::new(tls)));
    let apiserver = args.apiserver_address.clone();
    let settings = Settings {
        host_namespace: args.host_namespace.clone(),
        pool_selector: labels(&args.pool_selector),
        pool_taint_key: args.pool_taint_key.clone(),
        runtime_class: args.runtime_class.clone(),
        level: args.pod_security,
        apiserver_host: apiserver.host.clone(),
        apiserver_port: apiserver.port,
        cluster_domain: args.cluster_domain.clone(),
        dns_service: (
            args.dns_service.namespace.clone(),
            args.dns_service.name.clone(),
        ),
        kubelet_endpoint: args
            .kubelet_proxy_host
            .as_ref()
            .map(|h| (h.host.clone(), h.port)),
        host_apiserver: std::env::var("KUBERNETES_SERVICE_HOST")
            .ok()
            .and_then(|ip| ip.parse().ok())
            .into_iter()
            .collect(),
        network: NetworkScope {
            control_plane_namespace: args.control_plane_namespace.clone(),
            apiserver_pods: labels(&args.apiserver_pod_label),
            host_ranges: args.host_range.clone(),
            pod_ranges: args.pod_range.clone(),
            apiserver_address: apiserver.host.parse().ok(),
        },
        pod_labels: args.pod_labels,
        scheduler: args.scheduler,
        ingress: IngressGrant {
            hosts: args.ingress_host.clone(),
            class_names: args.ingress_class.clone(),
        },
        etc_hosts_image: args.etc_hosts_image.clone(),
    };

    let host_client = kube::Client::try_default()
        .await
        .context("connecting to the host cluster")?;
    let first_client = certificate_reload::tenant_client(&args.tenant_kubeconfig)
        .await
        .context("connecting to the tenant cluster")?;
    let (tenant_switch, tenant_client) = ClientSwitch::new(first_client);
    let recorder = Recorder::new(
        tenant_client.clone(),
        Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let readiness = Readiness::default();
    let (namespaces, namespace_writer) = reflector::store();
    let (policies, policy_writer) = reflector::store();
    // Host pods' labels follow the tenant's namespaces and policies: each
    // change re-syncs the pods, once the stores have it.
    let network_changes = futures::stream::select(
        watched(&tenant_client, namespace_writer),
        watched(&tenant_client, policy_writer),
    );
    // Service variables of new pods come from the tenant's Services.
    let (services, service_writer) = reflector::store();
    let services_watch =
        tokio::spawn(watched(&tenant_client, service_writer).for_each(|_| async {}));
    let network = TenantNetwork {
        namespaces,
        policies,
        services,
    };
    // The host's quotas, which every create of a mirrored kind counts
    // against (`host_quota`).
    let (host_quotas, quota_writer) = reflector::store();
    let quotas_watch = tokio::spawn(
        watcher(
            kube::Api::<ResourceQuota>::namespaced(host_client.clone(), &settings.host_namespace),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(quota_writer)
        .for_each(|_| async {}),
    );
    // Both sides' pods, kept by the pod sync's watches (`pods::run`).
    let (host_pods, host_pod_writer) = reflector::store();
    let (tenant_pods, tenant_pod_writer) = reflector::store();
    let syncer = Arc::new(Syncer::new(
        tenant_client,
        host_client,
        settings,
        recorder,
        network,
        Watched {
            host_quotas,
            host_pods,
            tenant_pods,
        },
    ));
    let for_metrics = syncer.clone();
    let health = tokio::spawn(vnest_kube::health::serve(
        args.health_address,
        readiness.clone(),
        Some(Arc::new(move || for_metrics.metrics.render())),
    ));
    let reloader = Reloader {
        kubeconfig: args.tenant_kubeconfig.clone(),
        tenant: tenant_switch,
        serving: args.kubelet_proxy_pki.clone().zip(kubelet_tls.clone()),
        loaded: certificate_files,
    };
    let certificates = tokio::spawn(reloader.run(syncer.clone()));
    let kubelet_proxy = match (args.kubelet_proxy_listen, kubelet_tls) {
        (Some(listen), Some(tls)) => {
            let syncer = syncer.clone();
            Some(tokio::spawn(async move {
                if let Err(error) = kubelet_proxy::serve(syncer, listen, tls).await {
                    tracing::error!(%error, "the kubelet proxy stopped: kubectl logs/exec fail");
                }
            }))
        }
        _ => None,
    };
    // With the proxy listening, tenant Service creates can go through it.
    if let (Some(host), Some(pki)) = (&args.kubelet_proxy_host, &args.kubelet_proxy_pki) {
        let ca_path = pki.join(kubelet_proxy::CA_FILE);
        let ca = std::fs::read(&ca_path)
            .with_context(|| format!("reading the tenant CA {}", ca_path.display()))?;
        let url = format!("https://{host}{}", service_addresses::WEBHOOK_PATH);
        // The tenant apiserver may not serve yet; a crash here would only
        // put the pod into back-off.
        // Tried every second at most: the syncer is ready (and the cluster
        // with it) within a second of the tenant apiserver serving.
        let mut delay = std::time::Duration::from_millis(250);
        while let Err(error) = service_addresses::register(&syncer, &url, &ca).await {
            tracing::warn!(%error, "registering the Service-address webhook in the tenant cluster; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(1));
        }
    }
    nodes::refresh_pool(&syncer)
        .await
        .context("reading the node pool from the host")?;
    readiness.set(true);
    tracing::info!(namespace = %syncer.settings.host_namespace, "syncer starting");
    let heartbeat = tokio::spawn(nodes::run(syncer.clone()));
    let collector = tokio::spawn(gc::run(syncer.clone()));
    let events_up = tokio::spawn(events::run(syncer.clone()));
    let classes = tokio::spawn(volumes::run_classes(syncer.clone()));
    tokio::join!(
        mirror::run::<ConfigMap>(syncer.clone()),
        mirror::run::<Secret>(syncer.clone()),
        mirror::run::<Statusless<Service>>(syncer.clone()),
        mirror::run::<PersistentVolumeClaim>(syncer.clone()),
        mirror::run::<Ingress>(syncer.clone()),
        mirror::run::<EndpointSlice>(syncer.clone()),
        mirror::run::<NetworkPolicy>(syncer.clone()),
        pods::run(
            syncer.clone(),
            futures::stream::select(network_changes, nodes::tenant_label_changes(syncer.clone())),
            host_pod_writer,
            tenant_pod_writer,
        ),
    );
    heartbeat.abort();
    certificates.abort();
    services_watch.abort();
    quotas_watch.abort();
    collector.abort();
    events_up.abort();
    classes.abort();
    health.abort();
    if let Some(proxy) = kubelet_proxy {
        proxy.abort();
    }
    tracing::info!("syncer stopped");
    Ok(())
}
