//! CoreDNS as a cluster's DNS: a Deployment in kube-system behind the
//! `kube-dns` Service at the address kubelets hand to pods. The supervisor
//! installs it in every tenant cluster; the development host uses the same
//! objects for the host's own DNS. CoreDNS listens on 1053 so that it needs
//! no privileged port, and runs non-root with a read-only root filesystem.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde_json::json;

pub const NAMESPACE: &str = "kube-system";
pub const DEPLOYMENT: &str = "coredns";

/// Which CoreDNS, and for which cluster.
#[derive(Clone, Debug)]
pub struct ClusterDnsSpec<'a> {
    pub image: &'a str,
    pub image_pull_policy: &'a str,
    /// The address of `kube-dns`, where kubelets send pods. A tenant has
    /// no kubelets of its own (the syncer points pods at the host copy's
    /// address), so its `kube-dns` takes the address the host gives it.
    pub service_ip: Option<&'a str>,
    pub cluster_domain: &'a str,
    /// Where `kubernetes.default.svc` is really served, when that is not
    /// the cluster's own `kubernetes` Service address: a tenant's pods run
    /// on the host, where that address is the host's apiserver, so the name
    /// answers the tenant apiserver's host address instead (its
    /// certificate carries the name).
    pub apiserver_address: Option<&'a str>,
}

/// Every object of a cluster's DNS.
#[derive(Clone, Debug)]
pub struct ClusterDns {
    pub service_account: ServiceAccount,
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub service: Service,
}

impl ClusterDns {
    pub fn new(spec: &ClusterDnsSpec<'_>) -> Result<Self, serde_json::Error> {
        let labels = json!({ "k8s-app": "kube-dns" });
        let apiserver = spec.apiserver_address.map_or_else(String::new, |ip| {
            format!(
                "    hosts {{\n        {ip} kubernetes.default.svc.{}\n        fallthrough\n    }}\n",
                spec.cluster_domain
            )
        });
        let corefile = format!(
            ".:1053 {{\n    errors\n    health\n    ready\n{apiserver}    kubernetes {} in-addr.arpa ip6.arpa {{\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n    }}\n    cache 30\n    loop\n    reload\n}}\n",
            spec.cluster_domain
        );
        Ok(Self {
            service_account: serde_json::from_value(json!({
                "metadata": { "name": "coredns", "namespace": NAMESPACE },
            }))?,
            cluster_role: serde_json::from_value(json!({
                "metadata": { "name": "system:coredns" },
                "rules": [
                    { "apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"] },
                    { "apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"] },
                ],
            }))?,
            cluster_role_binding: serde_json::from_value(json!({
                "metadata": { "name": "system:coredns" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns" },
                "subjects": [{ "kind": "ServiceAccount", "name": "coredns", "namespace": NAMESPACE }],
            }))?,
            config_map: serde_json::from_value(json!({
                "metadata": { "name": "coredns", "namespace": NAMESPACE },
                "data": { "Corefile": corefile },
            }))?,
            deployment: serde_json::from_value(json!({
                "metadata": { "name": DEPLOYMENT, "namespace": NAMESPACE, "labels": labels },
                "spec": {
                    "replicas": 1,
                    "selector": { "matchLabels": labels },
                    "template": {
                        "metadata": { "labels": labels },
                        "spec": {
                            "serviceAccountName": "coredns",
                            "dnsPolicy": "Default",
                            "securityContext": {
                                "runAsNonRoot": true,
                                "seccompProfile": { "type": "RuntimeDefault" },
                            },
                            "containers": [{
                                "name": "coredns",
                                "image": spec.image,
                                "imagePullPolicy": spec.image_pull_policy,
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    { "name": "dns", "containerPort": 1053, "protocol": "UDP" },
                                    { "name": "dns-tcp", "containerPort": 1053, "protocol": "TCP" },
                                ],
                                "readinessProbe": { "httpGet": { "path": "/ready", "port": 8181 } },
                                "securityContext": {
                                    "runAsNonRoot": true,
                                    "allowPrivilegeEscalation": false,
                                    "readOnlyRootFilesystem": true,
                                    "capabilities": { "drop": ["ALL"] },
                                },
                                "volumeMounts": [{ "name": "config", "mountPath": "/etc/coredns", "readOnly": true }],
                            }],
                            "volumes": [{ "name": "config", "configMap": { "name": "coredns" } }],
                        },
                    },
                },
            }))?,
            service: serde_json::from_value(json!({
                "metadata": { "name": "kube-dns", "namespace": NAMESPACE, "labels": labels },
                "spec": {
                    "selector": labels,
                    "clusterIP": spec.service_ip,
                    "ports": [
                        { "name": "dns", "port": 53, "targetPort": 1053, "protocol": "UDP" },
                        { "name": "dns-tcp", "port": 53, "targetPort": 1053, "protocol": "TCP" },
                    ],
                },
            }))?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_service_sits_at_the_given_address_and_serves_the_domain() {
        let dns = ClusterDns::new(&ClusterDnsSpec {
            image: "coredns:x",
            image_pull_policy: "IfNotPresent",
            service_ip: Some("10.96.0.10"),
            cluster_domain: "cluster.local",
            apiserver_address: Some("10.96.44.5"),
        })
        .unwrap();
        assert_eq!(
            dns.service.spec.unwrap().cluster_ip.as_deref(),
            Some("10.96.0.10")
        );
        let corefile = &dns.config_map.data.unwrap()["Corefile"];
        assert!(corefile.contains("kubernetes cluster.local in-addr.arpa"));
        let hosts = corefile.find("hosts {").unwrap();
        assert!(hosts < corefile.find("kubernetes cluster.local").unwrap());
        assert!(
            corefile
                .contains("10.96.44.5 kubernetes.default.svc.cluster.local\n        fallthrough")
        );
        let container = &dns.deployment.spec.template.spec.unwrap().containers[0];
        assert_eq!(container.image.as_deref(), Some("coredns:x"));
    }

    #[test]
    fn without_an_address_the_cluster_picks_one() {
        let dns = ClusterDns::new(&ClusterDnsSpec {
            image: "coredns:x",
            image_pull_policy: "IfNotPresent",
            service_ip: None,
            cluster_domain: "cluster.local",
            apiserver_address: None,
        })
        .unwrap();
        assert_eq!(dns.service.spec.unwrap().cluster_ip, None);
    }
}
