//! The configuration files of one node: pure functions of the node and where
//! its files live, so they can be read and tested without starting anything.

use std::path::{Path, PathBuf};

use crate::topology::{CLUSTER_CIDR, CLUSTER_DOMAIN, DNS_SERVICE_IP, NodeSpec};

/// Where one node keeps its files.
#[derive(Clone, Debug)]
pub struct NodePaths {
    pub dir: PathBuf,
}

impl NodePaths {
    pub fn new(base: &Path, node: &NodeSpec) -> Self {
        Self {
            dir: base.join(node.name()),
        }
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }
    /// containerd's per-registry host configuration (`hosts.toml` files,
    /// read at each pull): empty unless a mirror is set
    /// ([`crate::host::mirror_registry`]).
    pub fn registry_hosts(&self) -> PathBuf {
        self.dir.join("certs.d")
    }
    pub fn log(&self, process: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{process}.log"))
    }
}

/// containerd 2 (the pinned build of `tools/upstream/containerd`),
/// configuration version 4, every path and socket inside the node's
/// directory so that several nodes share one machine.
///
/// - `imports = []`: nothing of the machine's `/etc/containerd` is read.
/// - The ttrpc socket is named: its default is one machine-wide path.
/// - NRI is off: its default socket is one machine-wide path too, and no
///   NRI plugin runs here.
/// - `runtime_path`: the runc shim built with this containerd, never one
///   found on the machine's PATH.
/// - `restrict_oom_score_adj`: sandboxes here lack CAP_SYS_RESOURCE, and
///   runc fails to start a pod sandbox whose `oom_score_adj` (-998 for the
///   pause container) lies below containerd's own; restricting keeps it at
///   or above.
pub fn containerd(paths: &NodePaths, sandbox_image: &str, runc_shim: &Path) -> String {
    let d = |name: &str| paths.file(name).display().to_string();
    format!(
        r#"version = 4
root = "{root}"
state = "{state}"
imports = []

[plugins.'io.containerd.server.v1.grpc']
  address = "{socket}"
[plugins.'io.containerd.server.v1.ttrpc']
  address = "{socket}.ttrpc"
[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{sandbox_image}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{registry_hosts}"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{cni}"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = "{runc_shim}"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc_root}"
"#,
        root = d("containerd-root"),
        state = d("containerd-state"),
        socket = paths.containerd_socket().display(),
        cni = d("cni"),
        registry_hosts = paths.registry_hosts().display(),
        runc_shim = runc_shim.display(),
        runc_root = d("runc"),
    )
}

/// The bridge CNI plugin with host-local IPAM over the node's pod subnet.
/// The IPAM keeps its reservations in `ipam_dir` (inside the host's
/// directory), not the machine-wide `/var/lib/cni/networks`: sandboxes torn
/// down without a CNI DEL would otherwise leak addresses from one host to
/// the next until the subnet is exhausted.
pub fn cni(node: &NodeSpec, ipam_dir: &Path) -> String {
    format!(
        r#"{{
  "cniVersion": "0.4.0",
  "name": "vnest",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{bridge}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "dataDir": "{ipam_dir}",
        "ranges": [[{{ "subnet": "{subnet}" }}]],
        "routes": [{{ "dst": "0.0.0.0/0" }}]
      }}
    }},
    {{ "type": "portmap", "capabilities": {{ "portMappings": true }} }}
  ]
}}
"#,
        bridge = node.pod_bridge(),
        subnet = node.pod_cidr(),
        ipam_dir = ipam_dir.display(),
    )
}

