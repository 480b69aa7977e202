//! A pod's `/etc/hosts` as the tenant's kubelet would write it.
//!
//! The host kubelet writes a pod's `/etc/hosts`, and for a pod with a
//! `subdomain` (every StatefulSet pod) its fully qualified name there is
//! `HOSTNAME.SUBDOMAIN.<namespace>.svc.<domain>` under the *host* pod's
//! namespace and the host's domain: `hostname -f` would name a host
//! namespace, a name the tenant's DNS never answers, and software that
//! advertises its own FQDN (databases, brokers) would hand it out.
//!
//! No pod field changes that name, and the pod's address is not known
//! before its sandbox is. So such a host pod gets a first init container,
//! [`CONTAINER`], running vnest's own image (`vnest-syncer etc-hosts`): it
//! reads the `/etc/hosts` the kubelet gave it, puts the tenant's name in
//! place of the host's ([`rewritten`]), and writes the result into a
//! memory volume that every container of the pod mounts at `/etc/hosts`
//! (a container mounting its own `/etc/hosts` keeps it; the kubelet
//! leaves such a container's file alone as well). The init container is
//! the syncer's: it is left out of the status the tenant reads, and so are
//! its events, but for warnings (a pull that fails tells why the pod waits).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EphemeralContainer, PodSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The init container, and the volume it writes into.
pub const CONTAINER: &str = "vnest-etc-hosts";
/// The `vnest-syncer` subcommand the init container runs.
pub const SUBCOMMAND: &str = "etc-hosts";
const PATH: &str = "/etc/hosts";
const VOLUME_MOUNT: &str = "/vnest-etc-hosts";
const FILE: &str = "hosts";
/// The `nobody` user: the container needs no identity, and runs as
/// Pod Security `restricted` asks of any container.
const NOBODY: i64 = 65534;

/// The tenant's name of host pod `spec` and what the kubelet writes in its
/// place: `(prefix of the host's name, the tenant's name)`; `None` when
/// the kubelet writes no namespace (no subdomain; a host-network pod gets
/// the node's file).
fn names(
    spec: &PodSpec,
    namespace: &str,
    host_namespace: &str,
    domain: &str,
) -> Option<(String, String)> {
    if spec.host_network == Some(true) {
        return None;
    }
    let hostname = spec.hostname.as_deref()?;
    let subdomain = spec.subdomain.as_deref().filter(|s| !s.is_empty())?;
    Some((
        format!("{hostname}.{subdomain}.{host_namespace}.svc."),
        format!("{hostname}.{subdomain}.{namespace}.svc.{domain}"),
    ))
}

/// Adds the init container (running `image`), its volume and the mounts
/// to host pod `spec` of a pod of tenant namespace `namespace`, when the
/// kubelet would write a host namespace into the pod's `/etc/hosts` and
/// the tenant's pod has no container or volume of the same name.
pub fn provide(
    spec: &mut PodSpec,
    image: &str,
    namespace: &str,
    host_namespace: &str,
    domain: &str,
) {
    let Some((host_name, tenant_name)) = names(spec, namespace, host_namespace, domain) else {
        return;
    };
    let taken = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.name == CONTAINER)
        || spec.volumes.iter().flatten().any(|v| v.name == CONTAINER);
    if taken {
        return;
    }
    let mount = VolumeMount {
        name: CONTAINER.to_owned(),
        mount_path: PATH.to_owned(),
        sub_path: Some(FILE.to_owned()),
        ..VolumeMount::default()
    };
    let add_mount = |mounts: &mut Option<Vec<VolumeMount>>| {
        let mounts = mounts.get_or_insert_with(Vec::new);
        if !mounts.iter().any(|m| m.mount_path == PATH) {
            mounts.push(mount.clone());
        }
    };
    for container in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        add_mount(&mut container.volume_mounts);
    }
    for container in spec.ephemeral_containers.iter_mut().flatten() {
        add_mount(&mut container.volume_mounts);
    }
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: CONTAINER.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".to_owned()),
            size_limit: Some(Quantity("1Mi".to_owned())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    });
    let out = Path::new(VOLUME_MOUNT).join(FILE);
    spec.init_containers
        .get_or_insert_with(Vec::new)
        .insert(0, container(image, &host_name, &tenant_name, &out));
}

