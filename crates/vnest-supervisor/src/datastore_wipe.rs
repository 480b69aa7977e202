//! What a deleted VirtualCluster's etcd leaves on the host: nothing. Before
//! its namespace goes, once etcd has stopped ([`crate::teardown`] deletes
//! its StatefulSet and pods), each of its volumes is emptied by a pod
//! ([`crate::desired::datastore::wipe_pod`]), so a
//! volume the host keeps (a `Retain` StorageClass) is left `Released` with
//! no tenant data on it. A wipe that cannot finish (a volume whose node is
//! gone) does not hold the deletion up for longer than [`GIVE_UP_AFTER`].

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ListParams, PostParams};
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of};
use vnest_api::{VirtualCluster, label_pairs};

use crate::context::Context;
use crate::desired::datastore;
use crate::desired::pods;
use crate::error::{Error, Result};

/// How long after the deletion began a wipe stops being waited for.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// Where the wipe of `vc`'s etcd volumes stands: `Ok(())` when done (or
/// nothing to wipe, or given up), [`Error::Wiping`] while it runs.
pub async fn wipe(vc: &VirtualCluster, ctx: &Context) -> Result<()> {
    if datastore::owned_etcd(vc).is_none() {
        return Ok(());
    }
    let deleted_for = vc
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| Timestamp::now().duration_since(t.0))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default();
    if deleted_for > GIVE_UP_AFTER {
        tracing::warn!(
            vc = vc.metadata.name.as_deref().unwrap_or_default(),
            "etcd's volumes could not be emptied in time; deleting without"
        );
        return Ok(());
    }
    let namespace = host_namespace_of(vc, HostNamespaceRole::ControlPlane);
    // Once its namespace is going, the wipe is done (or too late): nothing
    // can be started there any more.
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    match namespaces.get_opt(&namespace).await? {
        Some(ns) if ns.metadata.deletion_timestamp.is_none() => {}
        _ => return Ok(()),
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let claims: Vec<String> = claims
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        // A claim never bound holds no data (and no pod could mount it).
        .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        .filter_map(|c| c.metadata.name)
        .collect();
    if claims.is_empty() {
        return Ok(());
    }
    // etcd has stopped first (the teardown stops it with the rest of the
    // control plane): nothing writes while the volume is emptied.
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let etcd = ListParams::default().labels(&label_pairs::selector(&pods::selector(
        datastore::COMPONENT,
    )));
    if !pods_api.list(&etcd).await?.items.is_empty() {
        return Err(Error::Wiping(namespace));
    }
    let mut running = false;
    for claim in &claims {
        let name = datastore::wipe_pod_name(claim);
        match pods_api.get_opt(&name).await? {
            None => {
                let pod = datastore::wipe_pod(vc, &ctx.settings, claim);
                pods_api.create(&PostParams::default(), &pod).await?;
                running = true;
            }
            Some(pod) => match pod.status.and_then(|s| s.phase).as_deref() {
                Some("Succeeded") => {}
                Some("Failed") => {
                    tracing::warn!(namespace, claim, "emptying etcd's volume failed");
                }
                _ => running = true,
            },
        }
    }
    if running {
        Err(Error::Wiping(namespace))
    } else {
        tracing::info!(namespace, ?claims, "etcd's volumes emptied");
        Ok(())
    }
}

/// Empties directory `dir` (a mounted volume): every file overwritten with
/// zeros, synced, and removed, then every directory below it removed.
pub fn empty_directory(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::io::Write as _;
    let mut wiped = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // A filesystem's own directory (ext4), owned by root, stays.
        if entry.file_name() == "lost+found" {
            continue;
        }
        let path = entry.path();
        let kind = std::fs::symlink_metadata(&path)?.file_type();
        if kind.is_dir() {
            wiped += empty_directory(&path)?;
            std::fs::remove_dir(&path)?;
            continue;
        }
        if kind.is_file() {
            let length = std::fs::metadata(&path)?.len();
            let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
            let zeros = vec![0u8; 1 << 16];
            let mut left = length;
            while left > 0 {
                let chunk = left.min(zeros.len() as u64) as usize;
                file.write_all(&zeros[..chunk])?;
                left -= chunk as u64;
            }
            file.sync_all()?;
            wiped += length;
        }
        std::fs::remove_file(&path)?;
    }
    Ok(wiped)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_directory_is_emptied_but_kept() {
        let dir = tempfile::tempdir().unwrap();
        let member = dir.path().join("data/member/snap");
        std::fs::create_dir_all(&member).unwrap();
        std::fs::write(member.join("db"), b"tenant secrets").unwrap();
        std::fs::write(dir.path().join("top"), vec![7u8; 200_000]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let wiped = empty_directory(dir.path()).unwrap();
        assert_eq!(wiped, 200_000 + 14);
        assert!(dir.path().exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(
            std::path::Path::new("/etc/passwd").exists(),
            "a link is not followed"
        );
    }
}
