//! The whole development host: bridge and node namespaces, a control plane
//! reachable from them, the nodes, and cluster DNS; torn down completely.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use vnest_local::{LocalControlPlane, LocalOptions, UpstreamBinaries};

use crate::machine_lock::{self, MachineLock};
use crate::node::{RunningNode, wait_node_ready};
use crate::node_config::NodePaths;
use crate::topology::{HOST_IP, MAX_NODES, NodeSpec};
use crate::{cgroups, dns, images, mounts, network, network_policy, simulated, storage};
use vnest_local::process::ManagedProcess;

/// How to bring the host up.
#[derive(Clone, Debug)]
pub struct DevHostOptions {
    pub nodes: Vec<NodeSpec>,
    /// Node files, control-plane files, images; removed on teardown.
    pub base_dir: PathBuf,
    pub binaries: UpstreamBinaries,
    /// How long each stage may take.
    pub timeout: Duration,
    /// Simulated nodes (kwok), each with its labels; see [`crate::simulated`].
    pub simulated_nodes: Vec<Vec<(String, String)>>,
    /// Built vnest binaries: when given, every node also gets the
    /// control-plane images, vnest's own image made from them (so the
    /// supervisor and tenant control planes run here) and the test clients
    /// image ([`images::CLIENTS_IMAGE`]).
    pub vnest_binaries: Vec<PathBuf>,
    /// Also the previous Kubernetes minor's control-plane images, for
    /// tests that upgrade a tenant from it (with `vnest_binaries` only).
    pub previous_minor: bool,
}

impl DevHostOptions {
    /// `count` plain nodes under `base_dir`.
    pub fn new(count: u8, base_dir: PathBuf, binaries: UpstreamBinaries) -> Self {
        Self {
            nodes: (1..=count).map(NodeSpec::new).collect(),
            base_dir,
            binaries,
            timeout: Duration::from_secs(180),
            simulated_nodes: Vec::new(),
            vnest_binaries: Vec::new(),
            previous_minor: false,
        }
    }
}

/// A running host cluster.
pub struct DevHost {
    // Stopped before the control plane it talks to.
    kwok: Option<ManagedProcess>,
    control_plane: Option<LocalControlPlane>,
    nodes: Vec<RunningNode>,
    /// Every node whose network was made, running or not.
    networks: Vec<NodeSpec>,
    base_dir: PathBuf,
    previous_forwarding: Option<String>,
    pod_namespaces_before: HashSet<String>,
    // Released last, once everything is torn down.
    machine: Option<MachineLock>,
}

