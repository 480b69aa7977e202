//! The syncer's settings, as the supervisor writes them on the syncer's
//! command line and the syncer reads them back: one type for both ends
//! ([`SyncerArgs::to_args`] and clap's parser), so a setting cannot be
//! written in a form the other end does not read (`syncer_args` tests the
//! round trip).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::cidr::Cidr;
use crate::{CLUSTER_DOMAIN, LogFormat, POOL_TAINT_KEY, PodLabels, PodScheduler, PodSecurityLevel};

/// `HOST:PORT`, a host name or an address (IPv6 in brackets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for HostPort {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not HOST:PORT"))?;
        let port = port
            .parse()
            .map_err(|_| format!("{text:?} does not end in a port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{text:?} names no host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `NAMESPACE/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for NamespacedName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => Ok(Self {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }),
            _ => Err(format!("{text:?} is not NAMESPACE/NAME")),
        }
    }
}

impl std::fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `KEY=VALUE`, a label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for Label {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let pairs = crate::label_pairs::parse(&[text.to_owned()]).map_err(|e| e.to_string())?;
        let (key, value) = pairs
            .into_iter()
            .next()
            .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
        Ok(Self { key, value })
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// Where the syncer serves `/healthz`, `/readyz` and `/metrics` unless told.
pub const DEFAULT_HEALTH_ADDRESS: &str = "0.0.0.0:8080";

/// Mirrors a tenant cluster's workloads onto the host and their status
/// back: the settings of one tenant's syncer.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct SyncerArgs {
    /// The tenant cluster's kubeconfig.
    #[arg(long, env = "VNEST_TENANT_KUBECONFIG")]
    pub tenant_kubeconfig: PathBuf,
    /// The tenant's workloads namespace on the host.
    #[arg(long)]
    pub host_namespace: String,
    /// A label of the pool's nodes, `key=value`; repeat for each.
    #[arg(long = "pool-selector", value_name = "KEY=VALUE", required = true)]
    pub pool_selector: Vec<Label>,
    /// The taint key pools are fenced with.
    #[arg(long, default_value = POOL_TAINT_KEY)]
    pub pool_taint_key: String,
    /// The RuntimeClass forced on every pod.
    #[arg(long)]
    pub runtime_class: Option<String>,
    /// The tenant's Pod Security level.
    #[arg(long, default_value = "restricted")]
    pub pod_security: PodSecurityLevel,
    /// The tenant apiserver as host pods reach it, `HOST:PORT`.
    #[arg(long)]
    pub apiserver_address: HostPort,
    #[arg(long, default_value = CLUSTER_DOMAIN)]
    pub cluster_domain: String,
    /// The tenant Service pods use for DNS, `NAMESPACE/NAME`.
    #[arg(long, default_value = "kube-system/kube-dns")]
    pub dns_service: NamespacedName,
    /// The kubelet proxy's address as the tenant apiserver dials it,
    /// `HOST:PORT`; the tenant's Nodes advertise it as their kubelet.
    #[arg(long, requires_all = ["kubelet_proxy_listen", "kubelet_proxy_pki"])]
    pub kubelet_proxy_host: Option<HostPort>,
    /// Where the kubelet proxy listens.
    #[arg(long, requires = "kubelet_proxy_host")]
    pub kubelet_proxy_listen: Option<SocketAddr>,
    /// The directory with `ca.crt` (the tenant CA) and the proxy's serving
    /// pair `kubelet-proxy.crt` / `kubelet-proxy.key`.
    #[arg(long, requires = "kubelet_proxy_host")]
    pub kubelet_proxy_pki: Option<PathBuf>,
    #[arg(long, default_value = "text")]
    pub log_format: LogFormat,
    /// The tenant's control-plane namespace on the host, where its
    /// apiserver runs.
    #[arg(long)]
    pub control_plane_namespace: String,
    /// A label of the tenant's apiserver pods, `key=value`; repeat for each.
    #[arg(long = "apiserver-pod-label", value_name = "KEY=VALUE")]
    pub apiserver_pod_label: Vec<Label>,
    /// A range tenant traffic must never reach (an address or CIDR): the
    /// host's nodes, apiserver, DNS and pod subnets; repeat for each. The
    /// tenant's own NetworkPolicies are kept out of them.
    #[arg(long = "host-range", value_name = "CIDR")]
    pub host_range: Vec<Cidr>,
    /// One of the host's pod subnets (also a `--host-range`); repeat.
    #[arg(long = "pod-range", value_name = "CIDR")]
    pub pod_range: Vec<Cidr>,
    /// How tenant pod labels appear on host pods: `prefixed` (under
    /// vnest's domain) or `verbatim`.
    #[arg(long, default_value = "prefixed")]
    pub pod_labels: PodLabels,
    /// Who binds tenant pods to nodes: `host` (the host's scheduler; the
    /// syncer binds the tenant pod where the host pod landed) or `tenant`
    /// (the tenant's own scheduler; the syncer makes a host pod only once
    /// the tenant pod is bound, and on that node).
    #[arg(long, default_value = "host")]
    pub scheduler: PodScheduler,
    /// A host name pattern the tenant's Ingresses may claim (see
    /// `vnest_api::ingress_hosts`); repeat for each.
    #[arg(long = "ingress-host", value_name = "PATTERN")]
    pub ingress_host: Vec<String>,
    /// An IngressClass the tenant's Ingresses may name; repeat for each.
    #[arg(long = "ingress-class", value_name = "NAME")]
    pub ingress_class: Vec<String>,
    /// Where `/healthz` and `/readyz` are served.
    #[arg(long, default_value = DEFAULT_HEALTH_ADDRESS)]
    pub health_address: SocketAddr,
    /// vnest's image: host pods whose `/etc/hosts` the host kubelet would
    /// fill with a host namespace rewrite it with the syncer from this
    /// image (`vnest_syncer::etc_hosts`). Without it they keep the
    /// kubelet's file.
    #[arg(long)]
    pub etc_hosts_image: Option<String>,
}

