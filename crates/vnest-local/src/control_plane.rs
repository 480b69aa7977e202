//! Starting, reaching and stopping one local control plane.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use vnest_pki::{ClientCredentials, ControlPlanePki, ControlPlaneSpec, render_kubeconfig};

use crate::binaries::{Component, UpstreamBinaries};
use crate::error::{Error, IoContext, Result};
use crate::health::{free_loopback_port, http_ok};
use crate::layout::{write_file, write_pki};
use crate::process::ManagedProcess;
use crate::workdir::WorkDir;
use vnest_control_plane::Layout;
use vnest_control_plane::flags::{self, Ports};

/// How often start-up probes a component that is not ready yet.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long one probe may take before it counts as "not ready".
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often start-up is retried when a picked port was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;
/// How long a component gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a restarted apiserver may take to be ready again.
const STARTUP_TIMEOUT_AFTER_RESTART: Duration = Duration::from_secs(60);

/// How to start a local control plane.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// The cluster's name: CA common names and the kubeconfig's cluster name.
    pub name: String,
    pub binaries: UpstreamBinaries,
    /// Where certificates, etcd data and logs go; a fresh temporary directory
    /// when `None`. Either way the control plane removes it when it stops.
    pub workdir: Option<PathBuf>,
    /// Also run kube-scheduler (pods are only scheduled with it).
    pub with_scheduler: bool,
    /// How long each component may take to become ready.
    pub startup_timeout: Duration,
    /// Where the apiserver listens and what it advertises; loopback unless
    /// nodes or pods elsewhere must reach it. etcd stays on loopback.
    pub address: IpAddr,
}

impl LocalOptions {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            binaries: UpstreamBinaries::from_env(),
            workdir: None,
            with_scheduler: false,
            startup_timeout: Duration::from_secs(120),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// A step of start-up, for showing progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    IssuingCertificates,
    Starting(Component),
    /// `elapsed` counts from the start of [`LocalControlPlane::start`].
    Ready {
        component: Component,
        elapsed: Duration,
    },
}

/// A running control plane; dropping it kills its processes and removes its
/// directory, [`LocalControlPlane::stop`] does the same gracefully.
pub struct LocalControlPlane {
    name: String,
    // Declared before `workdir` so the processes are gone before the
    // directory they write into is removed.
    processes: Vec<(Component, ManagedProcess)>,
    pki: ControlPlanePki,
    server: String,
    etcd: String,
    admin_kubeconfig: String,
    client: Client,
    layout: Layout,
    workdir: WorkDir,
}

impl std::fmt::Debug for LocalControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalControlPlane")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("workdir", &self.workdir.path())
            .finish_non_exhaustive()
    }
}

