//! Renewed certificates taken without a restart.
//!
//! The supervisor renews the tenant's leaf certificates (`vnest
//! renew-certificates`, or as they near expiry) and the kubelet updates the
//! syncer's mounted Secrets in place. A restart to take them would stop the
//! Service-address webhook for seconds, and every tenant Service create in
//! that window would fail. Instead the syncer looks at its files every
//! [`CHECK_EVERY`] and, when they changed, takes them for what comes next:
//!
//! - its tenant client ([`ClientSwitch`]): requests from then on go through
//!   a client built from the new kubeconfig (a new client certificate);
//!   watches already open run on until they end, as their certificate is
//!   still valid;
//! - the kubelet proxy's serving pair ([`ServingTls`]): new handshakes get
//!   the new certificate.
//!
//! A file read mid-update, or a pair that does not match, is not taken: the
//! old certificates stay in use and the next look tries again. A new CA is
//! not this module's: the supervisor restarts the syncer for that (the
//! pod template carries a hash of the CAs only).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::context::Syncer;
use crate::kubelet_proxy::{self, ProxyError, ServingTls};

/// How often the mounted files are compared with what was loaded.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("reading the tenant kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("a client from the tenant kubeconfig: {0}")]
    Client(#[from] kube::Error),
    #[error("the kubelet proxy's certificates: {0}")]
    Serving(#[from] ProxyError),
}

/// A client of the tenant cluster from `kubeconfig`. A connection not
/// answered in 3 s will not be: the tenant apiserver is a pod a few hops
/// away (just started, its traffic not yet admitted by the NetworkPolicy
/// enforcer), and the next try opens a new one. The default waits 30 s.
pub async fn tenant_client(kubeconfig: &Path) -> Result<kube::Client, ReloadError> {
    let failed = |source| ReloadError::Kubeconfig {
        path: kubeconfig.to_owned(),
        source,
    };
    let file = kube::config::Kubeconfig::read_from(kubeconfig).map_err(failed)?;
    let mut config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(failed)?;
    config.connect_timeout = Some(Duration::from_secs(3));
    Ok(kube::Client::try_from(config)?)
}

/// The client every request of the tenant client goes through: the one
/// built last ([`ClientSwitch::replace`]).
#[derive(Clone)]
pub struct ClientSwitch(Arc<RwLock<kube::Client>>);

impl ClientSwitch {
    /// A switch starting at `first`, and the client that sends through it.
    pub fn new(first: kube::Client) -> (Self, kube::Client) {
        let namespace = first.default_namespace().to_owned();
        let switch = Self(Arc::new(RwLock::new(first)));
        let client = kube::Client::new(switch.clone(), namespace);
        (switch, client)
    }

    /// Requests from now on go through `next`.
    pub fn replace(&self, next: kube::Client) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = next;
    }

    fn current(&self) -> kube::Client {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

type Sent =
    Pin<Box<dyn Future<Output = Result<http::Response<kube::client::Body>, kube::Error>> + Send>>;

impl tower_service::Service<http::Request<kube::client::Body>> for ClientSwitch {
    type Response = http::Response<kube::client::Body>;
    type Error = kube::Error;
    type Future = Sent;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The client behind is a buffer of its own: it waits there.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<kube::client::Body>) -> Self::Future {
        let client = self.current();
        Box::pin(async move { client.send(request).await })
    }
}

/// The contents of the syncer's certificate files: the tenant kubeconfig
/// and, when the kubelet proxy serves, its pair in `pki_dir`. A file that
/// cannot be read counts as empty.
pub fn contents(kubeconfig: &Path, pki_dir: Option<&Path>) -> Vec<Vec<u8>> {
    let mut paths = vec![kubeconfig.to_owned()];
    if let Some(dir) = pki_dir {
        paths
            .extend([kubelet_proxy::CERT_FILE, kubelet_proxy::KEY_FILE].map(|name| dir.join(name)));
    }
    paths
        .iter()
        .map(|path| std::fs::read(path).unwrap_or_default())
        .collect()
}

/// The syncer's certificate files and what uses them.
pub struct Reloader {
    pub kubeconfig: PathBuf,
    pub tenant: ClientSwitch,
    /// The kubelet proxy's PKI directory and its TLS, when it serves.
    pub serving: Option<(PathBuf, Arc<ServingTls>)>,
    /// The files' [`contents`] when the certificates in use were read.
    pub loaded: Vec<Vec<u8>>,
}

impl Reloader {
    fn contents(&self) -> Vec<Vec<u8>> {
        contents(
            &self.kubeconfig,
            self.serving.as_ref().map(|(dir, _)| dir.as_path()),
        )
    }

    /// Loads the files now in place and puts them in use; nothing changes
    /// if any of them cannot be loaded.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let client = tenant_client(&self.kubeconfig).await?;
        let tls = match &self.serving {
            Some((dir, serving)) => Some((kubelet_proxy::tls_config(dir)?, serving)),
            None => None,
        };
        self.tenant.replace(client);
        if let Some((tls, serving)) = tls {
            serving.replace(tls);
        }
        Ok(())
    }

    /// Looks at the files every [`CHECK_EVERY`] and reloads them when they
    /// changed, until the task is dropped.
    pub async fn run(self, syncer: Arc<Syncer>) {
        let metrics = &syncer.metrics;
        let mut loaded = self.loaded.clone();
        let mut ticks = tokio::time::interval(CHECK_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = self.contents();
            if now == loaded {
                continue;
            }
            match self.reload().await {
                Ok(()) => {
                    loaded = now;
                    metrics.certificates_reloaded("taken");
                    tracing::info!("took the renewed certificates");
                }
                Err(error) => {
                    metrics.certificates_reloaded("failed");
                    tracing::warn!(%error, "the certificate files changed but cannot be loaded; the ones in use stay, trying again");
                }
            }
        }
    }
}