impl DevHost {
    /// Brings everything up; `progress` hears each stage. On failure,
    /// whatever had started is torn down before the error returns.
    pub async fn up(
        options: DevHostOptions,
        mut progress: impl FnMut(&str),
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            nix::unistd::geteuid().is_root(),
            "the development host needs root (network namespaces, cgroups, containerd)"
        );
        anyhow::ensure!(
            !options.nodes.is_empty() && options.nodes.len() <= usize::from(MAX_NODES),
            "a host has 1 to {MAX_NODES} nodes"
        );
        let machine = MachineLock::acquire(
            std::path::Path::new(machine_lock::LOCK_FILE),
            Duration::from_secs(300),
            &mut progress,
        )
        .await?;
        anyhow::ensure!(
            network::existing_node_namespaces().is_empty(),
            "a development host already runs on this machine (or a crashed one left \
             network namespaces behind); `vnest-devhost down` removes it"
        );
        std::fs::create_dir_all(&options.base_dir)
            .with_context(|| format!("creating {}", options.base_dir.display()))?;
        let mut host = DevHost {
            kwok: None,
            control_plane: None,
            nodes: Vec::new(),
            networks: Vec::new(),
            base_dir: options.base_dir.clone(),
            previous_forwarding: None,
            pod_namespaces_before: mounts::pod_namespaces().into_iter().collect(),
            machine: Some(machine),
        };
        match host.bring_up(&options, &mut progress).await {
            Ok(()) => Ok(host),
            Err(error) => {
                progress("start-up failed; tearing down");
                host.down().await;
                Err(error)
            }
        }
    }

    async fn bring_up(
        &mut self,
        options: &DevHostOptions,
        progress: &mut impl FnMut(&str),
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        progress("building images");
        let coredns = options.binaries.locate_binary("coredns")?;
        let image_dir = options.base_dir.join("images");
        let mut archives = images::node_images(&image_dir, &options.binaries)?;
        if !options.vnest_binaries.is_empty() {
            archives.extend(images::control_plane_images(&image_dir, &options.binaries)?);
            archives.push(images::vnest_image(&image_dir, &options.vnest_binaries)?);
            archives.push(images::clients_image(&image_dir, &options.binaries)?);
            if options.previous_minor {
                archives.extend(images::previous_minor_images(
                    &image_dir,
                    &options.binaries,
                )?);
            }
        }
        let coredns_image = images::coredns_reference(&coredns)?;

        progress("creating the network");
        self.previous_forwarding = Some(network::create_bridge()?);
        for node in &options.nodes {
            self.networks.push(node.clone());
            network::create_node_network(node)?;
        }

        progress("starting the control plane");
        let mut cp_options = LocalOptions::new("vnest-devhost");
        cp_options.binaries = options.binaries.clone();
        cp_options.workdir = Some(options.base_dir.join("control-plane"));
        cp_options.with_scheduler = true;
        cp_options.address = IpAddr::V4(HOST_IP);
        cp_options.startup_timeout = options.timeout;
        let cp = LocalControlPlane::start(cp_options).await?;
        let client = cp.client();
        self.control_plane = Some(cp);
        network_policy::install_rbac(&client).await?;

        for spec in &options.nodes {
            progress(&format!("starting node {}", spec.name()));
            let cp = self.control_plane.as_ref().context("control plane")?;
            let node = RunningNode::start(
                spec.clone(),
                &options.base_dir,
                cp,
                &options.binaries,
                images::PAUSE_IMAGE,
                &archives,
            )
            .await?;
            self.nodes.push(node);
        }
        let nodes: Api<Node> = Api::all(client.clone());
        for node in &mut self.nodes {
            node.wait_ready(&nodes, options.timeout).await?;
            progress(&format!("node {} Ready", node.spec.name()));
        }
        for node in &mut self.nodes {
            node.enforce_network_policy(&options.binaries, options.timeout)
                .await?;
        }
        progress("NetworkPolicy enforced on every node");

        if !options.simulated_nodes.is_empty() {
            progress("starting kwok for simulated nodes");
            let cp = self.control_plane.as_ref().context("control plane")?;
            let log = options.base_dir.join("kwok.log");
            self.kwok = Some(simulated::start_kwok(
                &options.binaries,
                &cp.admin_kubeconfig_path(),
                &log,
            )?);
            for (i, labels) in options.simulated_nodes.iter().enumerate() {
                let index = u16::try_from(i + 1).context("too many simulated nodes")?;
                simulated::apply_node(&client, index, labels).await?;
            }
            let kwok = self.kwok.as_mut().context("kwok")?;
            for i in 1..=options.simulated_nodes.len() {
                let name = simulated::name(u16::try_from(i).unwrap_or(u16::MAX));
                wait_node_ready(&nodes, &name, options.timeout, &log, || {
                    Ok(kwok.ensure_running()?)
                })
                .await?;
            }
            progress(&format!(
                "{} simulated nodes Ready",
                options.simulated_nodes.len()
            ));
        }

        progress("creating local volumes");
        storage::install(&client, &options.base_dir, &self.nodes).await?;

        progress("starting CoreDNS");
        dns::install(&client, &coredns_image).await?;
        dns::wait_ready(&client, options.timeout).await?;
        progress(&format!(
            "host ready in {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    pub fn control_plane(&self) -> Option<&LocalControlPlane> {
        self.control_plane.as_ref()
    }

    /// Kills the host's apiserver (SIGKILL), starts it again and waits
    /// until it serves.
    pub async fn crash_apiserver(&mut self) -> anyhow::Result<()> {
        if let Some(control_plane) = self.control_plane.as_mut() {
            control_plane.crash_apiserver().await?;
        }
        Ok(())
    }

    /// Stops every node's NetworkPolicy enforcer and takes its rules out of
    /// force (a host whose plugin is gone).
    pub async fn stop_network_policy(&mut self) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            node.stop_network_policy().await?;
        }
        Ok(())
    }

    /// Starts every node's enforcer again and waits until it is in force.
    pub async fn enforce_network_policy(
        &mut self,
        binaries: &UpstreamBinaries,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            node.enforce_network_policy(binaries, timeout).await?;
        }
        Ok(())
    }

    /// An admin client for the host's apiserver.
    pub fn client(&self) -> Option<Client> {
        self.control_plane.as_ref().map(LocalControlPlane::client)
    }

    pub fn nodes(&self) -> &[RunningNode] {
        &self.nodes
    }

    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// Every component's log file, for a post-mortem.
    pub fn logs(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = self
            .control_plane
            .iter()
            .flat_map(|cp| cp.components().into_iter().map(|(_, _, log)| log))
            .collect();
        logs.extend(self.kwok.as_ref().map(|k| k.log().to_owned()));
        for node in &self.nodes {
            for process in ["containerd", "kubelet", "kube-proxy", "kube-router"] {
                logs.push(node.paths.log(process));
            }
        }
        logs
    }

    /// Leaves everything running, as an owner that crashed would: only the
    /// machine lock goes (the kernel releases a dead process's lock), so the
    /// next host may sweep this one's leftovers.
    pub fn abandon(mut self) {
        drop(self.machine.take());
        std::mem::forget(self);
    }

    /// Deletes every pod (so the kubelets tear down their sandboxes, network
    /// namespaces and mounts), then stops everything and removes every
    /// process, mount, network namespace, cgroup and file the host made.
    pub async fn down(mut self) {
        if let Some(client) = self.client() {
            // Bounded as a whole: with a dead etcd every request hangs.
            let timeout = Duration::from_secs(60);
            if tokio::time::timeout(timeout, delete_all_pods(&client, timeout))
                .await
                .is_err()
            {
                tracing::warn!("the apiserver did not answer; tearing down without deleting pods");
            }
        }
        let mut stopped = Vec::new();
        for node in std::mem::take(&mut self.nodes) {
            let paths = node.paths.clone();
            let spec = node.spec.clone();
            node.stop().await;
            remove_node_remains(&spec, &paths.dir);
            stopped.push(spec.name());
        }
        // A node whose start failed is not among them, but its network, a
        // process or mounts may be there.
        for spec in std::mem::take(&mut self.networks) {
            if stopped.contains(&spec.name()) {
                continue;
            }
            let dir = NodePaths::new(&self.base_dir, &spec).dir;
            for pid in crate::procs::with_cmdline_containing(&[&dir.display().to_string()]) {
                crate::procs::kill(pid);
            }
            remove_node_remains(&spec, &dir);
        }
        if let Some(mut kwok) = self.kwok.take() {
            kwok.terminate(Duration::from_secs(5)).await;
        }
        if let Some(cp) = self.control_plane.take() {
            cp.stop().await;
        }
        for ns in mounts::pod_namespaces() {
            if !self.pod_namespaces_before.contains(&ns) {
                mounts::remove_pod_namespace(&ns);
            }
        }
        network::delete_bridge(self.previous_forwarding.as_deref());
        mounts::unmount_all_under(&self.base_dir);
        if let Err(error) = std::fs::remove_dir_all(&self.base_dir) {
            tracing::warn!(%error, dir = %self.base_dir.display(), "could not remove the host's files");
        }
    }
}

