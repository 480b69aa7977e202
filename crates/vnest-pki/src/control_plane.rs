//! The full certificate set of one control plane, laid out as kubeadm does.

use std::net::IpAddr;

use rcgen::KeyPair;
use time::OffsetDateTime;

use crate::authority::{CertAndKey, CertificateAuthority, LeafSpec, Usage, Validity};
use crate::error::{Error, Result};

/// The user names (common names) and groups the components authenticate as.
/// They match kubeadm so that the apiserver's default RBAC bootstrap policy
/// grants each component exactly the rights upstream intends.
pub mod identity {
    pub const ADMIN_USER: &str = "kubernetes-admin";
    pub const SUPERUSER_GROUP: &str = "system:masters";
    pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
    pub const SCHEDULER_USER: &str = "system:kube-scheduler";
    pub const APISERVER_ETCD_CLIENT_USER: &str = "kube-apiserver-etcd-client";
    pub const APISERVER_KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
    pub const FRONT_PROXY_CLIENT_USER: &str = "front-proxy-client";
    /// The apiserver calling the syncer's admission webhook: a certificate
    /// of the webhook client CA, which no tenant component holds.
    pub const APISERVER_WEBHOOK_CLIENT_USER: &str = "vnest:apiserver-webhook-client";
}

/// The names a control plane is reached under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPlaneSpec {
    /// Used in CA common names and as the kubeconfig cluster name.
    pub cluster_name: String,
    /// The cluster DNS domain, `cluster.local` by default.
    pub cluster_domain: String,
    /// The ClusterIP of the `kubernetes` Service in the `default` namespace
    /// (the first address of the service CIDR); in-cluster clients dial it.
    pub kubernetes_service_ip: IpAddr,
    /// More DNS names or IPs the apiserver is reached under, such as the host
    /// Service that exposes a tenant's apiserver, a node port address or a
    /// load balancer name.
    pub apiserver_names: Vec<String>,
    /// More DNS names or IPs of the etcd members, such as the headless
    /// Service's pod names in a tenant namespace.
    pub etcd_names: Vec<String>,
    /// The names of the proxy that stands in for the kubelets (a tenant's
    /// syncer serves `logs`, `exec` and `port-forward` for its pods there);
    /// the apiserver verifies it against the cluster CA.
    pub kubelet_proxy_names: Vec<String>,
}

impl ControlPlaneSpec {
    /// A spec with the defaults every Kubernetes distribution uses.
    pub fn new(cluster_name: impl Into<String>) -> Self {
        Self {
            cluster_name: cluster_name.into(),
            cluster_domain: "cluster.local".to_owned(),
            kubernetes_service_ip: IpAddr::from([10, 96, 0, 1]),
            apiserver_names: Vec::new(),
            etcd_names: Vec::new(),
            kubelet_proxy_names: Vec::new(),
        }
    }

    /// Every name the apiserver's serving certificate must carry.
    pub fn apiserver_subject_alt_names(&self) -> Vec<String> {
        let mut names = vec![
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            format!("kubernetes.default.svc.{}", self.cluster_domain),
            "localhost".to_owned(),
            self.kubernetes_service_ip.to_string(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        names.extend(self.apiserver_names.iter().cloned());
        dedup_keep_order(names)
    }

    /// Every name the etcd serving and peer certificates must carry.
    pub fn etcd_subject_alt_names(&self) -> Vec<String> {
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        names.extend(self.etcd_names.iter().cloned());
        dedup_keep_order(names)
    }
}

fn dedup_keep_order(names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(n.clone()))
        .collect()
}

/// The key pair service-account tokens are signed with (by the apiserver's
/// TokenRequest API and the controller-manager's token controller) and
/// verified with.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccountKeyPair {
    pub private_key_pem: String,
    pub public_key_pem: String,
}

impl std::fmt::Debug for ServiceAccountKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKeyPair")
            .field("public_key_pem", &self.public_key_pem)
            .field("private_key_pem", &"<redacted>")
            .finish()
    }
}

impl ServiceAccountKeyPair {
    pub fn generate() -> Result<Self> {
        let key = KeyPair::generate().map_err(Error::KeyGeneration)?;
        Ok(Self {
            private_key_pem: key.serialize_pem(),
            public_key_pem: key.public_key_pem(),
        })
    }
}