/// The kubelet's configuration.
///
/// - `failCgroupV1: false`: these machines mount cgroup v1.
/// - `cgroupRoot`: each node's pods live under their own cgroup.
/// - `podPidsLimit`: the node's per-pod process limit (fork bombs).
/// - Eviction thresholds are low and absolute: several nodes share one disk
///   and machine (a build machine's disk is often mostly full), and a test
///   must not see pods evicted because the disk is shared.
pub fn kubelet(node: &NodeSpec, paths: &NodePaths, ca_file: &Path) -> String {
    let d = |name: &str| paths.file(name).display().to_string();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
containerRuntimeEndpoint: unix://{socket}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
clusterDNS: [{dns}]
clusterDomain: {domain}
address: {ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: {serving_cert}
tlsPrivateKeyFile: {serving_key}
podLogsDir: {pod_logs}
resolvConf: /etc/resolv.conf
failSwapOn: false
rotateCertificates: false
serverTLSBootstrap: false
evictionHard:
  memory.available: 100Mi
  nodefs.available: 512Mi
  imagefs.available: 512Mi
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
podPidsLimit: {pod_pids_limit}
"#,
        cgroup_root = node.cgroup_root(),
        socket = paths.containerd_socket().display(),
        ca = ca_file.display(),
        dns = DNS_SERVICE_IP,
        domain = CLUSTER_DOMAIN,
        ip = node.ip(),
        serving_cert = d("kubelet-serving.crt"),
        serving_key = d("kubelet-serving.key"),
        pod_logs = d("pod-logs"),
        pod_pids_limit = node.pod_pids_limit,
    )
}

/// kube-proxy in iptables mode, inside the node's network namespace.
/// The conntrack sysctls are left alone (zero values): they are global or
/// not writable from here, and the defaults serve a test host.
pub fn kube_proxy(node: &NodeSpec, kubeconfig: &Path) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {name}
bindAddress: 0.0.0.0
clusterCIDR: {cluster_cidr}
mode: iptables
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
        kubeconfig = kubeconfig.display(),
        name = node.name(),
        cluster_cidr = CLUSTER_CIDR,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_has_its_own_runtime_state_and_subnet() {
        let base = Path::new("/d");
        let (a, b) = (NodeSpec::new(1), NodeSpec::new(2));
        let (pa, pb) = (NodePaths::new(base, &a), NodePaths::new(base, &b));
        let shim = Path::new("/bin/containerd-shim-runc-v2");
        let (ca, cb) = (containerd(&pa, "p:1", shim), containerd(&pb, "p:1", shim));
        for (config, own) in [(&ca, &pa.dir), (&cb, &pb.dir)] {
            let own = own.display().to_string();
            for key in [
                "root = ",
                "state = ",
                "address = ",
                "Root = ",
                "conf_dir = ",
            ] {
                let lines: Vec<&str> = config
                    .lines()
                    .filter(|l| l.trim_start().starts_with(key))
                    .collect();
                assert!(!lines.is_empty(), "{key}");
                for line in lines {
                    assert!(line.contains(&own), "{line} is not in {own}");
                }
            }
        }
        assert_eq!(ca.matches("address = ").count(), 2, "grpc and ttrpc");
        assert!(ca.contains("imports = []"));
        assert!(
            ca.contains("disable = true"),
            "NRI's socket is machine-wide"
        );
        assert!(ca.contains(r#"runtime_path = "/bin/containerd-shim-runc-v2""#));
        assert!(ca.contains("restrict_oom_score_adj = true"));
        let ipam = Path::new("/h/node1/ipam");
        assert!(cni(&a, ipam).contains(r#""subnet": "10.244.1.0/24""#));
        assert!(cni(&b, ipam).contains(r#""subnet": "10.244.2.0/24""#));
        assert!(cni(&a, ipam).contains(r#""dataDir": "/h/node1/ipam""#));
    }

    #[test]
    fn the_kubelet_serves_on_its_node_address_with_webhook_authorization() {
        let node = NodeSpec::new(3);
        let paths = NodePaths::new(Path::new("/d"), &node);
        let config = kubelet(&node, &paths, Path::new("/ca.crt"));
        for expected in [
            "address: 172.30.0.13",
            "cgroupRoot: /vnest-node3",
            "failCgroupV1: false",
            "mode: Webhook",
            "enabled: false",
            "readOnlyPort: 0",
            "clusterDNS: [10.96.0.10]",
            "containerRuntimeEndpoint: unix:///d/vnest-node3/containerd.sock",
            "podPidsLimit: 4096",
        ] {
            assert!(config.contains(expected), "missing {expected:?}");
        }
        let mut limited = node.clone();
        limited.pod_pids_limit = 256;
        assert!(kubelet(&limited, &paths, Path::new("/ca.crt")).contains("podPidsLimit: 256"));
        let proxy = kube_proxy(&node, Path::new("/k"));
        assert!(proxy.contains("hostnameOverride: vnest-node3"));
        assert!(proxy.contains("clusterCIDR: 10.244.0.0/16"));
    }
}
