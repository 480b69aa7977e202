//! Simulated nodes: Node objects that kwok keeps Ready and whose pods it
//! reports Running without running anything. They stand in for placement
//! and scale tests that need more nodes than one machine runs, never for a
//! test that needs a container to run.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use vnest_local::UpstreamBinaries;
use vnest_local::process::ManagedProcess;

/// Every simulated node carries this label (and kwok manages exactly those).
pub const SIMULATED_LABEL: (&str, &str) = ("type", "kwok");
/// …and this taint, so that only pods that ask for simulated nodes land there.
pub const SIMULATED_TAINT_KEY: &str = "kwok.x-k8s.io/node";

pub fn name(index: u16) -> String {
    format!("vnest-sim{index}")
}

/// Starts kwok against the apiserver, with upstream's fast stages.
pub fn start_kwok(
    binaries: &UpstreamBinaries,
    kubeconfig: &Path,
    log: &Path,
) -> anyhow::Result<ManagedProcess> {
    let kwok = binaries.locate_binary("kwok")?;
    let stages = kwok.with_file_name("kwok-stages.yaml");
    anyhow::ensure!(
        stages.exists(),
        "{} is missing; rerun tools/upstream/build.sh",
        stages.display()
    );
    let mut command = Command::new(&kwok);
    command
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--config={}", stages.display()))
        .arg(format!(
            "--manage-nodes-with-label-selector={}={}",
            SIMULATED_LABEL.0, SIMULATED_LABEL.1
        ))
        // Addresses kwok reports for simulated pods; nothing routes them.
        .arg("--cidr=10.250.0.1/16")
        .arg("--node-ip=10.251.0.1");
    Ok(ManagedProcess::spawn_command(
        "kwok",
        command,
        log.to_owned(),
    )?)
}

/// Creates (or updates) simulated node `index` with `labels`.
pub async fn apply_node(
    client: &Client,
    index: u16,
    labels: &[(String, String)],
) -> anyhow::Result<()> {
    let name = name(index);
    let mut all_labels = serde_json::Map::new();
    all_labels.insert(SIMULATED_LABEL.0.into(), json!(SIMULATED_LABEL.1));
    all_labels.insert("kubernetes.io/hostname".into(), json!(name));
    all_labels.insert("kubernetes.io/os".into(), json!("linux"));
    for (k, v) in labels {
        all_labels.insert(k.clone(), json!(v));
    }
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": all_labels,
            "annotations": { SIMULATED_TAINT_KEY: "fake" },
        },
        "spec": {
            "taints": [{ "key": SIMULATED_TAINT_KEY, "value": "fake", "effect": "NoSchedule" }],
        },
        "status": {
            "allocatable": { "cpu": "32", "memory": "256Gi", "pods": "110" },
            "capacity": { "cpu": "32", "memory": "256Gi", "pods": "110" },
        },
    }))
    .context("building a simulated node")?;
    Api::<Node>::all(client.clone())
        .patch(
            &name,
            &PatchParams::apply("vnest-devhost").force(),
            &Patch::Apply(&node),
        )
        .await
        .with_context(|| format!("creating simulated node {name}"))?;
    Ok(())
}
