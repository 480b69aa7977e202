//! Persistent volumes on the development host: a default StorageClass
//! `local` with no provisioner and, on every real node, a few pre-made
//! `local` PersistentVolumes (directories under the host's directory) that
//! the scheduler binds when a pod using a claim lands on that node. Enough
//! for the tenant etcd members of a benchmark's dozens of clusters;
//! released volumes are not reused (they go with the host).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use k8s_openapi::api::core::v1::{
    LocalVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume,
    PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::node::RunningNode;

pub const STORAGE_CLASS: &str = "local";
/// Volumes made on each node: an etcd member takes one for good (released
/// ones are not reused), and `tools/bench-lifecycle.sh` then
/// `tools/bench-density.sh` make 30 clusters on one host.
pub const VOLUMES_PER_NODE: usize = 40;

pub(crate) async fn install(
    client: &Client,
    base: &Path,
    nodes: &[RunningNode],
) -> anyhow::Result<()> {
    let classes: Api<StorageClass> = Api::all(client.clone());
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.to_owned()),
            annotations: Some(BTreeMap::from([(
                "storageclass.kubernetes.io/is-default-class".to_owned(),
                "true".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        provisioner: "kubernetes.io/no-provisioner".to_owned(),
        volume_binding_mode: Some("WaitForFirstConsumer".to_owned()),
        reclaim_policy: Some("Retain".to_owned()),
        ..StorageClass::default()
    };
    classes
        .create(&PostParams::default(), &class)
        .await
        .context("creating the local StorageClass")?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for node in nodes {
        let node_name = node.spec.name();
        for i in 0..VOLUMES_PER_NODE {
            let dir = base
                .join("volumes")
                .join(&node_name)
                .join(format!("pv-{i}"));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            // Pods run as non-root users; the directory stands in for a disk.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .with_context(|| format!("opening up {}", dir.display()))?;
            volumes
                .create(&PostParams::default(), &volume(&node_name, i, &dir))
                .await
                .with_context(|| format!("creating a volume on {node_name}"))?;
        }
    }
    Ok(())
}

fn volume(node: &str, index: usize, dir: &Path) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("{node}-pv-{index}")),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([(
                "storage".to_owned(),
                Quantity("10Gi".to_owned()),
            )])),
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            persistent_volume_reclaim_policy: Some("Retain".to_owned()),
            storage_class_name: Some(STORAGE_CLASS.to_owned()),
            local: Some(LocalVolumeSource {
                path: dir.display().to_string(),
                fs_type: None,
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".to_owned(),
                            operator: "In".to_owned(),
                            values: Some(vec![node.to_owned()]),
                        }]),
                        ..NodeSelectorTerm::default()
                    }],
                }),
            }),
            ..PersistentVolumeSpec::default()
        }),
        ..PersistentVolume::default()
    }
}
