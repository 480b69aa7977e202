//! The images the development host needs, assembled from local binaries.

use std::path::{Path, PathBuf};

use anyhow::Context;
use vnest_images::{ImageSpec, write_oci_archive};
use vnest_local::UpstreamBinaries;

/// The sandbox ("pause") image containerd starts first in every pod.
pub const PAUSE_IMAGE: &str = "vnest.local/pause:1";
/// A small workload image for tests: busybox with every applet linked.
pub const BUSYBOX_IMAGE: &str = "vnest.local/busybox:1";

const BUSYBOX: &str = "/bin/busybox";
/// Test clients for tenant isolation checks from inside pods: busybox plus
/// the pinned kubectl and etcdctl (static Go binaries, so DNS works, unlike
/// busybox-static's resolver).
pub const CLIENTS_IMAGE: &str = "vnest.local/clients:1";

/// Where CoreDNS's image comes from: upstream's name, our build.
pub const COREDNS_REPOSITORY: &str = "registry.k8s.io/coredns/coredns";

/// The images every node imports: the sandbox image, the test workload
/// image and CoreDNS. Written as `<name>.tar` into `out`.
pub fn node_images(out: &Path, binaries: &UpstreamBinaries) -> anyhow::Result<Vec<PathBuf>> {
    let coredns = binaries.locate_binary("coredns")?;
    write_all(
        out,
        vec![
            ("pause.tar", pause()?),
            ("busybox.tar", busybox()?),
            ("coredns.tar", coredns_image(&coredns)?),
        ],
    )
}

/// The control-plane images under their upstream names
/// (`registry.k8s.io/kube-apiserver:v1.37.2`, …, `registry.k8s.io/etcd:3.7.3-0`),
/// each the pinned binary alone, running as an unprivileged user.
pub fn control_plane_images(
    out: &Path,
    binaries: &UpstreamBinaries,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut images = kubernetes_images(binaries)?;
    let etcd = binaries.locate_binary("etcd")?;
    let etcd_version = version_word(&etcd, "--version", "3.")?;
    let mut etcd_image = single_binary(
        &format!("registry.k8s.io/etcd:{etcd_version}-0"),
        "etcd",
        &etcd,
    );
    // As upstream's etcd image: etcdctl, and etcdutl, which `vnest
    // restore` runs to write a member from a snapshot.
    for tool in ["etcdctl", "etcdutl"] {
        etcd_image = etcd_image.file(
            &format!("/usr/local/bin/{tool}"),
            binaries.locate_binary(tool)?,
            0o755,
        );
    }
    images.push(("etcd.tar".to_owned(), etcd_image));
    write_all(out, images)
}

/// The kube-apiserver, kube-controller-manager and kube-scheduler images of
/// the Kubernetes release `binaries` hold, each with its archive's name.
fn kubernetes_images(binaries: &UpstreamBinaries) -> anyhow::Result<Vec<(String, ImageSpec)>> {
    let apiserver = binaries.locate_binary("kube-apiserver")?;
    let kube_tag = version_word(&apiserver, "--version", "v")?;
    let mut images = Vec::new();
    for name in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let binary = binaries.locate_binary(name)?;
        let reference = format!("registry.k8s.io/{name}:{kube_tag}");
        images.push((
            format!("{name}-{kube_tag}.tar"),
            single_binary(&reference, name, &binary),
        ));
    }
    Ok(images)
}

/// The previous Kubernetes minor's control-plane images (what
/// `tools/upstream/build.sh` puts in `previous/`), which tenants are
/// upgraded from.
pub fn previous_minor_images(
    out: &Path,
    binaries: &UpstreamBinaries,
) -> anyhow::Result<Vec<PathBuf>> {
    let previous = binaries.previous_minor().context(
        "the previous Kubernetes minor's binaries are found only in a directory (set VNEST_UPSTREAM_BIN_DIR to what tools/upstream/build.sh prints)",
    )?;
    write_all(out, kubernetes_images(&previous)?)
}

