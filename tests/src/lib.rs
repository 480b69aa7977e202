//! The one way tests get a real Kubernetes environment: locating the pinned
//! upstream binaries, starting local control planes ([`TestControlPlane`]) and
//! development host clusters ([`TestHost`], one at a time per machine via
//! [`HostSlot`]), and measuring that a host left nothing behind
//! ([`MachineFootprint`]). When a test fails, component logs are kept in a
//! folder under `target/test-logs/` that the test prints.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use vnest_local::{BIN_DIR_ENV, LocalControlPlane, LocalOptions, UpstreamBinaries};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
        .to_owned()
}

/// The pinned upstream binaries: `$VNEST_UPSTREAM_BIN_DIR` if set, else the
/// directory `tools/upstream/build.sh` builds into. Panics with the command to
/// run when they have not been built, because every integration test needs them.
pub fn upstream_binaries() -> UpstreamBinaries {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        return UpstreamBinaries::Dir(dir.into());
    }
    let script = workspace_root().join("tools/upstream/build.sh");
    let output = std::process::Command::new("bash")
        .arg(&script)
        .arg("--print")
        .output()
        .expect("running tools/upstream/build.sh --print");
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert!(
        dir.join("kube-apiserver").exists(),
        "the upstream binaries are not built; run `{}` first (or set {BIN_DIR_ENV})",
        script.display()
    );
    UpstreamBinaries::Dir(dir)
}

/// The binaries of vnest's image (`vnest-supervisor`, `vnest-syncer`), from
/// the build this test belongs to: `cargo test --workspace` (and
/// `tools/test.sh`) builds every package's binaries next to the test
/// binaries. Panics with the command to run when one is missing.
pub fn vnest_image_binaries() -> Vec<PathBuf> {
    let test = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> -> target/<profile>
    let dir = test
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    ["vnest-supervisor", "vnest-syncer"]
        .iter()
        .map(|name| {
            let binary = dir.join(name);
            assert!(
                binary.exists(),
                "{} is not built; run `cargo build -p vnest-supervisor -p vnest-syncer` (tools/test.sh and `cargo test --workspace` build it)",
                binary.display()
            );
            binary
        })
        .collect()
}

/// Whether process `pid` has exited (a zombie counts as exited).
pub fn process_is_gone(pid: u32) -> bool {
    !vnest_local::process_running(pid)
}

/// A name unique within this test process and across parallel test binaries.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Options for a test control plane named after `prefix`.
pub fn control_plane_options(prefix: &str) -> LocalOptions {
    let mut options = LocalOptions::new(unique_name(prefix));
    options.binaries = upstream_binaries();
    options
}

/// A local control plane for one test. If the test panics while it is alive,
/// its component logs are copied to `target/test-logs/<name>/` and the path
/// is printed before everything is torn down.
pub struct TestControlPlane {
    // `None` only after `stop` took it.
    inner: Option<LocalControlPlane>,
}

impl TestControlPlane {
    pub async fn start(prefix: &str) -> Self {
        Self::start_with(control_plane_options(prefix)).await
    }

    pub async fn start_with(options: LocalOptions) -> Self {
        let inner = LocalControlPlane::start(options)
            .await
            .unwrap_or_else(|e| panic!("starting a local control plane: {e}"));
        Self { inner: Some(inner) }
    }

    /// Stops gracefully (the path a well-behaved test takes).
    pub async fn stop(mut self) {
        if let Some(inner) = self.inner.take() {
            inner.stop().await;
        }
    }
}

impl std::ops::Deref for TestControlPlane {
    type Target = LocalControlPlane;
    fn deref(&self) -> &LocalControlPlane {
        self.inner.as_ref().expect("present until stop")
    }
}

impl Drop for TestControlPlane {
    fn drop(&mut self) {
        let Some(inner) = &self.inner else { return };
        if std::thread::panicking() {
            let dest = workspace_root().join("target/test-logs").join(inner.name());
            if std::fs::create_dir_all(&dest).is_ok() {
                for (component, _, log) in inner.components() {
                    let _ = std::fs::copy(&log, dest.join(format!("{component}.log")));
                }
                eprintln!(
                    "component logs of {} kept in {}",
                    inner.name(),
                    dest.display()
                );
            }
        }
    }
}

/// A development host cluster for one test (see `vnest-devhost`). If the
/// test panics while it is alive, the component logs are copied to
/// `target/test-logs/host-<pid>/` and everything is swept away.
pub struct TestHost {
    // `None` only after `stop` or `abandon` took it.
    inner: Option<vnest_devhost::DevHost>,
    base_dir: PathBuf,
    slot: Option<HostSlot>,
}

/// The right to run the machine's one development host (it takes fixed
/// names: bridge, node namespaces). A test holds it from before it measures
/// the machine until after it has checked the teardown. Serializes tests
/// within one test process; cargo runs test binaries one after another.
pub struct HostSlot(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);