/// The webhook client CA's files, and its one leaf's.
pub const WEBHOOK_CLIENT_CA: (&str, &str) = ("webhook-client-ca.crt", "webhook-client-ca.key");
pub const WEBHOOK_CLIENT: (&str, &str) = (
    "apiserver-webhook-client.crt",
    "apiserver-webhook-client.key",
);

struct Authorities {
    ca: CertificateAuthority,
    etcd_ca: CertificateAuthority,
    front_proxy_ca: CertificateAuthority,
    webhook_client_ca: CertificateAuthority,
}

fn webhook_client_ca(cluster_name: &str) -> Result<CertificateAuthority> {
    CertificateAuthority::generate(
        &format!("{cluster_name}-webhook-client-ca"),
        Validity::starting_now(Validity::CA_LIFETIME),
    )
}

/// The cluster name a stored cluster CA was made for (its common name
/// without `-ca`).
fn cluster_name(ca_pem: &str) -> String {
    crate::authority::common_name(ca_pem)
        .map(|cn| cn.strip_suffix("-ca").unwrap_or(&cn).to_owned())
        .unwrap_or_else(|| "vnest".to_owned())
}

/// Every certificate and key one control plane needs.
#[derive(Debug)]
pub struct ControlPlanePki {
    pub ca: CertificateAuthority,
    pub etcd_ca: CertificateAuthority,
    pub front_proxy_ca: CertificateAuthority,
    /// The authority of the one client the syncer's admission webhook
    /// accepts (the apiserver): unlike the cluster CA, the controller-manager
    /// does not hold it, so no CertificateSigningRequest a tenant makes can
    /// yield one of its certificates.
    pub webhook_client_ca: CertificateAuthority,
    pub service_account: ServiceAccountKeyPair,
    pub apiserver: CertAndKey,
    pub apiserver_etcd_client: CertAndKey,
    pub apiserver_kubelet_client: CertAndKey,
    /// The serving certificate of the kubelet proxy (see
    /// [`ControlPlaneSpec::kubelet_proxy_names`]).
    pub kubelet_proxy: CertAndKey,
    pub front_proxy_client: CertAndKey,
    pub apiserver_webhook_client: CertAndKey,
    pub etcd_server: CertAndKey,
    pub etcd_peer: CertAndKey,
    pub controller_manager: CertAndKey,
    pub scheduler: CertAndKey,
    pub admin: CertAndKey,
}

fn pair<'a>(crt: &'static str, key: &'static str, ck: &'a CertAndKey) -> [PkiFile<'a>; 2] {
    [
        PkiFile {
            path: crt,
            contents: &ck.cert_pem,
            secret: false,
        },
        PkiFile {
            path: key,
            contents: &ck.key_pem,
            secret: true,
        },
    ]
}

/// One file of the kubeadm-style layout, e.g. `etcd/ca.crt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiFile<'a> {
    pub path: &'static str,
    pub contents: &'a str,
    /// Private keys must not be readable by anyone but their owner.
    pub secret: bool,
}

impl ControlPlanePki {
    /// Issues the whole set with fresh keys.
    pub fn generate(spec: &ControlPlaneSpec) -> Result<Self> {
        let ca_validity = Validity::starting_now(Validity::CA_LIFETIME);
        let ca = CertificateAuthority::generate(&format!("{}-ca", spec.cluster_name), ca_validity)?;
        let etcd_ca =
            CertificateAuthority::generate(&format!("{}-etcd-ca", spec.cluster_name), ca_validity)?;
        let front_proxy_ca = CertificateAuthority::generate(
            &format!("{}-front-proxy-ca", spec.cluster_name),
            ca_validity,
        )?;
        Self::issue_leaves(
            Authorities {
                ca,
                etcd_ca,
                front_proxy_ca,
                webhook_client_ca: webhook_client_ca(&spec.cluster_name)?,
            },
            ServiceAccountKeyPair::generate()?,
            spec,
        )
    }

    /// The same CAs and service-account key, every leaf certificate issued
    /// anew (fresh keys, a year of validity): what renewal before expiry
    /// does, so clients that trust the CAs keep working.
    pub fn renew_leaves(self, spec: &ControlPlaneSpec) -> Result<Self> {
        Self::issue_leaves(
            Authorities {
                ca: self.ca,
                etcd_ca: self.etcd_ca,
                front_proxy_ca: self.front_proxy_ca,
                webhook_client_ca: self.webhook_client_ca,
            },
            self.service_account,
            spec,
        )
    }