/// [`CLIENTS_IMAGE`], written as `clients.tar` into `out`.
pub fn clients_image(out: &Path, binaries: &UpstreamBinaries) -> anyhow::Result<PathBuf> {
    let mut spec = busybox_base(CLIENTS_IMAGE)?;
    for name in ["kubectl", "etcdctl"] {
        spec = spec.file(
            &format!("/usr/local/bin/{name}"),
            binaries.locate_binary(name)?,
            0o755,
        );
    }
    let written = write_all(out, vec![("clients.tar", spec)])?;
    written
        .into_iter()
        .next()
        .context("clients.tar was not written")
}

/// vnest's own image from built vnest binaries (`vnest`,
/// `vnest-supervisor`, …), each at `/usr/local/bin/<file name>`, the first
/// as the entrypoint. The binaries link glibc dynamically, so the shared
/// libraries they need go in at the paths `ldd` reports (what a distroless
/// "cc" base image provides).
pub fn vnest_image(out: &Path, binaries: &[PathBuf]) -> anyhow::Result<PathBuf> {
    let reference = vnest_reference();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let binaries: Vec<PathBuf> = binaries
        .iter()
        .map(|b| without_debug_info(out, b))
        .collect::<anyhow::Result<_>>()?;
    let (first, rest) = binaries
        .split_first()
        .context("vnest's image needs at least one binary")?;
    let mut spec = single_binary(&reference, &file_name(first)?, first);
    for binary in rest {
        spec = spec.file(
            &format!("/usr/local/bin/{}", file_name(binary)?),
            binary,
            0o755,
        );
    }
    let spec = with_shared_libraries(spec, &binaries)?;
    let path = out.join("vnest.tar");
    write_oci_archive(&spec, &path).with_context(|| format!("writing {reference}"))?;
    Ok(path)
}

/// A copy of `binary` in `out` without debug information (a debug build is
/// ten times larger, and every node imports the image), or `binary` itself
/// where `strip` is missing.
fn without_debug_info(out: &Path, binary: &Path) -> anyhow::Result<PathBuf> {
    let stripped = out.join(file_name(binary)?);
    let status = std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&stripped)
        .arg(binary)
        .status();
    match status {
        Ok(s) if s.success() => Ok(stripped),
        _ => {
            tracing::warn!(binary = %binary.display(), "strip failed; packaging the binary as built");
            Ok(binary.to_owned())
        }
    }
}

/// The reference vnest's image is known by on the development host (and
/// in `manifests/`).
pub fn vnest_reference() -> String {
    format!("vnest.local/vnest:{}", env!("CARGO_PKG_VERSION"))
}

fn file_name(path: &Path) -> anyhow::Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} names no file", path.display()))
}

/// `spec` with the shared libraries (and the loader) that `binaries` need,
/// each at the path `ldd` reports.
fn with_shared_libraries(mut spec: ImageSpec, binaries: &[PathBuf]) -> anyhow::Result<ImageSpec> {
    let mut libraries = Vec::new();
    for binary in binaries {
        libraries.extend(shared_libraries(binary)?);
    }
    libraries.sort();
    libraries.dedup();
    for library in libraries {
        let path = library.display().to_string();
        spec = spec.file(&path, &library, 0o755);
    }
    Ok(spec)
}

/// The shared libraries (and the loader) `binary` needs, from `ldd`.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .with_context(|| format!("running ldd {}", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    Ok(text
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/…/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

fn write_all<F: AsRef<Path>>(
    out: &Path,
    images: Vec<(F, ImageSpec)>,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    for (file, spec) in images {
        let path = out.join(file);
        write_oci_archive(&spec, &path).with_context(|| format!("writing {}", spec.reference))?;
        written.push(path);
    }
    Ok(written)
}

/// `/usr/local/bin/<name>` as the entrypoint, run as the distroless
/// `nonroot` user (65532).
fn single_binary(reference: &str, name: &str, binary: &Path) -> ImageSpec {
    let target = format!("/usr/local/bin/{name}");
    ImageSpec::new(reference)
        .file(&target, binary, 0o755)
        .contents(
            "/etc/passwd",
            "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
            0o644,
        )
        .contents("/etc/group", "nonroot:x:65532:\n", 0o644)
        .dir("/home/nonroot", 0o755)
        .dir("/tmp", 0o1777)
        .entrypoint(&[&target])
        .user("65532")
}

