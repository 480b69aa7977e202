//! The host's cluster DNS: vnest's CoreDNS objects (the ones every tenant
//! cluster gets too) at the address every kubelet hands its pods.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client};
use vnest_control_plane::cluster_dns::{ClusterDns, ClusterDnsSpec, DEPLOYMENT, NAMESPACE};

use crate::topology::{CLUSTER_DOMAIN, DNS_SERVICE_IP};

const FIELD_MANAGER: &str = "vnest-devhost";

/// Applies CoreDNS's objects with server-side apply.
pub async fn install(client: &Client, image: &str) -> anyhow::Result<()> {
    let service_ip = DNS_SERVICE_IP.to_string();
    let dns = ClusterDns::new(&ClusterDnsSpec {
        image,
        image_pull_policy: "Never",
        service_ip: Some(&service_ip),
        cluster_domain: CLUSTER_DOMAIN,
        apiserver_address: None,
    })
    .context("building CoreDNS's objects")?;
    vnest_kube::apply::apply_cluster_dns(client, FIELD_MANAGER, &dns)
        .await
        .context("installing CoreDNS")?;
    Ok(())
}

/// Waits until the Deployment has an available replica.
pub async fn wait_ready(client: &Client, timeout: Duration) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let start = Instant::now();
    loop {
        let available = deployments
            .get_opt(DEPLOYMENT)
            .await?
            .and_then(|d| d.status)
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        if available > 0 {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "CoreDNS was not available after {timeout:?}; `kubectl -n kube-system describe pod -l k8s-app=kube-dns` says why"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