    fn issue_leaves(
        authorities: Authorities,
        service_account: ServiceAccountKeyPair,
        spec: &ControlPlaneSpec,
    ) -> Result<Self> {
        use identity::*;
        let Authorities {
            ca,
            etcd_ca,
            front_proxy_ca,
            webhook_client_ca,
        } = authorities;
        let etcd_names = spec.etcd_subject_alt_names();
        Ok(Self {
            apiserver: ca.issue(&LeafSpec::server(
                "kube-apiserver",
                Usage::Server,
                spec.apiserver_subject_alt_names(),
            ))?,
            apiserver_kubelet_client: ca.issue(&LeafSpec::client(
                APISERVER_KUBELET_CLIENT_USER,
                Some(SUPERUSER_GROUP),
            ))?,
            kubelet_proxy: ca.issue(&LeafSpec::server(
                "kubelet-proxy",
                Usage::Server,
                dedup_keep_order(
                    ["localhost".to_owned()]
                        .into_iter()
                        .chain(spec.kubelet_proxy_names.iter().cloned())
                        .collect(),
                ),
            ))?,
            controller_manager: ca.issue(&LeafSpec::client(CONTROLLER_MANAGER_USER, None))?,
            scheduler: ca.issue(&LeafSpec::client(SCHEDULER_USER, None))?,
            admin: ca.issue(&LeafSpec::client(ADMIN_USER, Some(SUPERUSER_GROUP)))?,
            apiserver_etcd_client: etcd_ca
                .issue(&LeafSpec::client(APISERVER_ETCD_CLIENT_USER, None))?,
            etcd_server: etcd_ca.issue(&LeafSpec::server(
                "etcd-server",
                Usage::ServerAndClient,
                etcd_names.clone(),
            ))?,
            etcd_peer: etcd_ca.issue(&LeafSpec::server(
                "etcd-peer",
                Usage::ServerAndClient,
                etcd_names,
            ))?,
            front_proxy_client: front_proxy_ca
                .issue(&LeafSpec::client(FRONT_PROXY_CLIENT_USER, None))?,
            apiserver_webhook_client: webhook_client_ca
                .issue(&LeafSpec::client(APISERVER_WEBHOOK_CLIENT_USER, None))?,
            service_account,
            ca,
            etcd_ca,
            front_proxy_ca,
            webhook_client_ca,
        })
    }

    /// Loads a set stored earlier under the names [`files`](Self::files)
    /// gives (from a directory, or a Secret's data): `file` returns a file's
    /// contents by its path.
    pub fn from_files(file: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |path: &str| {
            file(path).ok_or_else(|| Error::MissingFile {
                path: path.to_owned(),
            })
        };
        let pair = |crt: &str, key: &str| -> Result<CertAndKey> {
            Ok(CertAndKey {
                cert_pem: get(crt)?,
                key_pem: get(key)?,
            })
        };
        let authority = |crt: &str, key: &str| -> Result<CertificateAuthority> {
            CertificateAuthority::from_pem(&get(crt)?, &get(key)?)
        };
        // A set stored before the webhook client CA existed gets one: only
        // the syncer trusts it, so a new one breaks nobody.
        let (webhook_client_ca, apiserver_webhook_client) =
            match authority(WEBHOOK_CLIENT_CA.0, WEBHOOK_CLIENT_CA.1) {
                Ok(ca) => {
                    let leaf = pair(WEBHOOK_CLIENT.0, WEBHOOK_CLIENT.1)?;
                    (ca, leaf)
                }
                Err(Error::MissingFile { .. }) => {
                    let ca = webhook_client_ca(&cluster_name(&get("ca.crt")?))?;
                    let leaf = ca.issue(&LeafSpec::client(
                        identity::APISERVER_WEBHOOK_CLIENT_USER,
                        None,
                    ))?;
                    (ca, leaf)
                }
                Err(other) => return Err(other),
            };
        Ok(Self {
            ca: authority("ca.crt", "ca.key")?,
            etcd_ca: authority("etcd/ca.crt", "etcd/ca.key")?,
            front_proxy_ca: authority("front-proxy-ca.crt", "front-proxy-ca.key")?,
            webhook_client_ca,
            apiserver_webhook_client,
            service_account: ServiceAccountKeyPair {
                private_key_pem: get("sa.key")?,
                public_key_pem: get("sa.pub")?,
            },
            apiserver: pair("apiserver.crt", "apiserver.key")?,
            apiserver_etcd_client: pair("apiserver-etcd-client.crt", "apiserver-etcd-client.key")?,
            apiserver_kubelet_client: pair(
                "apiserver-kubelet-client.crt",
                "apiserver-kubelet-client.key",
            )?,
            kubelet_proxy: pair("kubelet-proxy.crt", "kubelet-proxy.key")?,
            front_proxy_client: pair("front-proxy-client.crt", "front-proxy-client.key")?,
            etcd_server: pair("etcd/server.crt", "etcd/server.key")?,
            etcd_peer: pair("etcd/peer.crt", "etcd/peer.key")?,
            controller_manager: pair("controller-manager.crt", "controller-manager.key")?,
            scheduler: pair("scheduler.crt", "scheduler.key")?,
            admin: pair("admin.crt", "admin.key")?,
        })
    }