/// Deletes every workload controller and pod, then waits until no pod is
/// left: the kubelets have stopped the sandboxes, so their network
/// namespaces and mounts are gone.
async fn delete_all_pods(client: &Client, timeout: Duration) {
    delete_every::<Deployment>(client).await;
    delete_every::<DaemonSet>(client).await;
    delete_every::<StatefulSet>(client).await;
    delete_every::<ReplicaSet>(client).await;
    delete_every::<Job>(client).await;
    let start = Instant::now();
    while start.elapsed() < timeout {
        match delete_every::<Pod>(client).await {
            0 => return,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    tracing::warn!(?timeout, "pods were still terminating; tearing down anyway");
}

/// Deletes every object of kind `K` in every namespace; returns how many
/// there were.
async fn delete_every<K>(client: &Client) -> usize
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let Ok(list) = Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
    else {
        return 0;
    };
    let params = DeleteParams::background().grace_period(1);
    for object in &list.items {
        let meta = object.meta();
        if let (Some(ns), Some(name)) = (&meta.namespace, &meta.name)
            && meta.deletion_timestamp.is_none()
        {
            let _ = Api::<K>::namespaced(client.clone(), ns)
                .delete(name, &params)
                .await;
        }
    }
    list.items.len()
}

/// Imports `archives` into the containerd of every node of the host
/// running in `base_dir` (each node's directory holds its socket), with the
/// `ctr` of `binaries`; returns how many nodes took them.
pub fn import_images(
    base_dir: &Path,
    archives: &[PathBuf],
    binaries: &UpstreamBinaries,
) -> anyhow::Result<usize> {
    let ctr = binaries.locate_binary("ctr")?;
    let nodes = running_nodes(base_dir)?;
    for node in &nodes {
        for archive in archives {
            let archive = archive.display().to_string();
            crate::node::ctr_at(&ctr, node, &["images", "import", &archive])
                .with_context(|| format!("importing {archive} into {}", node.dir.display()))?;
        }
    }
    Ok(nodes.len())
}

/// Makes every node of the dev host in `base_dir` pull `registry`'s images
/// from `mirror` (`http://HOST:PORT`, plain HTTP) first, falling back to
/// the registry itself; returns how many nodes. containerd reads the
/// configuration at each pull: no restart.
pub fn mirror_registry(base_dir: &Path, registry: &str, mirror: &str) -> anyhow::Result<usize> {
    anyhow::ensure!(
        !registry.is_empty() && !registry.contains(['/', '"', '\n']),
        "{registry:?} is not a registry host name"
    );
    anyhow::ensure!(
        mirror.starts_with("http://") && !mirror.contains(['"', '\n']),
        "the mirror {mirror:?} must be an http:// URL"
    );
    let nodes = running_nodes(base_dir)?;
    let hosts = format!(
        "server = \"https://{registry}\"\n\n[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    );
    for node in &nodes {
        let dir = node.registry_hosts().join(registry);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join("hosts.toml");
        std::fs::write(&file, &hosts).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(nodes.len())
}

/// The nodes of the dev host running in `base_dir`, in name order.
fn running_nodes(base_dir: &Path) -> anyhow::Result<Vec<NodePaths>> {
    let entries = std::fs::read_dir(base_dir).with_context(|| {
        format!(
            "reading {} (is a dev host running there?)",
            base_dir.display()
        )
    })?;
    let mut nodes: Vec<NodePaths> = entries
        .filter_map(|entry| entry.ok().map(|e| NodePaths { dir: e.path() }))
        .filter(|node| node.containerd_socket().exists())
        .collect();
    nodes.sort_by(|a, b| a.dir.cmp(&b.dir));
    anyhow::ensure!(
        !nodes.is_empty(),
        "no node of a dev host in {}",
        base_dir.display()
    );
    Ok(nodes)
}

/// What a stopped node leaves on the machine: its cgroups' processes, its
/// mounts, cgroups and network (missing pieces are fine).
fn remove_node_remains(spec: &NodeSpec, dir: &Path) {
    cgroups::kill_all(&spec.cgroup_root());
    mounts::unmount_all_under(dir);
    let busy = cgroups::remove(&spec.cgroup_root());
    if !busy.is_empty() {
        tracing::warn!(?busy, "cgroups still in use");
    }
    network::delete_node_network(spec);
}

/// Removes what a host that died without tearing down left behind: its
/// processes (found by `base_dir` in their command lines), mounts, pod and
/// node network namespaces, the bridge, cgroups and files. Assumes no other
/// containerd on this machine pins pod namespaces under /run/netns.
pub fn sweep(base_dir: &Path) {
    let needle = base_dir.display().to_string();
    for pid in crate::procs::with_cmdline_containing(&[&needle]) {
        crate::procs::kill(pid);
    }
    // Give the kernel a moment to reap before unmounting and removing.
    std::thread::sleep(Duration::from_millis(500));
    mounts::unmount_all_under(base_dir);
    for ns in mounts::pod_namespaces() {
        mounts::remove_pod_namespace(&ns);
    }
    for index in 1..=MAX_NODES {
        let spec = NodeSpec::new(index);
        cgroups::kill_all(&spec.cgroup_root());
        cgroups::remove(&spec.cgroup_root());
    }
    for ns in network::existing_node_namespaces() {
        if let Some(index) = ns.strip_prefix("vnest-node").and_then(|i| i.parse().ok()) {
            network::delete_node_network(&NodeSpec::new(index));
        }
    }
    network::delete_bridge(None);
    let _ = std::fs::remove_dir_all(base_dir);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_mirror_is_written_for_every_running_node_and_only_as_http() {
        let base = tempfile::tempdir().unwrap();
        for node in ["node1", "node2"] {
            std::fs::create_dir(base.path().join(node)).unwrap();
            std::fs::write(base.path().join(node).join("containerd.sock"), "").unwrap();
        }
        std::fs::create_dir(base.path().join("control-plane")).unwrap();
        let nodes =
            mirror_registry(base.path(), "registry.k8s.io", "http://172.30.0.1:5000").unwrap();
        assert_eq!(nodes, 2);
        let hosts =
            std::fs::read_to_string(base.path().join("node2/certs.d/registry.k8s.io/hosts.toml"))
                .unwrap();
        assert_eq!(
            hosts,
            "server = \"https://registry.k8s.io\"\n\n[host.\"http://172.30.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        assert!(mirror_registry(base.path(), "registry.k8s.io", "ftp://x").is_err());
        assert!(mirror_registry(base.path(), "a/b", "http://x:1").is_err());
        assert!(mirror_registry(&base.path().join("control-plane"), "r.io", "http://x:1").is_err());
    }
}