static HOST_SLOT: std::sync::LazyLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(Default::default);

impl HostSlot {
    pub async fn acquire() -> Self {
        Self(HOST_SLOT.clone().lock_owned().await)
    }
}

impl TestHost {
    /// Brings up a host with `nodes`; progress goes to stderr.
    pub async fn start(slot: HostSlot, nodes: Vec<vnest_devhost::topology::NodeSpec>) -> Self {
        Self::start_with(slot, nodes, Vec::new()).await
    }

    /// [`start`](Self::start) with simulated (kwok) nodes, each with its labels.
    pub async fn start_with(
        slot: HostSlot,
        nodes: Vec<vnest_devhost::topology::NodeSpec>,
        simulated_nodes: Vec<Vec<(String, String)>>,
    ) -> Self {
        Self::start_configured(slot, nodes, |options| {
            options.simulated_nodes = simulated_nodes;
        })
        .await
    }

    /// [`start`](Self::start) with vnest's own image made from `binaries`
    /// (and the control-plane images) on every node.
    pub async fn start_for_vnest(
        slot: HostSlot,
        nodes: Vec<vnest_devhost::topology::NodeSpec>,
        binaries: Vec<PathBuf>,
    ) -> Self {
        Self::start_configured(slot, nodes, |options| {
            options.vnest_binaries = binaries;
        })
        .await
    }

    /// [`start`](Self::start) with any other options set by `configure`.
    pub async fn start_configured(
        slot: HostSlot,
        nodes: Vec<vnest_devhost::topology::NodeSpec>,
        configure: impl FnOnce(&mut vnest_devhost::DevHostOptions),
    ) -> Self {
        let base_dir = tempfile::Builder::new()
            .prefix("vnest-host-")
            .tempdir()
            .expect("creating the host's directory")
            .keep();
        let mut options =
            vnest_devhost::DevHostOptions::new(0, base_dir.clone(), upstream_binaries());
        options.nodes = nodes;
        configure(&mut options);
        let host = vnest_devhost::DevHost::up(options, |stage| eprintln!("host: {stage}"))
            .await
            .unwrap_or_else(|e| panic!("bringing the host up: {e:#}"));
        Self {
            inner: Some(host),
            base_dir,
            slot: Some(slot),
        }
    }

    /// The host's admin kubeconfig file.
    pub fn kubeconfig(&self) -> PathBuf {
        self.host()
            .control_plane()
            .expect("the host has a control plane")
            .admin_kubeconfig_path()
    }

    /// Runs the pinned kubectl with `kubeconfig`; returns (success, stdout, stderr).
    pub fn kubectl(&self, kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
        kubectl(kubeconfig, args)
    }

    pub fn client(&self) -> kube::Client {
        self.host().client().expect("the host has a control plane")
    }

    pub fn host(&self) -> &vnest_devhost::DevHost {
        self.inner.as_ref().expect("present until stop")
    }

    /// Kills the host's apiserver (SIGKILL), starts it again and waits
    /// until it serves.
    pub async fn crash_apiserver(&mut self) {
        self.inner
            .as_mut()
            .expect("present until stop")
            .crash_apiserver()
            .await
            .expect("the host apiserver comes back");
    }

    /// Stops the NetworkPolicy enforcer on every node and takes its rules
    /// out of force; [`Self::enforce_network_policy`] brings it back.
    pub async fn stop_network_policy(&mut self) {
        self.inner
            .as_mut()
            .expect("present until stop")
            .stop_network_policy()
            .await
            .expect("the enforcers stop");
    }

    pub async fn enforce_network_policy(&mut self) {
        self.inner
            .as_mut()
            .expect("present until stop")
            .enforce_network_policy(&upstream_binaries(), std::time::Duration::from_secs(120))
            .await
            .expect("the enforcers start again");
    }

    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// Leaves everything running, as an owner that crashed would, and
    /// returns the host's directory (for testing the sweep).
    pub fn abandon(mut self) -> (PathBuf, HostSlot) {
        if let Some(host) = self.inner.take() {
            host.abandon();
        }
        (
            self.base_dir.clone(),
            self.slot.take().expect("held until now"),
        )
    }

    /// Tears down in order (the path a passing test takes) and hands the
    /// slot back for checking what is left.
    pub async fn stop(mut self) -> HostSlot {
        if let Some(host) = self.inner.take() {
            host.down().await;
        }
        self.slot.take().expect("held until now")
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let Some(host) = self.inner.take() else {
            return;
        };
        let dest = workspace_root()
            .join("target/test-logs")
            .join(format!("host-{}", std::process::id()));
        if std::fs::create_dir_all(&dest).is_ok() {
            for log in host.logs() {
                let name = log
                    .strip_prefix(&self.base_dir)
                    .map(|p| p.display().to_string().replace('/', "_"))
                    .unwrap_or_else(|_| log.display().to_string());
                let _ = std::fs::copy(&log, dest.join(name));
            }
            eprintln!("host component logs kept in {}", dest.display());
        }
        // Dropping kills the processes the host owns; the sweep removes the rest.
        drop(host);
        vnest_devhost::sweep(&self.base_dir);
    }
}