impl SyncerArgs {
    /// The command line (without the program name) that reads back as
    /// these settings.
    pub fn to_args(&self) -> Vec<String> {
        let flag = |name: &str, value: &dyn std::fmt::Display| format!("--{name}={value}");
        let mut args = vec![
            flag("tenant-kubeconfig", &self.tenant_kubeconfig.display()),
            flag("host-namespace", &self.host_namespace),
            flag("pool-taint-key", &self.pool_taint_key),
            flag("pod-security", &self.pod_security.as_str()),
            flag("apiserver-address", &self.apiserver_address),
            flag("cluster-domain", &self.cluster_domain),
            flag("dns-service", &self.dns_service),
            flag("log-format", &self.log_format.as_str()),
            flag("control-plane-namespace", &self.control_plane_namespace),
            flag("pod-labels", &self.pod_labels.as_str()),
            flag("scheduler", &self.scheduler.as_str()),
            flag("health-address", &self.health_address),
        ];
        args.extend(self.pool_selector.iter().map(|l| flag("pool-selector", l)));
        args.extend(self.runtime_class.iter().map(|c| flag("runtime-class", c)));
        args.extend(
            self.etc_hosts_image
                .iter()
                .map(|i| flag("etc-hosts-image", i)),
        );
        args.extend(
            self.kubelet_proxy_host
                .iter()
                .map(|h| flag("kubelet-proxy-host", h)),
        );
        args.extend(
            self.kubelet_proxy_listen
                .iter()
                .map(|a| flag("kubelet-proxy-listen", a)),
        );
        args.extend(
            self.kubelet_proxy_pki
                .iter()
                .map(|p| flag("kubelet-proxy-pki", &p.display())),
        );
        args.extend(
            self.apiserver_pod_label
                .iter()
                .map(|l| flag("apiserver-pod-label", l)),
        );
        args.extend(self.host_range.iter().map(|r| flag("host-range", r)));
        args.extend(self.pod_range.iter().map(|r| flag("pod-range", r)));
        args.extend(self.ingress_host.iter().map(|h| flag("ingress-host", h)));
        args.extend(self.ingress_class.iter().map(|c| flag("ingress-class", c)));
        args
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Command {
        #[command(flatten)]
        args: SyncerArgs,
    }

    fn parse(args: &[String]) -> Result<SyncerArgs, clap::Error> {
        Command::try_parse_from(
            std::iter::once("vnest-syncer".to_owned()).chain(args.iter().cloned()),
        )
        .map(|c| c.args)
    }

    fn every_setting() -> SyncerArgs {
        SyncerArgs {
            tenant_kubeconfig: "/etc/vnest/tenant/kubeconfig".into(),
            host_namespace: "vnest-t-a-0123456789-wl".to_owned(),
            pool_selector: vec![
                "vnest.dev/pool=a".parse().unwrap(),
                "zone=".parse().unwrap(),
            ],
            pool_taint_key: "example.com/pool".to_owned(),
            runtime_class: Some("gvisor".to_owned()),
            pod_security: PodSecurityLevel::Baseline,
            apiserver_address: "10.96.1.2:443".parse().unwrap(),
            cluster_domain: "tenant.example".to_owned(),
            dns_service: "kube-system/dns".parse().unwrap(),
            kubelet_proxy_host: Some("[fd00::1]:10250".parse().unwrap()),
            kubelet_proxy_listen: Some("0.0.0.0:10250".parse().unwrap()),
            kubelet_proxy_pki: Some("/etc/vnest/pki".into()),
            log_format: LogFormat::Json,
            control_plane_namespace: "vnest-t-a-0123456789-cp".to_owned(),
            apiserver_pod_label: vec!["vnest.dev/component=apiserver".parse().unwrap()],
            host_range: vec![
                "10.244.1.0/24".parse().unwrap(),
                "172.30.0.1".parse().unwrap(),
            ],
            pod_range: vec!["10.244.1.0/24".parse().unwrap()],
            pod_labels: PodLabels::Verbatim,
            scheduler: PodScheduler::Tenant,
            ingress_host: vec!["*.shop.example.com".to_owned()],
            ingress_class: vec!["public".to_owned()],
            health_address: "127.0.0.1:9090".parse().unwrap(),
            etc_hosts_image: Some("registry.example/vnest:1.2.3".to_owned()),
        }
    }

    #[test]
    fn what_the_supervisor_writes_the_syncer_reads_back() {
        let written = every_setting();
        assert_eq!(parse(&written.to_args()).unwrap(), written);
        // And with what is optional left out.
        let sparse = SyncerArgs {
            runtime_class: None,
            kubelet_proxy_host: None,
            kubelet_proxy_listen: None,
            kubelet_proxy_pki: None,
            apiserver_pod_label: Vec::new(),
            host_range: Vec::new(),
            pod_range: Vec::new(),
            ingress_host: Vec::new(),
            ingress_class: Vec::new(),
            etc_hosts_image: None,
            ..every_setting()
        };
        assert_eq!(parse(&sparse.to_args()).unwrap(), sparse);
    }

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
        assert!(parse(&base).is_ok());
        let with = |extra: &str| [&base[..], &[extra.to_owned()]].concat();
        assert!(parse(&with("--host-range=10.244.0.0/16")).is_ok());
        assert!(parse(&with("--pod-range=fd00::/64")).is_ok());
        let refused = parse(&with("--host-range=10.244.0.0/33"))
            .unwrap_err()
            .to_string();
        assert!(refused.contains("prefix length"), "{refused}");
        let missing = parse(&base[..4]).unwrap_err().to_string();
        assert!(missing.contains("--control-plane-namespace"), "{missing}");
    }

    #[test]
    fn bad_settings_are_refused_with_what_was_expected() {
        let mut args = every_setting().to_args();
        args.retain(|a| !a.starts_with("--apiserver-address"));
        args.push("--apiserver-address=10.96.1.2".to_owned());
        assert!(parse(&args).unwrap_err().to_string().contains("HOST:PORT"));
        let mut args = every_setting().to_args();
        args.retain(|a| !a.starts_with("--dns-service"));
        args.push("--dns-service=kube-dns".to_owned());
        assert!(
            parse(&args)
                .unwrap_err()
                .to_string()
                .contains("NAMESPACE/NAME")
        );
        let mut args = every_setting().to_args();
        args.retain(|a| !a.starts_with("--pool-selector"));
        assert!(parse(&args).is_err(), "a pool selector is required");
    }
}