/// The first word of `binary flag`'s output that starts with `prefix`
/// (`Kubernetes v1.37.2` → `v1.37.2`, `etcd Version: 3.7.3` → `3.7.3`).
fn version_word(binary: &Path, flag: &str, prefix: &str) -> anyhow::Result<String> {
    let output = std::process::Command::new(binary)
        .arg(flag)
        .output()
        .with_context(|| format!("running {} {flag}", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with(prefix))
        .map(str::to_owned)
        .with_context(|| format!("{} {flag} printed no version: {text}", binary.display()))
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
    pause_as(PAUSE_IMAGE)
}

fn pause_as(reference: &str) -> anyhow::Result<ImageSpec> {
    // Holds the pod's namespaces; exits on SIGTERM like upstream's pause.
    Ok(busybox_base(reference)?.entrypoint(&[
        "/bin/sh",
        "-c",
        "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done",
    ]))
}

fn busybox() -> anyhow::Result<ImageSpec> {
    busybox_as(BUSYBOX_IMAGE)
}

fn busybox_as(reference: &str) -> anyhow::Result<ImageSpec> {
    // Like Docker Hub's busybox: no entrypoint, so a pod's `args` or
    // `command` is the whole command line.
    Ok(busybox_base(reference)?.cmd(&["/bin/sh"]))
}

/// What stands in, on a host without a registry, for an image the
/// Kubernetes e2e suite names: chosen by the repository's last segment,
/// whatever the registry and tag (`e2e.test --list-images` gives the names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum E2eStandIn {
    /// agnhost built from the pinned Kubernetes module, on busybox, with
    /// upstream's entrypoint (`/agnhost`, default `pause`) and the network
    /// tools the suite runs in it (`AGNHOST_TOOLS`).
    Agnhost,
    /// busybox with every applet.
    BusyBox,
    /// A glibc image with DNS tools (`glibc-dns-testing`): busybox with
    /// the agnhost stand-in's tools.
    DnsTools,
    /// httpd, nginx (and kitten and nautilus, httpd with a page of their
    /// own): busybox's web server on port 80 answering a default page
    /// (and the update demo's `data.json`), which is what the suite uses
    /// them for.
    WebServer,
    /// `nonewprivs`: busybox with the suite's setuid `nnp`.
    NoNewPrivs,
    /// The aggregator test's `sample-apiserver`, built from the module
    /// (`k8s.io/sample-apiserver` of the same release), as root: it serves
    /// on port 443.
    SampleApiServer,
    /// The etcd the sample API server keeps its objects in: the pinned
    /// upstream etcd at `/usr/local/bin/etcd`, under whatever tag the
    /// suite names.
    Etcd,
    /// The sandbox image.
    Pause,
}

/// The last segment of a `registry.k8s.io` reference's repository
/// (`registry.k8s.io/e2e-test-images/nginx:1.27.0-2` → `nginx`).
fn repository_name(reference: &str) -> Option<&str> {
    let repository = reference.strip_prefix("registry.k8s.io/")?;
    let repository = repository.rsplit_once(':').map_or(repository, |(r, _)| r);
    repository.rsplit('/').next()
}

impl E2eStandIn {
    /// Only images of `registry.k8s.io`: the suite names others (a private
    /// registry, an invalid one) to see pulls fail.
    pub fn for_reference(reference: &str) -> Option<Self> {
        match repository_name(reference)? {
            "agnhost" => Some(Self::Agnhost),
            "glibc-dns-testing" => Some(Self::DnsTools),
            "nonewprivs" => Some(Self::NoNewPrivs),
            "sample-apiserver" => Some(Self::SampleApiServer),
            "etcd" => Some(Self::Etcd),
            "busybox" => Some(Self::BusyBox),
            "httpd" | "nginx" | "kitten" | "nautilus" => Some(Self::WebServer),
            "pause" => Some(Self::Pause),
            _ => None,
        }
    }
}

/// A program of the machine's that a stand-in carries: where it goes in
/// the image, where it is here, and the Debian package that installs it.
struct HostProgram {
    path: &'static str,
    source: &'static str,
    package: &'static str,
}

