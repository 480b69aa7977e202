//! Starting and stopping one node: containerd, the kubelet, kube-proxy and
//! the NetworkPolicy enforcer, each inside the node's network namespace (but
//! the machine's mount namespace, so that the kubelet's volume mounts are
//! visible to containerd).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use vnest_local::process::ManagedProcess;
use vnest_local::{LocalControlPlane, UpstreamBinaries};
use vnest_pki::{CertAndKey, ClientCredentials, LeafSpec, Usage, render_kubeconfig};

use crate::command::run;
use crate::network_policy;
use crate::node_config::{self, NodePaths};
use crate::topology::NodeSpec;

const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running node.
pub struct RunningNode {
    pub spec: NodeSpec,
    pub paths: NodePaths,
    /// The `ctr` built with the node's containerd.
    ctr: PathBuf,
    // Stopped in reverse: enforcer, kube-proxy, kubelet, containerd.
    processes: Vec<ManagedProcess>,
}

impl RunningNode {
    /// Starts containerd, imports `images`, starts the kubelet and
    /// kube-proxy. Returns once containerd answers; [`Self::wait_ready`]
    /// waits for the node.
    pub async fn start(
        spec: NodeSpec,
        base: &Path,
        cp: &LocalControlPlane,
        binaries: &UpstreamBinaries,
        sandbox_image: &str,
        images: &[PathBuf],
    ) -> anyhow::Result<Self> {
        let paths = NodePaths::new(base, &spec);
        for sub in ["logs", "cni", "pod-logs", "kubelet"] {
            std::fs::create_dir_all(paths.file(sub))?;
        }
        crate::cgroups::create(&spec.cgroup_root())?;
        let containerd = binaries.locate_binary("containerd")?;
        let runc_shim = binaries.locate_binary("containerd-shim-runc-v2")?;
        write_node_files(&spec, &paths, cp, sandbox_image, &runc_shim)?;
        let mut node = Self {
            spec,
            paths,
            ctr: binaries.locate_binary("ctr")?,
            processes: Vec::new(),
        };

        node.spawn(
            "containerd",
            &containerd,
            &[
                "--config".into(),
                node.paths.file("containerd.toml").display().to_string(),
            ],
        )?;
        node.wait_for_containerd().await?;
        for image in images {
            node.ctr(&["images", "import", &image.display().to_string()])
                .with_context(|| {
                    format!("importing {} into {}", image.display(), node.spec.name())
                })?;
        }

        let kubelet = binaries.locate_binary("kubelet")?;
        let mut labels: Vec<String> = node
            .spec
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        node.spawn(
            "kubelet",
            &kubelet,
            &[
                format!("--config={}", node.paths.file("kubelet.yaml").display()),
                format!(
                    "--kubeconfig={}",
                    node.paths.file("kubelet.kubeconfig").display()
                ),
                format!("--root-dir={}", node.paths.file("kubelet").display()),
                format!("--hostname-override={}", node.spec.name()),
                format!("--node-ip={}", node.spec.ip()),
                format!("--node-labels={}", labels.join(",")),
            ],
        )?;
        let proxy = binaries.locate_binary("kube-proxy")?;
        node.spawn(
            "kube-proxy",
            &proxy,
            &[format!(
                "--config={}",
                node.paths.file("kube-proxy.yaml").display()
            )],
        )?;
        Ok(node)
    }

    /// Starts the node's NetworkPolicy enforcer (it needs the Node object,
    /// so after [`Self::wait_ready`]) and waits until it is in force.
    pub async fn enforce_network_policy(
        &mut self,
        binaries: &UpstreamBinaries,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let enforcer = binaries.locate_binary("kube-router")?;
        let kubeconfig = self.paths.file("kube-router.kubeconfig");
        let args = network_policy::args(&self.spec, &kubeconfig.display().to_string());
        self.spawn("kube-router", &enforcer, &args)?;
        let spec = self.spec.clone();
        let log = self.paths.log("kube-router");
        network_policy::wait_enforcing(&spec, timeout, &log, || self.ensure_running()).await
    }

