//! The `vnest-syncer` command: one tenant's syncer, run by the supervisor
//! in the tenant's control-plane namespace. The binary itself is built by
//! the `vnest-supervisor` package (`src/bin/vnest-syncer.rs`), so that one
//! package builds both binaries of vnest's image and its end-to-end tests
//! can package them.

use std::path::PathBuf;
use std::sync::Arc;

use crate::context::{FIELD_MANAGER, Settings, Syncer, TenantNetwork};
use crate::network_policy::NetworkScope;
use crate::statusless::Statusless;
use crate::{events, gc, kubelet_proxy, mirror, nodes, pods, service_addresses, volumes};
use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use vnest_api::cidr::Cidr;
use vnest_api::{IngressGrant, PodLabels, PodSecurityLevel};
use vnest_kube::health::Readiness;
use vnest_kube::logging::LogFormat;

/// Mirrors a tenant cluster's workloads onto the host and their status back.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The tenant cluster's kubeconfig.
    #[arg(long, env = "VNEST_TENANT_KUBECONFIG")]
    tenant_kubeconfig: PathBuf,
    /// The tenant's workloads namespace on the host.
    #[arg(long)]
    host_namespace: String,
    /// A label of the pool's nodes, `key=value`; repeat for each.
    #[arg(long = "pool-selector", value_name = "KEY=VALUE", required = true)]
    pool_selector: Vec<String>,
    /// The taint key pools are fenced with.
    #[arg(long, default_value = "vnest.dev/pool")]
    pool_taint_key: String,
    /// The RuntimeClass forced on every pod.
    #[arg(long)]
    runtime_class: Option<String>,
    /// The tenant's Pod Security level.
    #[arg(long, default_value = "restricted")]
    pod_security: PodSecurityLevel,
    /// The tenant apiserver as host pods reach it, `HOST:PORT`.
    #[arg(long)]
    apiserver_address: String,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The tenant Service pods use for DNS, `NAMESPACE/NAME`.
    #[arg(long, default_value = "kube-system/kube-dns")]
    dns_service: String,
    /// The kubelet proxy's address as the tenant apiserver dials it,
    /// `HOST:PORT`; the tenant's Nodes advertise it as their kubelet.
    #[arg(long, requires_all = ["kubelet_proxy_listen", "kubelet_proxy_pki"])]
    kubelet_proxy_host: Option<String>,
    /// Where the kubelet proxy listens.
    #[arg(long, requires = "kubelet_proxy_host")]
    kubelet_proxy_listen: Option<std::net::SocketAddr>,
    /// The directory with `ca.crt` (the tenant CA) and the proxy's serving
    /// pair `kubelet-proxy.crt` / `kubelet-proxy.key`.
    #[arg(long, requires = "kubelet_proxy_host")]
    kubelet_proxy_pki: Option<PathBuf>,
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
    /// The tenant's control-plane namespace on the host, where its
    /// apiserver runs.
    #[arg(long)]
    control_plane_namespace: String,
    /// A label of the tenant's apiserver pods, `key=value`; repeat for each.
    #[arg(long = "apiserver-pod-label", value_name = "KEY=VALUE")]
    apiserver_pod_label: Vec<String>,
    /// A range tenant traffic must never reach (an address or CIDR): the
    /// host's nodes, apiserver, DNS and pod subnets; repeat for each. The
    /// tenant's own NetworkPolicies are kept out of them.
    #[arg(long = "host-range", value_name = "CIDR")]
    host_range: Vec<Cidr>,
    /// One of the host's pod subnets (also a `--host-range`); repeat.
    #[arg(long = "pod-range", value_name = "CIDR")]
    pod_range: Vec<Cidr>,
    /// How tenant pod labels appear on host pods: `prefixed` (under
    /// vnest's domain) or `verbatim`.
    #[arg(long, default_value = "prefixed")]
    pod_labels: PodLabels,
    /// A host name pattern the tenant's Ingresses may claim (see
    /// `vnest_api::ingress_hosts`); repeat for each.
    #[arg(long = "ingress-host", value_name = "PATTERN")]
    ingress_host: Vec<String>,
    /// An IngressClass the tenant's Ingresses may name; repeat for each.
    #[arg(long = "ingress-class", value_name = "NAME")]
    ingress_class: Vec<String>,
    /// Where `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    health_address: std::net::SocketAddr,
}

fn host_and_port(address: &str, flag: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = address
        .rsplit_once(':')
        .with_context(|| format!("{flag} must be HOST:PORT, not {address:?}"))?;
    let port = port
        .parse()
        .with_context(|| format!("{flag} must end in a port, not {address:?}"))?;
    Ok((host.to_owned(), port))
}