impl LocalControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager (and the
    /// scheduler if asked) and returns once each is ready.
    pub async fn start(options: LocalOptions) -> Result<Self> {
        Self::start_with_progress(options, |_| {}).await
    }

    /// [`start`](Self::start), reporting each step to `progress`.
    pub async fn start_with_progress(
        options: LocalOptions,
        mut progress: impl FnMut(Progress),
    ) -> Result<Self> {
        let started = Instant::now();
        validate_name(&options.name)?;
        let binaries = Binaries::locate(&options.binaries, options.with_scheduler)?;
        let workdir = match &options.workdir {
            Some(path) => WorkDir::at(path)?,
            None => WorkDir::temporary()?,
        };
        let layout = Layout {
            dir: workdir.path().to_owned(),
        };
        let span = tracing::info_span!("local_control_plane", name = %options.name, dir = %layout.dir.display());
        let _guard = span.enter();

        progress(Progress::IssuingCertificates);
        let mut spec = ControlPlaneSpec::new(&options.name);
        spec.apiserver_names.push(options.address.to_string());
        let pki = ControlPlanePki::generate(&spec)?;
        write_pki(&layout, &pki)?;

        let mut attempt = 1;
        loop {
            let ports = pick_ports()?;
            let launch = Launch {
                options: &options,
                binaries: &binaries,
                layout: &layout,
                pki: &pki,
                ports,
                started,
                processes: Vec::new(),
            };
            match launch.run(&mut progress).await {
                Ok((processes, admin_kubeconfig, client)) => {
                    tracing::info!(elapsed = ?started.elapsed(), port = ports.apiserver, "control plane ready");
                    return Ok(Self {
                        name: options.name.clone(),
                        processes,
                        pki,
                        server: server_url(options.address, ports.apiserver),
                        etcd: server_url(options.address, ports.etcd_client),
                        admin_kubeconfig,
                        client,
                        layout,
                        workdir,
                    });
                }
                Err(error) if attempt < PORT_ATTEMPTS && port_was_taken(&error) => {
                    tracing::warn!(
                        attempt,
                        "a picked port was taken meanwhile; retrying with new ports"
                    );
                    attempt += 1;
                    let data = layout.etcd_data();
                    if data.exists() {
                        std::fs::remove_dir_all(&data)
                            .context(|| format!("clearing {}", data.display()))?;
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The apiserver's URL, `https://ADDRESS:PORT`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// etcd's client URL, `https://ADDRESS:PORT` (mutual TLS with the
    /// etcd CA of [`Self::pki`]).
    pub fn etcd(&self) -> &str {
        &self.etcd
    }

    /// The PKI files' directory, in kubeadm's layout.
    pub fn pki_dir(&self) -> PathBuf {
        self.layout.pki("")
    }

    /// A client authenticated as the cluster admin (`system:masters`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The admin kubeconfig, with everything embedded.
    pub fn admin_kubeconfig(&self) -> &str {
        &self.admin_kubeconfig
    }

    /// The admin kubeconfig's file inside the work directory.
    pub fn admin_kubeconfig_path(&self) -> PathBuf {
        self.layout.kubeconfig("admin")
    }

    /// The certificates the control plane runs with; its CAs can sign more.
    pub fn pki(&self) -> &ControlPlanePki {
        &self.pki
    }

    pub fn workdir(&self) -> &Path {
        self.workdir.path()
    }

    /// Each running component with its process id and log file.
    pub fn components(&self) -> Vec<(Component, u32, PathBuf)> {
        self.processes
            .iter()
            .map(|(c, p)| (*c, p.pid(), p.log().to_owned()))
            .collect()
    }

    /// An error naming the first component that has exited since start-up.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.processes
            .iter_mut()
            .try_for_each(|(_, p)| p.ensure_running())
    }

    /// Kills the apiserver (SIGKILL, as a crash), starts it again with the
    /// same command line and returns once it is ready: for tests of what
    /// clients do while their apiserver goes away.
    pub async fn crash_apiserver(&mut self) -> Result<()> {
        let Some((_, process)) = self
            .processes
            .iter_mut()
            .find(|(c, _)| *c == Component::ApiServer)
        else {
            return Ok(());
        };
        process.crash_and_restart()?;
        let since = Instant::now();
        loop {
            process.ensure_running()?;
            let ready = match http::Request::get("/readyz").body(Vec::new()) {
                Ok(request) => {
                    tokio::time::timeout(PROBE_TIMEOUT, self.client.request_text(request))
                        .await
                        .is_ok_and(|r| r.is_ok())
                }
                Err(_) => false,
            };
            if ready {
                tracing::info!(took = ?since.elapsed(), "apiserver back after a crash");
                return Ok(());
            }
            if since.elapsed() > STARTUP_TIMEOUT_AFTER_RESTART {
                return Err(process.not_ready(STARTUP_TIMEOUT_AFTER_RESTART));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Leaves the work directory (certificates, data, logs) on disk when the
    /// control plane stops, for a post-mortem.
    pub fn keep_workdir(&mut self) {
        self.workdir.keep();
    }

    /// Stops the components in reverse start order (SIGTERM, then SIGKILL
    /// after a grace period) and removes the work directory.
    pub async fn stop(mut self) {
        let span = tracing::info_span!("local_control_plane", name = %self.name);
        let _guard = span.enter();
        for (_, process) in self.processes.iter_mut().rev() {
            process.terminate(STOP_GRACE).await;
        }
        tracing::info!("control plane stopped");
    }
}

/// Checks that `name` can name a local control plane: a DNS label of at
/// most 40 characters, since it ends up in certificate and file names.
pub fn validate_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_owned()))
    }
}

struct Binaries {
    etcd: PathBuf,
    apiserver: PathBuf,
    controller_manager: PathBuf,
    scheduler: Option<PathBuf>,
}

impl Binaries {
    fn locate(from: &UpstreamBinaries, with_scheduler: bool) -> Result<Self> {
        Ok(Self {
            etcd: from.locate(Component::Etcd)?,
            apiserver: from.locate(Component::ApiServer)?,
            controller_manager: from.locate(Component::ControllerManager)?,
            scheduler: match with_scheduler {
                true => Some(from.locate(Component::Scheduler)?),
                false => None,
            },
        })
    }
}

fn pick_ports() -> Result<Ports> {
    Ok(Ports {
        etcd_client: free_loopback_port()?,
        etcd_peer: free_loopback_port()?,
        etcd_metrics: free_loopback_port()?,
        apiserver: free_loopback_port()?,
        controller_manager: free_loopback_port()?,
        scheduler: free_loopback_port()?,
    })
}

fn server_url(address: IpAddr, port: u16) -> String {
    format!("https://{}", std::net::SocketAddr::new(address, port))
}

fn port_was_taken(error: &Error) -> bool {
    matches!(error, Error::Exited { tail, .. } if tail.contains("address already in use"))
}

/// One attempt at starting every component on one set of ports. On error the
/// processes started so far are dropped, which kills them.
struct Launch<'a> {
    options: &'a LocalOptions,
    binaries: &'a Binaries,
    layout: &'a Layout,
    pki: &'a ControlPlanePki,
    ports: Ports,
    started: Instant,
    processes: Vec<(Component, ManagedProcess)>,
}

impl Launch<'_> {
    async fn run(
        mut self,
        progress: &mut impl FnMut(Progress),
    ) -> Result<(Vec<(Component, ManagedProcess)>, String, Client)> {
        let (layout, ports, binaries, name) =
            (self.layout, self.ports, self.binaries, &self.options.name);

        self.spawn(
            Component::Etcd,
            &binaries.etcd,
            flags::etcd(layout, &ports, name),
            progress,
        )?;
        self.wait_ready(progress, || http_ok(ports.etcd_metrics, "/readyz"))
            .await?;

        let server = server_url(self.options.address, ports.apiserver);
        let admin_kubeconfig = self.write_kubeconfig("admin", &server, &self.pki.admin)?;
        self.write_kubeconfig("controller-manager", &server, &self.pki.controller_manager)?;
        self.write_kubeconfig("scheduler", &server, &self.pki.scheduler)?;
        let client = client_for(&admin_kubeconfig).await?;

        self.spawn(
            Component::ApiServer,
            &binaries.apiserver,
            flags::apiserver(layout, &ports, self.options.address),
            progress,
        )?;
        self.wait_ready(progress, || async {
            let request = http::Request::get("/readyz").body(Vec::new());
            match request {
                Ok(request) => client.request_text(request).await.is_ok(),
                Err(_) => false,
            }
        })
        .await?;

        self.spawn(
            Component::ControllerManager,
            &binaries.controller_manager,
            flags::controller_manager(layout, &ports, name),
            progress,
        )?;
        // Ready means its controllers run: the service-account controller has
        // created the `default` ServiceAccount of the `default` namespace.
        let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        self.wait_ready(progress, || async {
            matches!(service_accounts.get_opt("default").await, Ok(Some(_)))
        })
        .await?;

        if let Some(scheduler) = &binaries.scheduler {
            self.spawn(
                Component::Scheduler,
                scheduler,
                flags::scheduler(layout, &ports),
                progress,
            )?;
            let health = health_client(ports.scheduler)?;
            self.wait_ready(progress, || async {
                match http::Request::get("/healthz").body(Vec::new()) {
                    Ok(request) => health.request_text(request).await.is_ok(),
                    Err(_) => false,
                }
            })
            .await?;
        }
        Ok((self.processes, admin_kubeconfig, client))
    }

    fn spawn(
        &mut self,
        component: Component,
        binary: &Path,
        args: Vec<String>,
        progress: &mut impl FnMut(Progress),
    ) -> Result<()> {
        progress(Progress::Starting(component));
        let log = self.layout.log(component.binary());
        let process = ManagedProcess::spawn(component.binary(), binary, &args, log)?;
        self.processes.push((component, process));
        Ok(())
    }

    /// Polls `probe` until it succeeds, failing early if the process exits.
    async fn wait_ready<F, Fut>(
        &mut self,
        progress: &mut impl FnMut(Progress),
        mut probe: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let since = Instant::now();
        let timeout = self.options.startup_timeout;
        let Some((component, process)) = self.processes.last_mut() else {
            return Ok(());
        };
        let component = *component;
        loop {
            process.ensure_running()?;
            if tokio::time::timeout(PROBE_TIMEOUT, probe()).await == Ok(true) {
                tracing::info!(%component, took = ?since.elapsed(), "ready");
                progress(Progress::Ready {
                    component,
                    elapsed: self.started.elapsed(),
                });
                return Ok(());
            }
            if since.elapsed() > timeout {
                return Err(process.not_ready(timeout));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn write_kubeconfig(
        &self,
        user_file: &str,
        server: &str,
        credentials: &vnest_pki::CertAndKey,
    ) -> Result<String> {
        let yaml = render_kubeconfig(
            &self.options.name,
            server,
            &self.pki.ca.cert().cert_pem,
            &common_name_of(user_file),
            ClientCredentials::Certificate(credentials),
        )?;
        write_file(&self.layout.kubeconfig(user_file), &yaml, true)?;
        Ok(yaml)
    }
}

/// The kubeconfig user name for each file: the identity the certificate carries.
fn common_name_of(user_file: &str) -> String {
    use vnest_pki::identity::*;
    match user_file {
        "admin" => ADMIN_USER,
        "controller-manager" => CONTROLLER_MANAGER_USER,
        "scheduler" => SCHEDULER_USER,
        other => other,
    }
    .to_owned()
}

async fn client_for(kubeconfig: &str) -> Result<Client> {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig).map_err(Error::Kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(Error::Kubeconfig)?;
    Client::try_from(config).map_err(Error::Client)
}

/// A client for a component's health endpoint on loopback. The scheduler
/// serves it with a self-signed certificate it made itself, and `/healthz`
/// is readable without credentials, so nothing is verified or sent.
fn health_client(port: u16) -> Result<Client> {
    let url = format!("https://127.0.0.1:{port}");
    let mut config = Config::new(url.parse().map_err(|_| Error::InvalidUrl(url.clone()))?);
    config.accept_invalid_certs = true;
    Client::try_from(config).map_err(Error::Client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_dns_labels() {
        for good in ["a", "ci-123", "x0"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "A", "-a", "a-", "a_b", "a.b", &"x".repeat(41)] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_a_taken_port_is_retried() {
        let exited = |tail: &str| Error::Exited {
            process: "etcd".into(),
            status: "exit status: 1".into(),
            log: PathBuf::from("/l"),
            tail: tail.into(),
        };
        assert!(port_was_taken(&exited(
            "listen tcp 127.0.0.1:5: bind: address already in use"
        )));
        assert!(!port_was_taken(&exited("permission denied")));
    }
}