    /// Stops the node's NetworkPolicy enforcer and takes its rules out of
    /// force, as on a node whose plugin was removed (its rules would
    /// otherwise outlive it); [`Self::enforce_network_policy`] starts it
    /// again.
    pub async fn stop_network_policy(&mut self) -> anyhow::Result<()> {
        if let Some(index) = self
            .processes
            .iter()
            .position(|p| component(p) == "kube-router")
        {
            let mut enforcer = self.processes.remove(index);
            enforcer.terminate(STOP_GRACE).await;
        }
        network_policy::unhook(&self.spec)
    }

    /// Waits until the node reports Ready, failing early if a process exits,
    /// then records its pod subnet in `spec.podCIDR(s)`, as a cluster whose
    /// controller-manager allocates them would: NetworkPolicies (vnest's)
    /// tell pods from other clients by it.
    pub async fn wait_ready(&mut self, nodes: &Api<Node>, timeout: Duration) -> anyhow::Result<()> {
        let name = self.spec.name();
        let log = self.paths.log("kubelet");
        wait_node_ready(nodes, &name, timeout, &log, || self.ensure_running()).await?;
        let cidr = self.spec.pod_cidr();
        let patch = serde_json::json!({ "spec": { "podCIDR": cidr, "podCIDRs": [cidr] } });
        nodes
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .with_context(|| format!("recording the pod subnet of {name}"))?;
        Ok(())
    }

    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        for process in &mut self.processes {
            process.ensure_running()?;
        }
        Ok(())
    }

    /// `ctr` against this node's containerd, in the `k8s.io` namespace the
    /// CRI plugin uses.
    pub fn ctr(&self, args: &[&str]) -> anyhow::Result<String> {
        ctr_at(&self.ctr, &self.paths, args)
    }

    /// Stops kube-proxy and the kubelet, kills every container, stops
    /// containerd and the container shims it left.
    pub async fn stop(mut self) {
        while let Some(mut process) = self.processes.pop() {
            if component(&process) == "containerd" {
                self.kill_containers();
            }
            process.terminate(STOP_GRACE).await;
        }
        kill_shims(&self.paths.containerd_socket());
    }

    fn kill_containers(&self) {
        let tasks = self.ctr(&["tasks", "list", "--quiet"]).unwrap_or_default();
        for task in tasks.lines().filter(|t| !t.is_empty()) {
            let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", task]);
            let _ = self.ctr(&["tasks", "delete", "--force", task]);
        }
        let containers = self
            .ctr(&["containers", "list", "--quiet"])
            .unwrap_or_default();
        for container in containers.lines().filter(|c| !c.is_empty()) {
            let _ = self.ctr(&["containers", "delete", container]);
        }
    }

    fn spawn(&mut self, name: &str, binary: &Path, args: &[String]) -> anyhow::Result<()> {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.spec.name()))
            .arg("--")
            .arg(binary)
            .args(args);
        let label = format!("{name}@{}", self.spec.name());
        let process = ManagedProcess::spawn_command(label, command, self.paths.log(name))?;
        self.processes.push(process);
        Ok(())
    }

    async fn wait_for_containerd(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            self.ensure_running()?;
            if self.paths.containerd_socket().exists() && self.ctr(&["version"]).is_ok() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "containerd of {} did not answer within 30s; see {}",
                    self.spec.name(),
                    self.paths.log("containerd").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until node `name` reports Ready; `alive` fails the wait early when
/// whatever should make it Ready has died. `log` is where to look on timeout.
pub(crate) async fn wait_node_ready(
    nodes: &Api<Node>,
    name: &str,
    timeout: Duration,
    log: &Path,
    mut alive: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        alive()?;
        if let Ok(Some(node)) = nodes.get_opt(name).await
            && is_ready(&node)
        {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "node {name} was not Ready after {timeout:?}; see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Certificates, kubeconfigs and configuration files of one node.
fn write_node_files(
    spec: &NodeSpec,
    paths: &NodePaths,
    cp: &LocalControlPlane,
    sandbox_image: &str,
    runc_shim: &Path,
) -> anyhow::Result<()> {
    use vnest_local::layout::write_file;
    let name = spec.name();
    let ca = &cp.pki().ca;
    let ca_file = paths.file("ca.crt");
    write_file(&ca_file, &ca.cert().cert_pem, false)?;

    // The Node authorizer and NodeRestriction admit exactly this identity.
    let kubelet_client = ca.issue(&LeafSpec::client(
        format!("system:node:{name}"),
        Some("system:nodes"),
    ))?;
    let serving = ca.issue(&LeafSpec::server(
        name.clone(),
        Usage::Server,
        vec![name.clone(), spec.ip().to_string()],
    ))?;
    write_file(&paths.file("kubelet-serving.crt"), &serving.cert_pem, false)?;
    write_file(&paths.file("kubelet-serving.key"), &serving.key_pem, true)?;
    let kubeconfig = |user: &str, ck: &CertAndKey| {
        render_kubeconfig(
            &name,
            cp.server(),
            &ca.cert().cert_pem,
            user,
            ClientCredentials::Certificate(ck),
        )
    };
    write_file(
        &paths.file("kubelet.kubeconfig"),
        &kubeconfig(&format!("system:node:{name}"), &kubelet_client)?,
        true,
    )?;
    // The bootstrap RBAC policy binds system:node-proxier to this user.
    let proxy_client = ca.issue(&LeafSpec::client("system:kube-proxy", None))?;
    let proxy_kubeconfig = paths.file("kube-proxy.kubeconfig");
    write_file(
        &proxy_kubeconfig,
        &kubeconfig("system:kube-proxy", &proxy_client)?,
        true,
    )?;
    let enforcer = network_policy::user(spec);
    let enforcer_client = ca.issue(&LeafSpec::client(
        enforcer.clone(),
        Some(network_policy::GROUP),
    ))?;
    write_file(
        &paths.file("kube-router.kubeconfig"),
        &kubeconfig(&enforcer, &enforcer_client)?,
        true,
    )?;

    write_file(
        &paths.file("containerd.toml"),
        &node_config::containerd(paths, sandbox_image, runc_shim),
        false,
    )?;
    write_file(
        &paths.file("cni/10-vnest.conflist"),
        &node_config::cni(spec, &paths.file("cni-ipam")),
        false,
    )?;
    write_file(
        &paths.file("kubelet.yaml"),
        &node_config::kubelet(spec, paths, &ca_file),
        false,
    )?;
    write_file(
        &paths.file("kube-proxy.yaml"),
        &node_config::kube_proxy(spec, &proxy_kubeconfig),
        false,
    )?;
    Ok(())
}

/// Kills the `containerd-shim-runc-v2` processes that served `socket`'s
/// containerd: shims outlive their containerd by design.
/// Which of the node's components `process` is (its name is
/// `COMPONENT@NODE`).
fn component(process: &ManagedProcess) -> &str {
    process.name().split('@').next().unwrap_or_default()
}

fn kill_shims(socket: &Path) {
    let needle = socket.display().to_string();
    for pid in crate::procs::with_cmdline_containing(&["containerd-shim", &needle]) {
        crate::procs::kill(pid);
    }
}

/// `ctr` (the binary at `ctr`) against the containerd of the node whose
/// files are at `paths`, in the `k8s.io` namespace the CRI plugin uses.
pub(crate) fn ctr_at(ctr: &Path, paths: &NodePaths, args: &[&str]) -> anyhow::Result<String> {
    let socket = paths.containerd_socket().display().to_string();
    let mut full = vec!["--address", socket.as_str(), "--namespace", "k8s.io"];
    full.extend_from_slice(args);
    run(&ctr.display().to_string(), &full)
}