/// Whether `args` (without the program name) is a command line this
/// syncer accepts; the supervisor's tests check what it writes with it.
pub fn accepts(args: &[String]) -> Result<(), String> {
    let program = std::iter::once("vnest-syncer".to_owned());
    Args::try_parse_from(program.chain(args.iter().cloned()))
        .map(|_| ())
        .map_err(|e| e.to_string())
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
        .reflect(writer)
        .touched_objects()
        .filter_map(|change| async move { change.ok().map(|_| ()) })
}

/// Parses the command line and runs the syncer until SIGTERM or Ctrl-C.
pub async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    vnest_kube::logging::init(args.log_format);
    let (host, port) = host_and_port(&args.apiserver_address, "--apiserver-address")?;
    let kubelet_endpoint = args
        .kubelet_proxy_host
        .as_deref()
        .map(|address| host_and_port(address, "--kubelet-proxy-host"))
        .transpose()?;
    let kubelet_tls = args
        .kubelet_proxy_pki
        .as_deref()
        .map(kubelet_proxy::tls_config)
        .transpose()
        .context("loading the kubelet proxy's certificates")?;
    let (dns_namespace, dns_name) = args
        .dns_service
        .split_once('/')
        .context("--dns-service must be NAMESPACE/NAME")?;
    let settings = Settings {
        host_namespace: args.host_namespace,
        pool_selector: vnest_api::label_pairs::parse(&args.pool_selector)
            .context("--pool-selector")?,
        pool_taint_key: args.pool_taint_key,
        runtime_class: args.runtime_class,
        level: args.pod_security,
        apiserver_host: host.clone(),
        apiserver_port: port,
        cluster_domain: args.cluster_domain,
        dns_service: (dns_namespace.to_owned(), dns_name.to_owned()),
        kubelet_endpoint,
        host_apiserver: std::env::var("KUBERNETES_SERVICE_HOST")
            .ok()
            .and_then(|ip| ip.parse().ok())
            .into_iter()
            .collect(),
        network: NetworkScope {
            control_plane_namespace: args.control_plane_namespace,
            apiserver_pods: vnest_api::label_pairs::parse(&args.apiserver_pod_label)
                .context("--apiserver-pod-label")?,
            host_ranges: args.host_range,
            pod_ranges: args.pod_range,
            apiserver_address: host.parse().ok(),
        },
        pod_labels: args.pod_labels,
        ingress: IngressGrant {
            hosts: args.ingress_host,
            class_names: args.ingress_class,
        },
    };

    let host_client = kube::Client::try_default()
        .await
        .context("connecting to the host cluster")?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.tenant_kubeconfig)
        .with_context(|| format!("reading {}", args.tenant_kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .context("loading the tenant kubeconfig")?;
    let tenant_client =
        kube::Client::try_from(config).context("connecting to the tenant cluster")?;
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
    let syncer = Arc::new(Syncer::new(
        tenant_client,
        host_client,
        settings,
        recorder,
        network,
    ));
    let for_metrics = syncer.clone();
    let health = tokio::spawn(vnest_kube::health::serve(
        args.health_address,
        readiness.clone(),
        Some(Arc::new(move || for_metrics.metrics.render())),
    ));
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
        let mut delay = std::time::Duration::from_millis(500);
        while let Err(error) = service_addresses::register(&syncer, &url, &ca).await {
            tracing::warn!(%error, "registering the Service-address webhook in the tenant cluster; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(10));
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
        pods::run(syncer.clone(), network_changes),
    );
    heartbeat.abort();
    services_watch.abort();
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn host_ranges_must_be_ranges() {
        let base = [
            "--tenant-kubeconfig=/k",
            "--host-namespace=wl",
            "--pool-selector=vnest.dev/pool=a",
            "--apiserver-address=10.96.0.5:443",
            "--control-plane-namespace=cp",
        ]
        .map(str::to_owned);
        assert_eq!(accepts(&base), Ok(()));
        let with = |extra: &str| [&base[..], &[extra.to_owned()]].concat();
        assert_eq!(accepts(&with("--host-range=10.244.0.0/16")), Ok(()));
        assert_eq!(accepts(&with("--pod-range=fd00::/64")), Ok(()));
        let refused = accepts(&with("--host-range=10.244.0.0/33")).unwrap_err();
        assert!(refused.contains("prefix length"), "{refused}");
        let missing = accepts(&base[..4]).unwrap_err();
        assert!(missing.contains("--control-plane-namespace"), "{missing}");
    }
}
