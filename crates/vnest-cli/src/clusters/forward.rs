//! Reaching a tenant's control plane from this machine when its endpoint is
//! not reachable here (a ClusterIP endpoint names a Service only the host
//! resolves; a private network): a local port whose connections are each
//! carried to a ready pod of one component (the apiserver; etcd, for
//! `vnest snapshot`) through the host apiserver's `pods/portforward`.
//! `vnest connect` keeps one until Ctrl-C; `vnest run` keeps one while its
//! command runs.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use kube::config::Kubeconfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use vnest_api::host_names::{self, HostNamespaceRole, host_namespace};

/// Which component's pods a forward reaches, and on which port.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    component: &'static str,
    port: u16,
}

impl Target {
    pub(crate) const APISERVER: Target = Target {
        component: host_names::apiserver::COMPONENT,
        port: host_names::apiserver::SECURE_PORT,
    };
    pub(crate) const ETCD: Target = Target {
        component: host_names::etcd::COMPONENT,
        port: host_names::etcd::CLIENT_PORT,
    };
}

/// How long an endpoint gets to accept a connection before vnest forwards.
const REACH_TIMEOUT: Duration = Duration::from_secs(3);

/// `host:port` of an `https://` URL.
fn authority(server: &str) -> Option<String> {
    let rest = server.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    Some(
        if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:443")
        },
    )
}

/// The server of the kubeconfig's first cluster.
pub(crate) fn server_of(kubeconfig: &Kubeconfig) -> String {
    kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .unwrap_or_default()
}

/// Whether `server` accepts a TCP connection from here.
pub(crate) async fn reachable(server: &str) -> bool {
    let Some(authority) = authority(server) else {
        return false;
    };
    matches!(
        tokio::time::timeout(REACH_TIMEOUT, TcpStream::connect(authority)).await,
        Ok(Ok(_))
    )
}

/// The tenant admin kubeconfig of VirtualCluster `namespace/name`, pointed
/// at a forward through the host when its endpoint is not reachable from
/// here; keep the returned forward for as long as the kubeconfig is used.
pub(crate) async fn tenant_kubeconfig(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<(Kubeconfig, Option<Forward>)> {
    let yaml = super::kubeconfig::fetch(client, namespace, name).await?;
    let mut kubeconfig = Kubeconfig::from_yaml(&yaml).context("parsing the tenant kubeconfig")?;
    let server = server_of(&kubeconfig);
    if reachable(&server).await {
        return Ok((kubeconfig, None));
    }
    let started = Forward::start(client.clone(), namespace, name, Target::APISERVER, 0).await?;
    started.point(&mut kubeconfig, namespace, name);
    eprintln!(
        "{server} is not reachable from here; reaching the cluster through {} (forwarded by the host apiserver)",
        started.local
    );
    Ok((kubeconfig, Some(started)))
}

/// A running forward; dropping it stops it.
pub(crate) struct Forward {
    pub(crate) local: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Forward {
    /// Listens on 127.0.0.1:`port` (0: any free port) and forwards to the
    /// `target` pods of VirtualCluster `namespace/name`; fails when none is
    /// ready.
    pub(crate) async fn start(
        client: kube::Client,
        namespace: &str,
        name: &str,
        target: Target,
        port: u16,
    ) -> anyhow::Result<Self> {
        let control_plane = host_namespace(namespace, name, HostNamespaceRole::ControlPlane);
        let pods: Api<Pod> = Api::namespaced(client, &control_plane);
        ready_pod(&pods, target).await?;
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("listening on 127.0.0.1:{port}"))?;
        let local = listener
            .local_addr()
            .context("the forward's local address")?;
        let task = tokio::spawn(async move {
            loop {
                let (connection, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accepting a connection failed");
                        continue;
                    }
                };
                let pods = pods.clone();
                tokio::spawn(async move {
                    if let Err(error) = carry(&pods, target, connection).await {
                        eprintln!("warning: forwarding a connection from {peer}: {error:#}");
                    }
                });
            }
        });
        Ok(Self { local, task })
    }

    /// Points every cluster of `kubeconfig` at this forward, keeping the
    /// name the apiserver's certificate carries (its Service's).
    pub(crate) fn point(&self, kubeconfig: &mut Kubeconfig, namespace: &str, name: &str) {
        let control_plane = host_namespace(namespace, name, HostNamespaceRole::ControlPlane);
        for cluster in kubeconfig
            .clusters
            .iter_mut()
            .filter_map(|c| c.cluster.as_mut())
        {
            cluster.server = Some(format!("https://{}", self.local));
            cluster.tls_server_name = Some(format!(
                "{}.{control_plane}.svc",
                host_names::apiserver::SERVICE
            ));
        }
    }
}

/// A running, ready `target` pod of the tenant.
async fn ready_pod(pods: &Api<Pod>, target: Target) -> anyhow::Result<String> {
    let selector = format!("{}={}", host_names::labels::COMPONENT, target.component);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .with_context(|| format!("listing the tenant's {} pods on the host (port-forwarding needs get/list pods and create pods/portforward in its control-plane namespace)", target.component))?;
    list.items
        .into_iter()
        .find(|pod| {
            pod.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .and_then(|pod| pod.metadata.name)
        .with_context(|| {
            format!(
                "no tenant {} pod is ready (is the cluster paused? `vnest describe` tells)",
                target.component
            )
        })
}

/// One local connection, carried to a ready `target` pod.
async fn carry(pods: &Api<Pod>, target: Target, mut connection: TcpStream) -> anyhow::Result<()> {
    let pod = ready_pod(pods, target).await?;
    let port = target.port;
    let mut forwarder = pods
        .portforward(&pod, &[port])
        .await
        .with_context(|| format!("port-forwarding to pod {pod}"))?;
    let mut upstream = forwarder
        .take_stream(port)
        .context("the port-forward gave no stream")?;
    tokio::io::copy_bidirectional(&mut connection, &mut upstream)
        .await
        .ok();
    drop(upstream);
    forwarder.join().await.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn authorities_default_to_443() {
        assert_eq!(
            authority("https://10.0.0.1:30443").as_deref(),
            Some("10.0.0.1:30443")
        );
        assert_eq!(
            authority("https://a.example/x").as_deref(),
            Some("a.example:443")
        );
        assert_eq!(authority("http://a"), None);
    }
}
