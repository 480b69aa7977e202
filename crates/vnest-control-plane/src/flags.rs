//! The command lines of the components: pure functions of where the files
//! are and which ports were picked, so they can be read and tested alone, and
//! reused by anything that must start the components exactly as vnest does.

use std::net::IpAddr;
use std::path::Path;

use crate::Layout;

/// The service CIDR; nothing routes it locally, but the apiserver allocates
/// ClusterIPs from it and `vnest-pki` puts its first address in the
/// apiserver's certificate.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
use vnest_api::CLUSTER_DOMAIN;

/// The loopback ports one control plane listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub etcd_metrics: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
    pub scheduler: u16,
}

fn flag(name: &str, value: impl AsRef<Path>) -> String {
    format!("--{name}={}", value.as_ref().display())
}

pub fn etcd(layout: &Layout, ports: &Ports, name: &str) -> Vec<String> {
    let client = format!("https://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("https://127.0.0.1:{}", ports.etcd_peer);
    let mut args = vec![
        flag("name", name),
        flag("data-dir", layout.etcd_data()),
        flag("listen-client-urls", &client),
        flag("advertise-client-urls", &client),
        flag("listen-peer-urls", &peer),
        flag("initial-advertise-peer-urls", &peer),
        flag("initial-cluster", format!("{name}={peer}")),
        flag("initial-cluster-state", "new"),
        // Plain-HTTP health and metrics on loopback, as kubeadm does for probes.
        flag(
            "listen-metrics-urls",
            format!("http://127.0.0.1:{}", ports.etcd_metrics),
        ),
    ];
    args.extend(etcd_security(layout));
    args
}

/// The flags of etcd that do not depend on where it listens: mutual TLS
/// with the etcd CA for clients and peers.
pub fn etcd_security(layout: &Layout) -> Vec<String> {
    vec![
        flag("client-cert-auth", "true"),
        flag("trusted-ca-file", layout.pki("etcd/ca.crt")),
        flag("cert-file", layout.pki("etcd/server.crt")),
        flag("key-file", layout.pki("etcd/server.key")),
        flag("peer-client-cert-auth", "true"),
        flag("peer-trusted-ca-file", layout.pki("etcd/ca.crt")),
        flag("peer-cert-file", layout.pki("etcd/peer.crt")),
        flag("peer-key-file", layout.pki("etcd/peer.key")),
        flag("snapshot-count", "10000"),
    ]
}

/// `address` is where the apiserver listens and what it advertises: loopback
/// for a control plane only this machine uses, or an address nodes and pods
/// reach it under.
pub fn apiserver(layout: &Layout, ports: &Ports, address: IpAddr) -> Vec<String> {
    // The endpoint reconciler refuses a loopback advertise address; with
    // loopback nothing dials the `kubernetes` Service anyway.
    let reconciler = if address.is_loopback() {
        "none"
    } else {
        "lease"
    };
    let mut args = vec![
        flag("bind-address", address.to_string()),
        flag("advertise-address", address.to_string()),
        flag("endpoint-reconciler-type", reconciler),
        flag("secure-port", ports.apiserver.to_string()),
        flag(
            "etcd-servers",
            format!("https://127.0.0.1:{}", ports.etcd_client),
        ),
    ];
    args.extend(apiserver_security(layout));
    args
}

/// The flags of the apiserver that do not depend on where it or etcd
/// listen: certificates, authentication, authorization, admission.
pub fn apiserver_security(layout: &Layout) -> Vec<String> {
    let issuer = format!("https://kubernetes.default.svc.{CLUSTER_DOMAIN}");
    vec![
        flag("etcd-cafile", layout.pki("etcd/ca.crt")),
        flag("etcd-certfile", layout.pki("apiserver-etcd-client.crt")),
        flag("etcd-keyfile", layout.pki("apiserver-etcd-client.key")),
        flag("tls-cert-file", layout.pki("apiserver.crt")),
        flag("tls-private-key-file", layout.pki("apiserver.key")),
        flag("client-ca-file", layout.pki("ca.crt")),
        flag(
            "kubelet-client-certificate",
            layout.pki("apiserver-kubelet-client.crt"),
        ),
        flag(
            "kubelet-client-key",
            layout.pki("apiserver-kubelet-client.key"),
        ),
        flag(
            "kubelet-preferred-address-types",
            "InternalIP,ExternalIP,Hostname",
        ),
        flag(
            "proxy-client-cert-file",
            layout.pki("front-proxy-client.crt"),
        ),
        flag(
            "proxy-client-key-file",
            layout.pki("front-proxy-client.key"),
        ),
        flag(
            "requestheader-client-ca-file",
            layout.pki("front-proxy-ca.crt"),
        ),
        flag("requestheader-allowed-names", "front-proxy-client"),
        flag("requestheader-username-headers", "X-Remote-User"),
        flag("requestheader-group-headers", "X-Remote-Group"),
        flag("requestheader-extra-headers-prefix", "X-Remote-Extra-"),
        flag("service-account-issuer", &issuer),
        // Under the issuer, so the keys are where its discovery document
        // is, for any pod: left to itself the apiserver names its own
        // address, which its certificate does not carry.
        flag(
            "service-account-jwks-uri",
            format!("{issuer}/openid/v1/jwks"),
        ),
        flag("service-account-key-file", layout.pki("sa.pub")),
        flag("service-account-signing-key-file", layout.pki("sa.key")),
        flag("service-cluster-ip-range", SERVICE_CIDR),
        flag("authorization-mode", "Node,RBAC"),
        flag("enable-admission-plugins", "NodeRestriction"),
        flag("enable-bootstrap-token-auth", "true"),
        flag("allow-privileged", "true"),
        flag("profiling", "false"),
        flag("cert-dir", layout.dir.join("apiserver-certs")),
    ]
}

pub fn controller_manager(layout: &Layout, ports: &Ports, cluster: &str) -> Vec<String> {
    let mut args = vec![
        flag("bind-address", "127.0.0.1"),
        flag("secure-port", ports.controller_manager.to_string()),
        flag("leader-elect", "false"),
    ];
    args.extend(controller_manager_security(layout, cluster));
    args
}

/// The flags of the controller-manager that do not depend on where it
/// listens: its kubeconfig, the CAs it trusts and signs with, the
/// service-account key, and the controllers it runs.
pub fn controller_manager_security(layout: &Layout, cluster: &str) -> Vec<String> {
    let kubeconfig = layout.kubeconfig("controller-manager");
    vec![
        flag("kubeconfig", &kubeconfig),
        flag("authentication-kubeconfig", &kubeconfig),
        flag("authorization-kubeconfig", &kubeconfig),
        flag("client-ca-file", layout.pki("ca.crt")),
        flag(
            "requestheader-client-ca-file",
            layout.pki("front-proxy-ca.crt"),
        ),
        flag("root-ca-file", layout.pki("ca.crt")),
        flag("service-account-private-key-file", layout.pki("sa.key")),
        flag("cluster-signing-cert-file", layout.pki("ca.crt")),
        flag("cluster-signing-key-file", layout.pki("ca.key")),
        flag("cluster-name", cluster),
        flag("service-cluster-ip-range", SERVICE_CIDR),
        flag("use-service-account-credentials", "true"),
        flag("controllers", "*,bootstrapsigner,tokencleaner"),
        flag("profiling", "false"),
    ]
}

/// Leader election of a controller-manager or scheduler that may run
/// beside another instance (a rolling update), with upstream's timing
/// (lease 15 s, renew deadline 10 s, retry every 2 s). A shorter renew
/// deadline (5 s, retries every 1 s) took the lease about 4 s sooner after
/// a start, but lost it under load: with 20 tenants starting at once on
/// two cores, renewals took longer than their 2.5 s timeout and every
/// controller-manager restarted in a loop ("leaderelection lost";
/// docs/benchmarks.md).
pub fn leader_election() -> Vec<String> {
    vec![flag("leader-elect", "true")]
}

pub fn scheduler(layout: &Layout, ports: &Ports) -> Vec<String> {
    let mut flags = scheduler_security(layout);
    flags.extend([
        flag("bind-address", "127.0.0.1"),
        flag("secure-port", ports.scheduler.to_string()),
        flag("leader-elect", "false"),
    ]);
    flags
}

/// The flags of the scheduler that do not depend on where it listens: its
/// kubeconfig, which also authorizes requests to its own endpoints, and the
/// CAs that authenticate them. Given both CAs, it does not read them from
/// the apiserver's `extension-apiserver-authentication` ConfigMap at
/// start: started beside its apiserver, that read waits 30 s and then
/// goes on without authentication.
pub fn scheduler_security(layout: &Layout) -> Vec<String> {
    let kubeconfig = layout.kubeconfig("scheduler");
    vec![
        flag("kubeconfig", &kubeconfig),
        flag("authentication-kubeconfig", &kubeconfig),
        flag("authorization-kubeconfig", &kubeconfig),
        flag("client-ca-file", layout.pki("ca.crt")),
        flag(
            "requestheader-client-ca-file",
            layout.pki("front-proxy-ca.crt"),
        ),
        flag("profiling", "false"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn fixture() -> (Layout, Ports) {
        (
            Layout {
                dir: PathBuf::from("/w"),
            },
            Ports {
                etcd_client: 1001,
                etcd_peer: 1002,
                etcd_metrics: 1003,
                apiserver: 1004,
                controller_manager: 1005,
                scheduler: 1006,
            },
        )
    }

    fn value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
        let prefix = format!("--{name}=");
        args.iter().find_map(|a| a.strip_prefix(&prefix))
    }

    #[test]
    fn every_listener_is_on_loopback_and_uses_its_own_port() {
        let (layout, ports) = fixture();
        let etcd = etcd(&layout, &ports, "e");
        let api = apiserver(&layout, &ports, LOOPBACK);
        let kcm = controller_manager(&layout, &ports, "c");
        let sched = scheduler(&layout, &ports);
        let cases = [
            (value(&etcd, "listen-client-urls"), "https://127.0.0.1:1001"),
            (value(&etcd, "listen-peer-urls"), "https://127.0.0.1:1002"),
            (value(&etcd, "listen-metrics-urls"), "http://127.0.0.1:1003"),
            (value(&api, "bind-address"), "127.0.0.1"),
            (value(&api, "secure-port"), "1004"),
            (value(&api, "etcd-servers"), "https://127.0.0.1:1001"),
            (value(&kcm, "bind-address"), "127.0.0.1"),
            (value(&kcm, "secure-port"), "1005"),
            (value(&sched, "bind-address"), "127.0.0.1"),
            (value(&sched, "secure-port"), "1006"),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got, Some(want), "case {i}");
        }
    }

    #[test]
    fn etcd_requires_client_certificates_from_its_own_ca() {
        let (layout, ports) = fixture();
        let args = etcd(&layout, &ports, "e");
        assert_eq!(value(&args, "client-cert-auth"), Some("true"));
        assert_eq!(value(&args, "peer-client-cert-auth"), Some("true"));
        assert_eq!(value(&args, "trusted-ca-file"), Some("/w/pki/etcd/ca.crt"));
        let api = apiserver(&layout, &ports, LOOPBACK);
        assert_eq!(value(&api, "etcd-cafile"), Some("/w/pki/etcd/ca.crt"));
        assert_eq!(
            value(&api, "etcd-certfile"),
            Some("/w/pki/apiserver-etcd-client.crt")
        );
    }

    #[test]
    fn service_account_tokens_are_signed_and_verified_with_one_key_pair() {
        let (layout, ports) = fixture();
        let api = apiserver(&layout, &ports, LOOPBACK);
        let kcm = controller_manager(&layout, &ports, "c");
        assert_eq!(
            value(&api, "service-account-signing-key-file"),
            value(&kcm, "service-account-private-key-file")
        );
        assert_eq!(
            value(&api, "service-account-key-file"),
            Some("/w/pki/sa.pub")
        );
        assert_eq!(value(&api, "authorization-mode"), Some("Node,RBAC"));
    }

    /// OIDC discovery (`/.well-known/openid-configuration`) names the keys
    /// under the issuer, a name the apiserver's certificate carries, not
    /// the address the apiserver advertises.
    #[test]
    fn token_keys_are_published_under_the_issuer() {
        let (layout, ports) = fixture();
        let api = apiserver(&layout, &ports, IpAddr::from([172, 30, 0, 1]));
        let issuer = "https://kubernetes.default.svc.cluster.local";
        assert_eq!(value(&api, "service-account-issuer"), Some(issuer));
        assert_eq!(
            value(&api, "service-account-jwks-uri"),
            Some(format!("{issuer}/openid/v1/jwks").as_str())
        );
    }

    #[test]
    fn a_reachable_address_is_advertised_and_reconciled() {
        let (layout, ports) = fixture();
        let loopback = apiserver(&layout, &ports, LOOPBACK);
        assert_eq!(value(&loopback, "endpoint-reconciler-type"), Some("none"));
        let bridge = apiserver(&layout, &ports, IpAddr::from([172, 30, 0, 1]));
        assert_eq!(value(&bridge, "bind-address"), Some("172.30.0.1"));
        assert_eq!(value(&bridge, "advertise-address"), Some("172.30.0.1"));
        assert_eq!(value(&bridge, "endpoint-reconciler-type"), Some("lease"));
    }
}
