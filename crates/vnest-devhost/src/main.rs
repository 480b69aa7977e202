//! `vnest-devhost`: brings a real host cluster up on this machine and down
//! again. Development and test tooling, kept apart from vnest's product code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vnest_devhost::{DevHost, DevHostOptions, images};
use vnest_local::UpstreamBinaries;

#[derive(Debug, Parser)]
#[command(
    name = "vnest-devhost",
    version,
    about = "A real Kubernetes host cluster on this machine, for developing and testing vnest"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bring the host up and keep it until Ctrl-C or SIGTERM, then tear it down.
    ///
    /// Needs root and Debian's containerd, runc, containernetworking-plugins,
    /// iptables, conntrack and busybox-static (tools/host/install-prerequisites.sh).
    /// Prints the admin kubeconfig's path on stdout once ready.
    Up {
        /// How many nodes (kubelets), each in its own network namespace.
        #[arg(long, default_value_t = 2)]
        nodes: u8,
        /// How many simulated nodes (kwok): Ready Node objects whose pods are
        /// reported Running without running, for placement and scale tests.
        #[arg(long, default_value_t = 0)]
        simulated_nodes: u16,
        /// Where the host keeps its files; removed on teardown.
        #[arg(long, default_value = "/var/lib/vnest-devhost")]
        dir: PathBuf,
        /// How long each stage may take.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "3m")]
        timeout: Duration,
        /// A label every node registers with, KEY=VALUE (a vnest node pool,
        /// e.g. vnest.dev/pool=demo); repeat for each.
        #[arg(long = "node-label", value_name = "KEY=VALUE")]
        node_labels: Vec<String>,
        /// The kubelet's podPidsLimit on every node: at most this many
        /// processes per pod.
        #[arg(long, default_value_t = vnest_devhost::topology::DEFAULT_POD_PIDS_LIMIT)]
        pod_pids_limit: u32,
        /// Built vnest binaries (`vnest-supervisor`, `vnest-syncer`) to
        /// import on every node as vnest.local/vnest:VERSION; repeat for each.
        #[arg(long = "vnest-binary", value_name = "BINARY")]
        vnest_binaries: Vec<PathBuf>,
    },
    /// Remove what a crashed host left behind (network namespaces, bridge,
    /// processes, mounts, cgroups, files).
    Down {
        #[arg(long, default_value = "/var/lib/vnest-devhost")]
        dir: PathBuf,
    },
    /// Assemble images as OCI archives (no daemon, no registry): the node
    /// images, the control-plane images under their upstream names, and with
    /// --binary vnest's own image. Import one with
    /// `ctr -n k8s.io images import FILE`.
    Images {
        #[arg(long, default_value = "target/devhost-images")]
        out: PathBuf,
        /// Built vnest binaries (`vnest`, `vnest-supervisor`) to package as
        /// vnest.local/vnest:VERSION; repeat for each.
        #[arg(long = "binary", value_name = "BINARY")]
        binaries: Vec<PathBuf>,
    },
    /// Assemble stand-ins for the images the Kubernetes e2e suite names
    /// (agnhost, busybox, httpd, nginx, pause) under those names, as OCI
    /// archives; prints the archives, and on stderr the images left without
    /// one.
    E2eImages {
        #[arg(long, default_value = "target/e2e-images")]
        out: PathBuf,
        /// agnhost built from the pinned Kubernetes module.
        #[arg(long)]
        agnhost: PathBuf,
        /// agnhost's source directory (`test/images/agnhost` of the
        /// module), for the files its image carries (porter's TLS pair).
        #[arg(long)]
        agnhost_source: Option<PathBuf>,
        /// `nnp` built from `test/images/nonewprivs` of the module.
        #[arg(long)]
        nonewprivs: Option<PathBuf>,
        /// The server of `k8s.io/sample-apiserver` built from the module.
        #[arg(long)]
        sample_apiserver: Option<PathBuf>,
        /// The images, as `e2e.test --list-images` prints them.
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Import OCI archives into the containerd of every node of a running
    /// host.
    Import {
        #[arg(long, default_value = "/var/lib/vnest-devhost")]
        dir: PathBuf,
        #[arg(required = true)]
        archives: Vec<PathBuf>,
    },
    /// Make every node of a running host pull a registry's images from a
    /// mirror first (an `http://HOST:PORT` the nodes reach, e.g. the host
    /// bridge's 172.30.0.1), for tests that pull with `imagePullPolicy:
    /// Always`.
    Mirror {
        #[arg(long, default_value = "/var/lib/vnest-devhost")]
        dir: PathBuf,
        /// The mirror's URL.
        #[arg(long)]
        mirror: String,
        /// The registries it mirrors, e.g. registry.k8s.io.
        #[arg(required = true)]
        registries: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VNEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up {
            nodes,
            simulated_nodes,
            dir,
            timeout,
            node_labels,
            pod_pids_limit,
            vnest_binaries,
        } => {
            let mut options = DevHostOptions::new(nodes, dir, UpstreamBinaries::from_env());
            options.timeout = timeout;
            options.vnest_binaries = vnest_binaries;
            let labels = vnest_api::label_pairs::parse(&node_labels).context("--node-label")?;
            for node in &mut options.nodes {
                node.labels.extend(labels.clone());
                node.pod_pids_limit = pod_pids_limit;
            }
            options.simulated_nodes = vec![Vec::new(); usize::from(simulated_nodes)];
            let host = DevHost::up(options, |stage| eprintln!("  … {stage}")).await?;
            let kubeconfig = host
                .control_plane()
                .map(|cp| cp.admin_kubeconfig_path())
                .context("no control plane")?;
            println!("{}", kubeconfig.display());
            eprintln!("Host ready. Ctrl-C tears it down.");
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            eprintln!("Tearing down…");
            host.down().await;
            Ok(())
        }
        Command::Down { dir } => {
            vnest_devhost::sweep(&dir);
            Ok(())
        }
        Command::Images {
            out,
            binaries: vnest,
        } => {
            let binaries = UpstreamBinaries::from_env();
            let mut written = images::node_images(&out, &binaries)?;
            written.extend(images::control_plane_images(&out, &binaries)?);
            if !vnest.is_empty() {
                written.push(images::vnest_image(&out, &vnest)?);
            }
            for path in written {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::E2eImages {
            out,
            agnhost,
            agnhost_source,
            nonewprivs,
            sample_apiserver,
            references,
        } => {
            let etcd = UpstreamBinaries::from_env()
                .locate(vnest_local::Component::Etcd)
                .ok();
            let binaries = images::SuiteBinaries {
                agnhost: images::Agnhost {
                    binary: agnhost,
                    source: agnhost_source,
                },
                nonewprivs,
                sample_apiserver,
                etcd,
            };
            let (written, missing) = images::e2e_images(&out, &references, &binaries)?;
            for path in written {
                println!("{}", path.display());
            }
            for reference in missing {
                eprintln!("no stand-in for {reference}: tests that run it will not start");
            }
            Ok(())
        }
        Command::Import { dir, archives } => {
            let nodes =
                vnest_devhost::import_images(&dir, &archives, &UpstreamBinaries::from_env())?;
            eprintln!("imported {} archives into {nodes} nodes", archives.len());
            Ok(())
        }
        Command::Mirror {
            dir,
            mirror,
            registries,
        } => {
            for registry in &registries {
                let nodes = vnest_devhost::mirror_registry(&dir, registry, &mirror)?;
                eprintln!("{nodes} nodes pull {registry} from {mirror} first");
            }
            Ok(())
        }
    }
}
