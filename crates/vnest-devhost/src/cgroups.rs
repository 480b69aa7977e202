//! Per-node cgroup roots. The kubelet insists its `cgroupRoot` exists in
//! every cgroup v1 hierarchy before it starts.

use std::path::{Path, PathBuf};

use anyhow::Context;

const CGROUP_FS: &str = "/sys/fs/cgroup";

/// The v1 hierarchies mounted here (`cpu`, `memory`, …), without the v2
/// `unified` one.
fn hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(CGROUP_FS) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "unified"))
        .collect();
    dirs.sort();
    dirs
}

/// Creates `root` (e.g. `/vnest-node1`) in every hierarchy; cpuset needs
/// its CPUs and memory nodes copied from the parent to accept tasks.
pub fn create(root: &str) -> anyhow::Result<()> {
    let relative = root.trim_start_matches('/');
    for hierarchy in hierarchies() {
        let dir = hierarchy.join(relative);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if hierarchy.ends_with("cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let value = std::fs::read_to_string(hierarchy.join(file))?;
                std::fs::write(dir.join(file), value.trim())
                    .with_context(|| format!("writing {}", dir.join(file).display()))?;
            }
        }
    }
    Ok(())
}

/// SIGKILLs every process in `root`'s cgroups: containers live in their
/// own PID namespaces and survive their shims, but not this.
pub fn kill_all(root: &str) {
    let relative = root.trim_start_matches('/');
    for _ in 0..20 {
        let mut pids = Vec::new();
        for hierarchy in hierarchies() {
            collect_procs(&hierarchy.join(relative), &mut pids);
        }
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            crate::procs::kill(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    tracing::warn!(root, "processes keep appearing in the node's cgroups");
}

fn collect_procs(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                collect_procs(&entry.path(), pids);
            }
        }
    }
}

/// Removes `root` and everything below it, deepest first. A cgroup that still
/// holds processes cannot be removed; those are reported.
pub fn remove(root: &str) -> Vec<PathBuf> {
    let relative = root.trim_start_matches('/');
    let mut busy = Vec::new();
    for hierarchy in hierarchies() {
        let dir = hierarchy.join(relative);
        if dir.exists() {
            remove_tree(&dir, &mut busy);
        }
    }
    busy
}

fn remove_tree(dir: &Path, busy: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                remove_tree(&entry.path(), busy);
            }
        }
    }
    // cgroupfs directories are removed with rmdir even though they list files.
    if std::fs::remove_dir(dir).is_err() {
        busy.push(dir.to_owned());
    }
}