/// Runs the pinned kubectl with `kubeconfig`; returns (success, stdout, stderr).
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let kubectl = upstream_binaries()
        .locate_binary("kubectl")
        .expect("kubectl is among the upstream binaries");
    let output = std::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("running kubectl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What the machine has that a development host could leave behind:
/// processes naming the host's directory, network namespaces, links, mounts,
/// `vnest-node*` cgroups and the iptables rules of the machine's namespace.
#[derive(Debug, PartialEq, Eq)]
pub struct MachineFootprint {
    pub processes: Vec<String>,
    pub netns: BTreeSet<String>,
    pub links: BTreeSet<String>,
    pub mounts: BTreeSet<String>,
    pub cgroups: BTreeSet<String>,
    pub iptables: Vec<String>,
}

impl MachineFootprint {
    /// Asserts that this footprint, taken after a host was torn down or
    /// swept, shows nothing the host made: no process naming `base`, and the
    /// namespaces, links, mounts, cgroups and iptables rules of `before`.
    pub fn assert_nothing_left(&self, before: &MachineFootprint, base: &Path) {
        assert!(
            self.processes.is_empty(),
            "processes left: {:?}",
            self.processes
        );
        assert_eq!(before.netns, self.netns, "network namespaces");
        assert_eq!(before.links, self.links, "links");
        assert_eq!(before.mounts, self.mounts, "mounts");
        assert_eq!(before.cgroups, self.cgroups, "cgroups");
        assert_eq!(
            before.iptables, self.iptables,
            "iptables rules of the machine"
        );
        assert!(!base.exists(), "{} left behind", base.display());
    }

    /// `base` names the host's directory; processes mentioning it count.
    pub fn capture(base: &str) -> Self {
        let run = |program: &str, args: &[&str]| {
            let out = std::process::Command::new(program)
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let processes = if base.is_empty() {
            Vec::new()
        } else {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&pid| pid != std::process::id() && vnest_local::process_running(pid))
                .filter_map(|pid| {
                    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                    let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
                    cmdline
                        .contains(base)
                        .then_some(format!("{pid}: {cmdline}"))
                })
                .collect()
        };
        let cgroups = std::fs::read_dir("/sys/fs/cgroup/memory")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| n.starts_with("vnest-node"))
            .collect();
        Self {
            processes,
            netns: run("ip", &["netns", "list"])
                .lines()
                .map(|l| l.split(' ').next().unwrap_or("").to_owned())
                .collect(),
            links: run("ip", &["-o", "link", "show"])
                .lines()
                .filter_map(|l| {
                    l.split(':')
                        .nth(1)
                        .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
                })
                .collect(),
            mounts: std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
                .collect(),
            cgroups,
            // Rules only: chain counters change by themselves.
            iptables: run("iptables-save", &[])
                .lines()
                .filter(|l| l.starts_with('-'))
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// What the first pod matching `selector` in `namespace` answers to
/// `GET path` on `port` (a health/metrics endpoint): the whole HTTP
/// response. Carried by `pods/portforward` (the kubelet connects inside the
/// pod), so NetworkPolicies that keep every other client out still let a
/// test read it, as they let an admin with port-forward rights.
pub async fn get_from_pod(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
    port: u16,
    path: &str,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), namespace);
    let pod = pods
        .list(&kube::api::ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no pod {selector} in {namespace}"));
    let name = pod.metadata.name.expect("a listed pod has a name");
    let mut forwarder = pods.portforward(&name, &[port]).await.unwrap();
    let mut stream = forwarder.take_stream(port).expect("a stream for the port");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    drop(stream);
    forwarder.join().await.ok();
    String::from_utf8_lossy(&response).into_owned()
}

/// A port on 127.0.0.1 whose every connection `pods/portforward` carries to
/// `port` of pod `name` (the kubelet connects inside the pod, past any
/// NetworkPolicy), as `kubectl port-forward` does; stops when the returned
/// task is aborted.
pub async fn forward_local(
    pods: kube::Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    port: u16,
) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap().port();
    let name = name.to_owned();
    let task = tokio::spawn(async move {
        while let Ok((mut connection, _)) = listener.accept().await {
            let pods = pods.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let Ok(mut forwarder) = pods.portforward(&name, &[port]).await else {
                    return;
                };
                if let Some(mut upstream) = forwarder.take_stream(port) {
                    let _ = tokio::io::copy_bidirectional(&mut connection, &mut upstream).await;
                }
                let _ = forwarder.join().await;
            });
        }
    });
    (local, task)
}