/// The tools the suite runs inside agnhost pods, as upstream's agnhost
/// image has them: `curl` for its GETs, OpenBSD's `nc` (`-v`, `-t`, `-u`,
/// `-z`) for its Service probes, `dig` and `getent` for its DNS probes,
/// and a shell that finds them ([`SUITE_SHELL`]). Debian's, linked
/// against glibc, which resolves names through the pod's `resolv.conf`
/// (busybox-static's resolver cannot). They go in under `/usr/bin`, ahead
/// of busybox's applets on the image's `PATH`.
const AGNHOST_TOOLS: [HostProgram; 5] = [
    SUITE_SHELL,
    HostProgram {
        path: "/usr/bin/curl",
        source: "/usr/bin/curl",
        package: "curl",
    },
    HostProgram {
        path: "/usr/bin/nc",
        source: "/usr/bin/nc.openbsd",
        package: "netcat-openbsd",
    },
    HostProgram {
        path: "/usr/bin/dig",
        source: "/usr/bin/dig",
        package: "bind9-dnsutils",
    },
    HostProgram {
        path: "/usr/bin/getent",
        source: "/usr/bin/getent",
        package: "libc-bin",
    },
];

/// The agnhost stand-in's shell: Debian's bash as `/bin/sh`. busybox's
/// shell runs its own applets before anything on the `PATH` (so `nc` would
/// stay busybox's), and drops environment variables whose names are not
/// shell identifiers (`data-1`), which the suite's ConfigMap and Secret
/// tests print with `sh -c env`; upstream's images keep both.
const SUITE_SHELL: HostProgram = HostProgram {
    path: "/bin/sh",
    source: "/bin/bash",
    package: "bash",
};

/// Debian's bash under its own name, for [`BUSYBOX_SHELL`].
const BASH: HostProgram = HostProgram {
    path: "/bin/bash",
    source: "/bin/bash",
    package: "bash",
};

