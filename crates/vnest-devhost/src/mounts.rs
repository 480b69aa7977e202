//! Unmounting what the kubelet and containerd mounted under a node's files,
//! and the pod network namespaces containerd pinned under /run/netns.

use std::path::Path;

use crate::command::run_quietly;

/// Mount points at or below `dir`, deepest first.
pub fn under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    points
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Lazily unmounts everything at or below `dir`.
pub fn unmount_all_under(dir: &Path) {
    for point in under(dir) {
        run_quietly("umount", &["--lazy", &point]);
    }
}

/// The pod network namespaces (`cni-…`) pinned under /run/netns now.
pub fn pod_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.starts_with("cni-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Unpins and removes a pod network namespace left behind.
pub fn remove_pod_namespace(name: &str) {
    let path = format!("/run/netns/{name}");
    run_quietly("umount", &["--lazy", &path]);
    let _ = std::fs::remove_file(&path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_mount_points_are_decoded() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
