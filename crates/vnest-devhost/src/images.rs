//! The images the development host needs, assembled from local binaries.

use std::path::{Path, PathBuf};

use anyhow::Context;
use vnest_images::{ImageSpec, write_oci_archive};

/// The sandbox ("pause") image containerd starts first in every pod.
pub const PAUSE_IMAGE: &str = "vnest.local/pause:1";
/// A small workload image for tests: busybox with every applet linked.
pub const BUSYBOX_IMAGE: &str = "vnest.local/busybox:1";

const BUSYBOX: &str = "/bin/busybox";

/// Where CoreDNS's image comes from: upstream's name, our build.
pub const COREDNS_REPOSITORY: &str = "registry.k8s.io/coredns/coredns";

/// Writes every image as `<name>.tar` into `out` and returns the archives.
/// `coredns` is the binary `tools/upstream/build.sh` built.
pub fn build_all(out: &Path, coredns: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    let images = [
        ("pause.tar", pause()?),
        ("busybox.tar", busybox()?),
        ("coredns.tar", coredns_image(coredns)?),
    ];
    for (file, spec) in images {
        let path = out.join(file);
        write_oci_archive(&spec, &path).with_context(|| format!("writing {}", spec.reference))?;
        written.push(path);
    }
    Ok(written)
}

fn busybox_applets() -> anyhow::Result<Vec<String>> {
    let output = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .with_context(|| format!("running {BUSYBOX} --list (install Debian's busybox-static)"))?;
    anyhow::ensure!(output.status.success(), "{BUSYBOX} --list failed");
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|a| !a.is_empty() && a != "busybox")
        .collect())
}

fn busybox_base(reference: &str) -> anyhow::Result<ImageSpec> {
    let mut spec = ImageSpec::new(reference)
        .file("/bin/busybox", BUSYBOX, 0o755)
        .dir("/tmp", 0o1777)
        .contents(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
            0o644,
        )
        .contents("/etc/group", "root:x:0:\nnobody:x:65534:\n", 0o644);
    for applet in busybox_applets()? {
        spec = spec.symlink(&format!("/bin/{applet}"), "/bin/busybox");
    }
    Ok(spec)
}

fn pause() -> anyhow::Result<ImageSpec> {
    // Holds the pod's namespaces; exits on SIGTERM like upstream's pause.
    Ok(busybox_base(PAUSE_IMAGE)?.entrypoint(&[
        "/bin/sh",
        "-c",
        "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done",
    ]))
}

fn busybox() -> anyhow::Result<ImageSpec> {
    // Like Docker Hub's busybox: no entrypoint, so a pod's `args` or
    // `command` is the whole command line.
    Ok(busybox_base(BUSYBOX_IMAGE)?.cmd(&["/bin/sh"]))
}

/// `registry.k8s.io/coredns/coredns:vX.Y.Z`, the tag taken from the binary.
pub fn coredns_reference(coredns: &Path) -> anyhow::Result<String> {
    let output = std::process::Command::new(coredns)
        .arg("-version")
        .output()
        .with_context(|| format!("running {} -version", coredns.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("CoreDNS-"))
        .with_context(|| format!("{} -version printed no version: {text}", coredns.display()))?;
    Ok(format!("{COREDNS_REPOSITORY}:v{version}"))
}

fn coredns_image(coredns: &Path) -> anyhow::Result<ImageSpec> {
    Ok(ImageSpec::new(coredns_reference(coredns)?)
        .file("/coredns", coredns, 0o755)
        .contents(
            "/etc/passwd",
            "nobody:x:65534:65534:nobody:/:/bin/false\n",
            0o644,
        )
        .entrypoint(&["/coredns"])
        .user("65534"))
}