/// The init container: `vnest-syncer etc-hosts` as [`EtcHosts`] reads it.
fn container(image: &str, host_name: &str, tenant_name: &str, out: &Path) -> Container {
    let quantities = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    let args = EtcHosts {
        host_name: host_name.to_owned(),
        tenant_name: tenant_name.to_owned(),
        out: out.to_owned(),
    };
    Container {
        name: CONTAINER.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(vec!["/usr/local/bin/vnest-syncer".to_owned()]),
        args: Some(args.to_args()),
        // Small, so that a pod's requests stay its containers' (an init
        // container's count when they are larger than the containers').
        resources: Some(ResourceRequirements {
            requests: quantities(&[("cpu", "1m"), ("memory", "4Mi")]),
            limits: quantities(&[("cpu", "100m"), ("memory", "32Mi")]),
            claims: None,
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(NOBODY),
            run_as_group: Some(NOBODY),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: CONTAINER.to_owned(),
            mount_path: VOLUME_MOUNT.to_owned(),
            ..VolumeMount::default()
        }]),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// Whether a container of a host pod is the syncer's, not the tenant's.
pub fn is_ours(container: &str) -> bool {
    container == CONTAINER
}

/// Whether host event `field_path` (`spec.initContainers{NAME}`) is about
/// the syncer's container.
pub fn is_about_ours(field_path: &str) -> bool {
    field_path == format!("spec.initContainers{{{CONTAINER}}}")
}

/// Ephemeral containers to add to running host pod `host`, without the
/// `/etc/hosts` mount when that pod was made without its volume (before
/// the syncer wrote it).
pub fn fit_to(host: &PodSpec, containers: &mut [EphemeralContainer]) {
    if host.volumes.iter().flatten().any(|v| v.name == CONTAINER) {
        return;
    }
    for container in containers {
        if let Some(mounts) = container.volume_mounts.as_mut() {
            mounts.retain(|m| m.name != CONTAINER);
        }
    }
}

/// `kubelet_hosts` with every name that starts with `host_name` (the host
/// pod's FQDN up to its domain) replaced by `tenant_name`; the rest, the
/// kubelet's header, localhost lines and host aliases, as they are.
pub fn rewritten(kubelet_hosts: &str, host_name: &str, tenant_name: &str) -> String {
    let mut out = String::with_capacity(kubelet_hosts.len());
    for line in kubelet_hosts.split_inclusive('\n') {
        let (content, end) = match line.strip_suffix('\n') {
            Some(content) => (content, "\n"),
            None => (line, ""),
        };
        if content.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        // Keep the kubelet's separators: replace within the line.
        let mut rest = content;
        while let Some(start) = rest.find(|c: char| !c.is_whitespace()) {
            out.push_str(&rest[..start]);
            rest = &rest[start..];
            let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let field = &rest[..len];
            out.push_str(if field.starts_with(host_name) {
                tenant_name
            } else {
                field
            });
            rest = &rest[len..];
        }
        out.push_str(rest);
        out.push_str(end);
    }
    out
}

/// `vnest-syncer etc-hosts`: what the init container runs.
#[derive(clap::Parser, Debug, PartialEq)]
#[command(name = "vnest-syncer etc-hosts")]
pub struct EtcHosts {
    /// The start of the pod's name as the host kubelet writes it,
    /// `HOSTNAME.SUBDOMAIN.<host namespace>.svc.`
    #[arg(long)]
    pub host_name: String,
    /// The pod's name in its tenant cluster.
    #[arg(long)]
    pub tenant_name: String,
    /// Where the rewritten file goes.
    #[arg(long)]
    pub out: PathBuf,
}

impl EtcHosts {
    /// The init container's arguments: the subcommand and its flags.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            SUBCOMMAND.to_owned(),
            format!("--host-name={}", self.host_name),
            format!("--tenant-name={}", self.tenant_name),
            format!("--out={}", self.out.display()),
        ]
    }

    /// Reads this container's `/etc/hosts` and writes the rewritten file
    /// (whole, or not at all: it goes in under its name by a rename).
    pub fn run(&self) -> std::io::Result<()> {
        let kubelet_hosts = std::fs::read_to_string(PATH)?;
        let partial = self.out.with_extension("partial");
        std::fs::write(
            &partial,
            rewritten(&kubelet_hosts, &self.host_name, &self.tenant_name),
        )?;
        std::fs::rename(&partial, &self.out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    const KUBELET: &str = "# Kubernetes-managed hosts file.\n\
        127.0.0.1\tlocalhost\n\
        ::1\tlocalhost ip6-localhost ip6-loopback\n\
        10.244.1.7\tweb-0.web.vnest-t-a-1234-wl.svc.cluster.local\tweb-0\n\
        \n\
        # Entries added by HostAliases.\n\
        10.0.0.1\tfoo.web.vnest-t-a-1234-wl.svc.cluster.local\tbar";

    fn pod(spec: serde_json::Value) -> PodSpec {
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn the_host_name_becomes_the_tenants_and_nothing_else_changes() {
        let out = rewritten(
            KUBELET,
            "web-0.web.vnest-t-a-1234-wl.svc.",
            "web-0.web.shop.svc.cluster.local",
        );
        assert_eq!(
            out,
            KUBELET.replace(
                "10.244.1.7\tweb-0.web.vnest-t-a-1234-wl.svc.cluster.local",
                "10.244.1.7\tweb-0.web.shop.svc.cluster.local"
            )
        );
        // Another pod's name in an alias is the tenant's own writing.
        assert!(out.contains("foo.web.vnest-t-a-1234-wl.svc.cluster.local\tbar"));
    }

    #[test]
    fn pods_with_a_subdomain_get_the_init_container_and_every_container_the_file() {
        let mut spec = pod(serde_json::json!({
            "hostname": "web-0", "subdomain": "web",
            "initContainers": [{"name": "setup"}],
            "containers": [
                {"name": "app"},
                {"name": "own", "volumeMounts": [{"name": "h", "mountPath": "/etc/hosts"}]},
            ],
            "volumes": [{"name": "h", "configMap": {"name": "h"}}],
        }));
        provide(
            &mut spec,
            "vnest.local/vnest:1",
            "shop",
            "vnest-t-a-wl",
            "cluster.local",
        );
        let init = spec.init_containers.as_ref().unwrap();
        assert_eq!(init[0].name, CONTAINER);
        assert_eq!(init[1].name, "setup");
        let args = EtcHosts::try_parse_from(
            std::iter::once("vnest-syncer etc-hosts".to_owned())
                .chain(init[0].args.clone().unwrap().into_iter().skip(1)),
        )
        .unwrap();
        assert_eq!(
            args,
            EtcHosts {
                host_name: "web-0.web.vnest-t-a-wl.svc.".to_owned(),
                tenant_name: "web-0.web.shop.svc.cluster.local".to_owned(),
                out: "/vnest-etc-hosts/hosts".into(),
            }
        );
        let hosts_mount = |c: &Container| {
            c.volume_mounts
                .iter()
                .flatten()
                .find(|m| m.mount_path == "/etc/hosts")
                .map(|m| m.name.clone())
        };
        assert_eq!(hosts_mount(&init[1]).as_deref(), Some(CONTAINER));
        assert_eq!(hosts_mount(&spec.containers[0]).as_deref(), Some(CONTAINER));
        assert_eq!(hosts_mount(&spec.containers[1]).as_deref(), Some("h"));
        assert!(spec.volumes.unwrap().iter().any(|v| v.name == CONTAINER));
    }

    #[test]
    fn pods_the_kubelet_names_no_namespace_for_are_left_alone() {
        for spec in [
            serde_json::json!({"hostname": "a", "containers": [{"name": "app"}]}),
            serde_json::json!({"hostname": "a", "subdomain": "s", "hostNetwork": true,
                "containers": [{"name": "app"}]}),
            // The tenant took the name: its pod stays as it asked.
            serde_json::json!({"hostname": "a", "subdomain": "s",
                "containers": [{"name": CONTAINER}]}),
        ] {
            let mut spec = pod(spec);
            let before = spec.clone();
            provide(&mut spec, "image", "shop", "vnest-t-a-wl", "cluster.local");
            assert_eq!(spec, before);
        }
    }
}