    /// The leaf certificates (by file name) that expire before `deadline`;
    /// renew them with [`renew_leaves`](Self::renew_leaves) when any do.
    pub fn leaves_expiring_before(&self, deadline: OffsetDateTime) -> Result<Vec<&'static str>> {
        let cas = [
            "ca.crt",
            "etcd/ca.crt",
            "front-proxy-ca.crt",
            WEBHOOK_CLIENT_CA.0,
        ];
        let mut expiring = Vec::new();
        for file in self.files() {
            let leaf = file.path.ends_with(".crt") && !cas.contains(&file.path);
            if leaf && crate::authority::not_after(file.path, file.contents)? < deadline {
                expiring.push(file.path);
            }
        }
        Ok(expiring)
    }

    /// The set as files, under the names kubeadm gives them in
    /// `/etc/kubernetes/pki`, so operators find what they expect.
    pub fn files(&self) -> Vec<PkiFile<'_>> {
        let mut files = Vec::new();
        files.extend(pair("ca.crt", "ca.key", self.ca.cert()));
        files.extend(pair("etcd/ca.crt", "etcd/ca.key", self.etcd_ca.cert()));
        files.extend(pair(
            "front-proxy-ca.crt",
            "front-proxy-ca.key",
            self.front_proxy_ca.cert(),
        ));
        files.extend(pair(
            WEBHOOK_CLIENT_CA.0,
            WEBHOOK_CLIENT_CA.1,
            self.webhook_client_ca.cert(),
        ));
        files.extend(pair("apiserver.crt", "apiserver.key", &self.apiserver));
        files.extend(pair(
            "apiserver-etcd-client.crt",
            "apiserver-etcd-client.key",
            &self.apiserver_etcd_client,
        ));
        files.extend(pair(
            "apiserver-kubelet-client.crt",
            "apiserver-kubelet-client.key",
            &self.apiserver_kubelet_client,
        ));
        files.extend(pair(
            "kubelet-proxy.crt",
            "kubelet-proxy.key",
            &self.kubelet_proxy,
        ));
        files.extend(pair(
            "front-proxy-client.crt",
            "front-proxy-client.key",
            &self.front_proxy_client,
        ));
        files.extend(pair(
            WEBHOOK_CLIENT.0,
            WEBHOOK_CLIENT.1,
            &self.apiserver_webhook_client,
        ));
        files.extend(pair(
            "etcd/server.crt",
            "etcd/server.key",
            &self.etcd_server,
        ));
        files.extend(pair("etcd/peer.crt", "etcd/peer.key", &self.etcd_peer));
        files.extend(pair(
            "controller-manager.crt",
            "controller-manager.key",
            &self.controller_manager,
        ));
        files.extend(pair("scheduler.crt", "scheduler.key", &self.scheduler));
        files.extend(pair("admin.crt", "admin.key", &self.admin));
        files.push(PkiFile {
            path: "sa.key",
            contents: &self.service_account.private_key_pem,
            secret: true,
        });
        files.push(PkiFile {
            path: "sa.pub",
            contents: &self.service_account.public_key_pem,
            secret: false,
        });
        files
    }
}