/// The busybox stand-in's `/bin/sh`: busybox's own shell, as in upstream's
/// busybox image (the suite compares its messages word for word: `/bin/sh:
/// can't create /file: Read-only file system`), except in an environment
/// holding a variable whose name is no shell identifier (`data-1`, which
/// the ConfigMap and Secret specs print with `sh -c env`): upstream's
/// busybox 1.36 keeps such variables, Debian's 1.35 drops them, bash keeps
/// them. busybox names its shell by the name it was run as (`sh`).
const BUSYBOX_SHELL: &str = r#"#!/bin/bash
while IFS= read -r -d '' entry; do
  [[ ${entry%%=*} =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || exec -a "$0" /bin/bash "$@"
done < /proc/self/environ
exec -a "$0" /bin/busybox "$@"
"#;

/// `spec` with `programs` and the libraries they link, and glibc's name
/// service order (files, then DNS) for them; a program takes the place of
/// whatever `spec` had at its path (a busybox applet).
fn with_host_programs(spec: ImageSpec, programs: &[HostProgram]) -> anyhow::Result<ImageSpec> {
    let mut spec = spec.contents("/etc/nsswitch.conf", "hosts: files dns\n", 0o644);
    spec.entries
        .retain(|entry| !programs.iter().any(|p| p.path == entry.path()));
    let mut sources = Vec::new();
    for program in programs {
        let source = PathBuf::from(program.source);
        anyhow::ensure!(
            source.is_file(),
            "{} is missing: install Debian's {} (tools/host/install-prerequisites.sh --conformance)",
            program.source,
            program.package
        );
        spec = spec.file(program.path, &source, 0o755);
        sources.push(source);
    }
    with_shared_libraries(spec, &sources)
}

/// agnhost as the suite's image has it: the binary, and the source
/// directory its image takes files from (porter's TLS pair), when known.
pub struct Agnhost {
    pub binary: PathBuf,
    pub source: Option<PathBuf>,
}

/// The suite's binaries built from the pinned module, for the stand-ins
/// that carry them.
pub struct SuiteBinaries {
    pub agnhost: Agnhost,
    /// `nnp` (`test/images/nonewprivs`): prints its effective uid; setuid
    /// root in its image, so that a container allowed to escalate prints 0.
    pub nonewprivs: Option<PathBuf>,
    /// `k8s.io/sample-apiserver`'s server.
    pub sample_apiserver: Option<PathBuf>,
    /// The pinned etcd.
    pub etcd: Option<PathBuf>,
}

/// What upstream's agnhost image (`test/images/agnhost/Dockerfile`) has
/// besides the binary and its tools: a second name, an upload directory,
/// a user and group the suite looks up by name, and porter's TLS pair
/// (`localhost.crt`/`.key` in the working directory, from the source).
fn agnhost_image(reference: &str, agnhost: &Agnhost) -> anyhow::Result<ImageSpec> {
    let mut spec = with_host_programs(busybox_base(reference)?, &AGNHOST_TOOLS)?
        .file("/agnhost", &agnhost.binary, 0o755)
        .symlink("/agnhost-2", "agnhost")
        .dir("/uploads", 0o755);
    spec.entries
        .retain(|e| e.path() != "/etc/passwd" && e.path() != "/etc/group");
    spec = spec
        .contents(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n\
             user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n",
            0o644,
        )
        .contents(
            "/etc/group",
            "root:x:0:\nnobody:x:65534:\nuser-defined-in-image:x:1000:\n\
             group-defined-in-image:x:50000:user-defined-in-image\n",
            0o644,
        );
    if let Some(source) = &agnhost.source {
        for file in ["localhost.crt", "localhost.key"] {
            let path = source.join("porter").join(file);
            anyhow::ensure!(path.is_file(), "{} is missing", path.display());
            spec = spec.file(&format!("/{file}"), &path, 0o644);
        }
    }
    Ok(spec.entrypoint(&["/agnhost"]).cmd(&["pause"]))
}

/// The stand-ins for those of `references` that have one, written into
/// `out` (one archive each); returns the archives and the references left
/// without a stand-in (tests using them fail to pull).
pub fn e2e_images(
    out: &Path,
    references: &[String],
    binaries: &SuiteBinaries,
) -> anyhow::Result<(Vec<PathBuf>, Vec<String>)> {
    let mut images = Vec::new();
    let mut missing = Vec::new();
    for reference in references {
        let spec = match E2eStandIn::for_reference(reference) {
            Some(E2eStandIn::Agnhost) => agnhost_image(reference, &binaries.agnhost)?,
            // Busybox carrying a program of the suite's, when it was built.
            Some(
                stand_in
                @ (E2eStandIn::NoNewPrivs | E2eStandIn::SampleApiServer | E2eStandIn::Etcd),
            ) => {
                let (binary, path, mode) = match stand_in {
                    E2eStandIn::NoNewPrivs => (&binaries.nonewprivs, "/usr/local/bin/nnp", 0o4755),
                    E2eStandIn::SampleApiServer => {
                        (&binaries.sample_apiserver, "/sample-apiserver", 0o755)
                    }
                    _ => (&binaries.etcd, "/usr/local/bin/etcd", 0o755),
                };
                let Some(binary) = binary else {
                    missing.push(reference.clone());
                    continue;
                };
                let spec = busybox_as(reference)?.file(path, binary, mode);
                match stand_in {
                    E2eStandIn::NoNewPrivs => spec.cmd(&["nnp"]),
                    E2eStandIn::SampleApiServer => spec.entrypoint(&[path]),
                    _ => spec,
                }
            }
            Some(E2eStandIn::BusyBox) => {
                let mut spec = with_host_programs(busybox_as(reference)?, &[BASH])?;
                spec.entries.retain(|entry| entry.path() != "/bin/sh");
                spec.contents("/bin/sh", BUSYBOX_SHELL, 0o755)
            }
            Some(E2eStandIn::WebServer) => web_server(reference)?,
            Some(E2eStandIn::DnsTools) => {
                with_host_programs(busybox_as(reference)?, &AGNHOST_TOOLS)?
            }
            Some(E2eStandIn::Pause) => pause_as(reference)?,
            None => {
                missing.push(reference.clone());
                continue;
            }
        };
        images.push((archive_name(reference), spec));
    }
    Ok((write_all(out, images)?, missing))
}

/// The web servers' stand-in ([`E2eStandIn::WebServer`]). kitten and
/// nautilus, the update demo's pictures, also carry upstream's `data.json`
/// (which picture they show) where upstream has it, at the image's root
/// as well as on the page: the ImageVolume spec mounts kitten as a volume
/// and reads `data.json` and `etc/os-release` (upstream's base is Alpine
/// Linux; the stand-in's release file says what it is instead, naming
/// that base).
fn web_server(reference: &str) -> anyhow::Result<ImageSpec> {
    let mut spec = busybox_base(reference)?
        .contents(
            "/www/index.html",
            "<html><body><h1>It works!</h1></body></html>\n",
            0o644,
        )
        .entrypoint(&["/bin/httpd", "-f", "-p", "80", "-h", "/www"]);
    if let Some(name @ ("kitten" | "nautilus")) = repository_name(reference) {
        let data = format!("{{\n  \"image\": \"{name}.jpg\"\n}}\n");
        let release = format!(
            "NAME=\"vnest stand-in for {reference}\"\nID=vnest-stand-in\nPRETTY_NAME=\"busybox, standing in for upstream's image on Alpine Linux\"\n"
        );
        spec = spec
            .contents("/www/data.json", data.clone(), 0o644)
            .contents("/data.json", data, 0o644)
            .contents("/etc/os-release", release, 0o644);
    }
    Ok(spec)
}

/// A file name for `reference`'s archive (`registry.k8s.io/e2e-test-images/agnhost:2.57`
/// → `e2e-test-images_agnhost_2.57.tar`).
fn archive_name(reference: &str) -> String {
    let without_registry = reference.split_once('/').map_or(reference, |(_, r)| r);
    format!("{}.tar", without_registry.replace(['/', ':', '@'], "_"))
}

/// `registry.k8s.io/coredns/coredns:vX.Y.Z`, the tag taken from the binary.
pub fn coredns_reference(coredns: &Path) -> anyhow::Result<String> {
    let word = version_word(coredns, "-version", "CoreDNS-")?;
    Ok(format!(
        "{COREDNS_REPOSITORY}:v{}",
        word.trim_start_matches("CoreDNS-")
    ))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vnest_images::Entry;

    /// A program goes in with every library it links and the loader, so
    /// it runs in an image that has nothing else; a missing one is named
    /// with the package that installs it.
    #[test]
    fn host_programs_carry_their_libraries() {
        let sh = HostProgram {
            path: "/usr/bin/sh",
            source: "/bin/sh",
            package: "dash",
        };
        let spec = with_host_programs(ImageSpec::new("test"), &[sh]).unwrap();
        let paths: Vec<&str> = spec.entries.iter().map(Entry::path).collect();
        assert!(paths.contains(&"/usr/bin/sh"), "{paths:?}");
        assert!(paths.contains(&"/etc/nsswitch.conf"), "{paths:?}");
        for library in shared_libraries(Path::new("/bin/sh")).unwrap() {
            assert!(
                paths.contains(&library.to_str().unwrap()),
                "{library:?} in {paths:?}"
            );
        }
        assert!(paths.iter().any(|p| p.contains("libc.so")), "{paths:?}");
        let replaced = with_host_programs(busybox_as("test").unwrap(), &[SUITE_SHELL]).unwrap();
        let shells: Vec<&Entry> = replaced
            .entries
            .iter()
            .filter(|e| e.path() == "/bin/sh")
            .collect();
        assert_eq!(shells.len(), 1, "{shells:?}");
        assert!(matches!(shells[0], Entry::File { .. }), "{shells:?}");
        let missing = HostProgram {
            path: "/usr/bin/nothing",
            source: "/usr/bin/vnest-no-such-program",
            package: "vnest-nothing",
        };
        let error = with_host_programs(ImageSpec::new("test"), &[missing]).unwrap_err();
        assert!(
            error.to_string().contains("install Debian's vnest-nothing"),
            "{error}"
        );
    }

    /// The agnhost stand-in has what upstream's image adds to the binary,
    /// once each: the second name, the user and group the suite looks up,
    /// porter's TLS pair from the source.
    #[test]
    fn the_agnhost_stand_in_has_what_upstreams_image_has() {
        let source = tempfile::tempdir().unwrap();
        std::fs::create_dir(source.path().join("porter")).unwrap();
        for file in ["localhost.crt", "localhost.key"] {
            std::fs::write(source.path().join("porter").join(file), "pem").unwrap();
        }
        let agnhost = Agnhost {
            binary: "/bin/true".into(),
            source: Some(source.path().to_owned()),
        };
        let spec =
            agnhost_image("registry.k8s.io/e2e-test-images/agnhost:2.66.1", &agnhost).unwrap();
        let paths: Vec<&str> = spec.entries.iter().map(Entry::path).collect();
        for path in [
            "/agnhost",
            "/agnhost-2",
            "/uploads",
            "/localhost.crt",
            "/localhost.key",
        ] {
            assert!(paths.contains(&path), "{path} in {paths:?}");
        }
        assert_eq!(paths.iter().filter(|p| **p == "/etc/passwd").count(), 1);
        let passwd = spec.entries.iter().find_map(|e| match e {
            Entry::Contents { path, contents, .. } if path == "/etc/passwd" => {
                Some(contents.clone())
            }
            _ => None,
        });
        assert!(
            String::from_utf8(passwd.unwrap())
                .unwrap()
                .contains("user-defined-in-image:x:1000")
        );
        assert_eq!(spec.entrypoint, ["/agnhost"]);
        let without = Agnhost {
            binary: "/bin/true".into(),
            source: Some(source.path().join("nothing")),
        };
        assert!(agnhost_image("agnhost", &without).is_err());
    }

    #[test]
    fn the_kitten_stand_in_has_what_the_image_volume_spec_reads() {
        let kitten = web_server("registry.k8s.io/e2e-test-images/kitten:1.8").unwrap();
        let file = |path: &str| {
            kitten
                .entries
                .iter()
                .find_map(|e| match e {
                    vnest_images::Entry::Contents {
                        path: p, contents, ..
                    } if p == path => Some(String::from_utf8_lossy(contents).into_owned()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        assert!(file("/data.json").contains("kitten.jpg"));
        assert!(file("/www/data.json").contains("kitten.jpg"));
        assert!(file("/etc/os-release").contains("Alpine Linux"));
        let nginx = web_server("registry.k8s.io/e2e-test-images/nginx:1.27.0-2").unwrap();
        assert!(nginx.entries.iter().all(|e| e.path() != "/data.json"));
    }

    #[test]
    fn stand_ins_are_chosen_by_repository_name_whatever_the_tag() {
        for (reference, stand_in) in [
            (
                "registry.k8s.io/e2e-test-images/agnhost:2.57",
                Some(E2eStandIn::Agnhost),
            ),
            (
                "registry.k8s.io/e2e-test-images/busybox:1.37.0-2",
                Some(E2eStandIn::BusyBox),
            ),
            (
                "registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
                Some(E2eStandIn::WebServer),
            ),
            (
                "registry.k8s.io/e2e-test-images/nginx:1.27.0-2",
                Some(E2eStandIn::WebServer),
            ),
            ("registry.k8s.io/pause:3.10.2", Some(E2eStandIn::Pause)),
            (
                "registry.k8s.io/e2e-test-images/sample-apiserver:1.29.2",
                Some(E2eStandIn::SampleApiServer),
            ),
            ("registry.k8s.io/etcd:3.7.0-0", Some(E2eStandIn::Etcd)),
            (
                "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1",
                Some(E2eStandIn::DnsTools),
            ),
            (
                "registry.k8s.io/e2e-test-images/nonewprivs:1.4",
                Some(E2eStandIn::NoNewPrivs),
            ),
            ("localhost:5000/agnhost-like:1", None),
            ("gcr.io/k8s-authenticated-test/agnhost:2.6", None),
            ("invalid.registry.k8s.io/invalid/alpine:3.1", None),
        ] {
            assert_eq!(
                E2eStandIn::for_reference(reference),
                stand_in,
                "{reference}"
            );
        }
        assert_eq!(
            archive_name("registry.k8s.io/e2e-test-images/agnhost:2.57"),
            "e2e-test-images_agnhost_2.57.tar"
        );
    }
}
