//! The tenant's admin kubeconfig: where the apiserver is reached from
//! outside its namespace, and the Secret, next to the VirtualCluster, that
//! holds the kubeconfig (whoever may read Secrets there may use the tenant
//! cluster; nothing else on the host is needed).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::Resource;
use kube::api::ObjectMeta;
use vnest_api::host_names::identity;
use vnest_api::{ExposeType, VirtualCluster};
use vnest_pki::{CertAndKey, ClientCredentials, ControlPlanePki, Server, render_kubeconfig};

use super::addresses::apiserver::{in_cluster_host, in_cluster_url};
use super::pods;

/// The key of the kubeconfig that reaches the endpoint in the status.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// The key of the kubeconfig for pods of the host cluster (the Service's
/// DNS name).
pub const IN_CLUSTER_KEY: &str = "in-cluster.kubeconfig";

/// A kubeconfig of the tenant cluster through the apiserver's in-cluster
/// Service, for `user` with client certificate `cert` (the one way vnest's
/// components and the tenant's in-cluster admin reach a tenant).
pub fn in_cluster(
    vc: &VirtualCluster,
    pki: &ControlPlanePki,
    user: &str,
    cert: &CertAndKey,
) -> Result<String, vnest_pki::Error> {
    render_kubeconfig(
        identity(vc).1,
        &in_cluster_url(vc),
        &pki.ca.cert().cert_pem,
        user,
        ClientCredentials::Certificate(cert),
    )
}

/// The Secret of control-plane component `component` in the tenant's
/// control-plane namespace holding `kubeconfig` under `key`.
pub fn component_secret(
    vc: &VirtualCluster,
    component: &str,
    name: &str,
    key: &str,
    kubeconfig: String,
) -> Secret {
    Secret {
        metadata: pods::control_plane_meta(vc, name, component),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(kubeconfig.into_bytes()),
        )])),
        ..Secret::default()
    }
}

/// [`in_cluster`] as the tenant's admin.
pub fn in_cluster_admin(
    vc: &VirtualCluster,
    pki: &ControlPlanePki,
) -> Result<String, vnest_pki::Error> {
    in_cluster(vc, pki, vnest_pki::identity::ADMIN_USER, &pki.admin)
}

/// `<name>-kubeconfig`, in the VirtualCluster's namespace.
pub fn secret_name(vc: &VirtualCluster) -> String {
    format!("{}-kubeconfig", identity(vc).1)
}

/// Where the tenant's apiserver is reached, and the name its certificate is
/// checked against when the address is not one of its names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub tls_server_name: Option<String>,
}

/// The endpoint from the apiserver Service as the host reports it; `Err`
/// says what it still waits for.
pub fn endpoint(
    vc: &VirtualCluster,
    service: Option<&Service>,
    node_addresses: &[String],
) -> Result<Endpoint, String> {
    let through_name = |url: String| Endpoint {
        url,
        tls_server_name: Some(in_cluster_host(vc)),
    };
    match vc.spec.control_plane.expose.type_ {
        ExposeType::ClusterIP => Ok(Endpoint {
            url: in_cluster_url(vc),
            tls_server_name: None,
        }),
        ExposeType::NodePort => {
            let port = service
                .and_then(|s| s.spec.as_ref())
                .and_then(|s| s.ports.as_ref())
                .and_then(|p| p.first())
                .and_then(|p| p.node_port)
                .ok_or("waiting for the host to allocate the apiserver's node port")?;
            let address = node_addresses
                .first()
                .ok_or("no Ready host node has an InternalIP address")?;
            Ok(through_name(format!("https://{address}:{port}")))
        }
        ExposeType::LoadBalancer => {
            let ingress = service
                .and_then(|s| s.status.as_ref())
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .and_then(|i| i.first())
                .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone()))
                .ok_or("waiting for the host's load balancer to give the apiserver an address")?;
            Ok(through_name(format!(
                "https://{ingress}:{}",
                super::addresses::apiserver::SERVICE_PORT
            )))
        }
    }
}

/// The Secret with the tenant admin kubeconfigs, owned by the
/// VirtualCluster so that it goes with it.
pub fn admin_secret(
    vc: &VirtualCluster,
    pki: &ControlPlanePki,
    endpoint: &Endpoint,
) -> Result<Secret, vnest_pki::Error> {
    let (namespace, name) = identity(vc);
    let ca = &pki.ca.cert().cert_pem;
    let user = vnest_pki::identity::ADMIN_USER;
    let credentials = ClientCredentials::Certificate(&pki.admin);
    let external = render_kubeconfig(
        name,
        Server {
            url: &endpoint.url,
            tls_server_name: endpoint.tls_server_name.as_deref(),
        },
        ca,
        user,
        credentials,
    )?;
    let in_cluster = in_cluster_admin(vc, pki)?;
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(vc)),
            namespace: Some(namespace.to_owned()),
            labels: Some(pods::owner_labels(vc)),
            owner_references: vc.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            (KUBECONFIG_KEY.to_owned(), ByteString(external.into_bytes())),
            (
                IN_CLUSTER_KEY.to_owned(),
                ByteString(in_cluster.into_bytes()),
            ),
        ])),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    fn node_port_service(port: Option<i32>) -> Service {
        Service {
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    port: 443,
                    node_port: port,
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    #[test]
    fn the_endpoint_follows_how_the_apiserver_is_exposed() {
        let mut vc = VirtualCluster::new("a", Default::default());
        vc.metadata.namespace = Some("t".into());
        let cluster_ip = endpoint(&vc, None, &[]).unwrap();
        assert!(cluster_ip.url.starts_with("https://apiserver.vnest-t-a-"));
        assert_eq!(cluster_ip.tls_server_name, None);

        vc.spec.control_plane.expose.type_ = ExposeType::NodePort;
        let nodes = ["172.30.0.10".to_owned()];
        let waiting = endpoint(&vc, Some(&node_port_service(None)), &nodes).unwrap_err();
        assert!(waiting.contains("node port"), "{waiting}");
        let node_port = endpoint(&vc, Some(&node_port_service(Some(30443))), &nodes).unwrap();
        assert_eq!(node_port.url, "https://172.30.0.10:30443");
        assert_eq!(node_port.tls_server_name, Some(in_cluster_host(&vc)));
        let no_node = endpoint(&vc, Some(&node_port_service(Some(30443))), &[]).unwrap_err();
        assert!(no_node.contains("InternalIP"), "{no_node}");

        vc.spec.control_plane.expose.type_ = ExposeType::LoadBalancer;
        let waiting = endpoint(&vc, Some(&node_port_service(Some(1))), &nodes).unwrap_err();
        assert!(waiting.contains("load balancer"), "{waiting}");
    }
}
