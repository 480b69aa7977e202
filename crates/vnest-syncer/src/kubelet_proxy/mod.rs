//! The kubelet proxy: the tenant's Nodes name it as their kubelet, so the
//! tenant apiserver sends it `kubectl logs`, `exec`, `attach` and
//! `port-forward`. It serves them through the host apiserver's pod
//! subresources, with the syncer's host identity (rights in the tenant's
//! workloads namespace only), so it can never reach another tenant's pods
//! or anything else of a real kubelet.
//!
//! Who may call: TLS with the tenant CA as client authority, and of its
//! certificates only the apiserver's kubelet client
//! ([`vnest_pki::identity::APISERVER_KUBELET_CLIENT_USER`]); everyone else
//! gets 403. The proxy's own certificate is issued by the supervisor for
//! the Service name the Nodes carry, and the tenant apiserver verifies it.
//!
//! The same listener serves the tenant apiserver's admission webhook for
//! Service addresses ([`crate::service_addresses`]), to one caller only: the
//! apiserver's webhook client, of the webhook client CA
//! ([`vnest_pki::identity::APISERVER_WEBHOOK_CLIENT_USER`]). Not the kubelet
//! client: the tenant can make its apiserver present that one anywhere
//! (`nodes/NAME/proxy/...`), and can have the controller-manager sign any
//! name with the tenant CA; neither holds the webhook client CA.

mod forward;
pub mod route;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::context::Syncer;

/// Response bodies: streamed from the host, or a short message.
pub type ProxyBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// File names in the PKI directory, as the supervisor lays them out.
pub const CA_FILE: &str = "ca.crt";
pub const WEBHOOK_CA_FILE: &str = "webhook-client-ca.crt";
pub const CERT_FILE: &str = "kubelet-proxy.crt";
pub const KEY_FILE: &str = "kubelet-proxy.key";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("reading {path}: {source}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("the kubelet proxy's TLS settings: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the tenant CA cannot verify clients: {0}")]
    ClientAuthority(#[from] rustls::server::VerifierBuilderError),
    #[error("listening on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let pem = |source| ProxyError::Pem {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(ProxyError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The proxy's TLS, and how it tells its callers apart.
pub struct ProxyTls {
    pub config: Arc<ServerConfig>,
    /// How long a client has for its TLS handshake.
    pub handshake_timeout: std::time::Duration,
    /// The webhook client CA's subject (DER): the issuer of the one
    /// certificate the webhook accepts.
    pub webhook_issuer: Vec<u8>,
}

/// TLS for the proxy from `pki_dir`: its serving pair, and the tenant CA
/// and the webhook client CA as the authorities client certificates must
/// chain to.
pub fn tls_config(pki_dir: &Path) -> Result<ProxyTls, ProxyError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in certificates(&pki_dir.join(CA_FILE))? {
        roots.add(ca)?;
    }
    let webhook_ca_path = pki_dir.join(WEBHOOK_CA_FILE);
    let webhook_cas = certificates(&webhook_ca_path)?;
    let webhook_issuer =
        webhook_cas
            .first()
            .and_then(|ca| subject(ca))
            .ok_or(ProxyError::NoCertificate {
                path: webhook_ca_path,
            })?;
    for ca in webhook_cas {
        roots.add(ca)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let key_path = pki_dir.join(KEY_FILE);
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|source| ProxyError::Pem {
        path: key_path,
        source,
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(&pki_dir.join(CERT_FILE))?, key)?;
    // Streams are HTTP/1.1 upgrades.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ProxyTls {
        config: Arc::new(config),
        handshake_timeout: HANDSHAKE_TIMEOUT,
        webhook_issuer,
    })
}

/// The proxy's TLS as last loaded: each new connection takes the current
/// one, so renewed certificates ([`ServingTls::replace`]) serve from the
/// next handshake on while open connections go on with the old ones
/// (still valid: a renewal keeps the CAs).
pub struct ServingTls(std::sync::RwLock<Arc<ProxyTls>>);

impl ServingTls {
    pub fn new(tls: ProxyTls) -> Self {
        Self(std::sync::RwLock::new(Arc::new(tls)))
    }

    pub fn replace(&self, tls: ProxyTls) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(tls);
    }

    fn current(&self) -> Arc<ProxyTls> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Who is calling, from the certificate it proved it holds (verified to
/// chain to the tenant CA or the webhook client CA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The tenant apiserver as a kubelet's client (tenant CA).
    KubeletClient,
    /// The tenant apiserver calling its admission webhook (webhook CA).
    WebhookClient,
    Other,
}

/// The caller holding `certificate`, given the webhook client CA's subject.
pub fn caller(certificate: &CertificateDer<'_>, webhook_issuer: &[u8]) -> Caller {
    use vnest_pki::identity::{APISERVER_KUBELET_CLIENT_USER, APISERVER_WEBHOOK_CLIENT_USER};
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate.as_ref()) else {
        return Caller::Other;
    };
    let name = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|n| n.as_str().ok());
    let by_webhook_ca = parsed.issuer().as_raw() == webhook_issuer;
    match (name, by_webhook_ca) {
        (Some(APISERVER_WEBHOOK_CLIENT_USER), true) => Caller::WebhookClient,
        (Some(APISERVER_KUBELET_CLIENT_USER), false) => Caller::KubeletClient,
        _ => Caller::Other,
    }
}

fn subject(certificate: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    Some(parsed.subject().as_raw().to_vec())
}

/// How long a client has for its TLS handshake, by default.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long the listener waits after a failed `accept`.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// Serves the proxy on `address` until the task is dropped.
pub async fn serve(
    syncer: Arc<Syncer>,
    address: SocketAddr,
    serving: Arc<ServingTls>,
) -> Result<(), ProxyError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ProxyError::Listen { address, source })?;
    tracing::info!(%address, "kubelet proxy serving");
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors, or a connection reset before it was
            // accepted: wait instead of spinning.
            Err(error) => {
                tracing::warn!(%error, "kubelet proxy: accepting a connection failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let current = serving.current();
        let syncer = syncer.clone();
        tokio::spawn(async move {
            let acceptor = TlsAcceptor::from(current.config.clone());
            // A client that opens a connection and says nothing gets no
            // task for longer than a handshake takes.
            let handshake = acceptor.accept(tcp);
            let tls = match tokio::time::timeout(current.handshake_timeout, handshake).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::info!(%peer, %error, "kubelet proxy: TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "kubelet proxy: TLS handshake timed out");
                    return;
                }
            };
            let caller = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map_or(Caller::Other, |leaf| caller(leaf, &current.webhook_issuer));
            if caller == Caller::Other {
                tracing::warn!(%peer, "kubelet proxy: caller is not the tenant apiserver");
            }
            let service = service_fn(move |request| {
                let syncer = syncer.clone();
                async move { Ok::<_, Infallible>(handle(&syncer, caller, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "kubelet proxy: connection ended with an error");
            }
        });
    }
}

/// The largest AdmissionReview the webhook reads (a Service is small).
const MAX_REVIEW_BYTES: usize = 1 << 20;

async fn handle(
    syncer: &Syncer,
    caller: Caller,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    if request.uri().path() == crate::service_addresses::WEBHOOK_PATH {
        let response = if caller == Caller::WebhookClient {
            admission(syncer, request).await
        } else {
            text(
                StatusCode::FORBIDDEN,
                "only the tenant's apiserver may call this webhook".to_owned(),
            )
        };
        syncer
            .metrics
            .kubelet_request("admission", response.status().as_u16());
        return response;
    }
    let call = route::parse(request.uri().path());
    let kind = call.as_ref().map_or("other", |c| c.kind.as_str());
    let response = match call {
        _ if caller != Caller::KubeletClient => text(
            StatusCode::FORBIDDEN,
            "only the tenant's apiserver may call this kubelet".to_owned(),
        ),
        None => text(
            StatusCode::NOT_FOUND,
            format!(
                "{} is not served: vnest's kubelet proxy serves logs, exec, attach and port-forward of the tenant's pods",
                request.uri().path()
            ),
        ),
        Some(call) => forward::call(syncer, call, request).await,
    };
    syncer
        .metrics
        .kubelet_request(kind, response.status().as_u16());
    response
}

/// The Service-address webhook: the review in, the answer out as JSON.
async fn admission(syncer: &Syncer, request: Request<Incoming>) -> Response<ProxyBody> {
    let body = match http_body_util::Limited::new(request.into_body(), MAX_REVIEW_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(error) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("reading the AdmissionReview: {error}"),
            );
        }
    };
    match crate::service_addresses::review(syncer, &body).await {
        Ok(answer) => respond(StatusCode::OK, "application/json", answer.to_string()),
        Err(message) => text(StatusCode::BAD_REQUEST, message),
    }
}

/// A plain-text answer, as a kubelet gives one.
pub fn text(status: StatusCode, message: String) -> Response<ProxyBody> {
    respond(status, "text/plain; charset=utf-8", message)
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vnest_pki::identity::{APISERVER_KUBELET_CLIENT_USER, APISERVER_WEBHOOK_CLIENT_USER};
    use vnest_pki::{ControlPlanePki, ControlPlaneSpec, LeafSpec};

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn only_the_webhook_client_ca_makes_a_webhook_caller() {
        let pki = ControlPlanePki::generate(&ControlPlaneSpec::new("shop")).unwrap();
        let webhook_issuer = subject(&der(&pki.webhook_client_ca.cert().cert_pem)).unwrap();
        let caller_of = |pem: &str| caller(&der(pem), &webhook_issuer);
        assert_eq!(
            caller_of(&pki.apiserver_webhook_client.cert_pem),
            Caller::WebhookClient
        );
        assert_eq!(
            caller_of(&pki.apiserver_kubelet_client.cert_pem),
            Caller::KubeletClient
        );
        // What the tenant can get: the controller-manager signs any name
        // with the tenant CA, the webhook's among them.
        let forged = pki
            .ca
            .issue(&LeafSpec::client(APISERVER_WEBHOOK_CLIENT_USER, None))
            .unwrap();
        assert_eq!(caller_of(&forged.cert_pem), Caller::Other);
        // And the webhook CA's name does not stand for the kubelet client.
        let crossed = pki
            .webhook_client_ca
            .issue(&LeafSpec::client(APISERVER_KUBELET_CLIENT_USER, None))
            .unwrap();
        assert_eq!(caller_of(&crossed.cert_pem), Caller::Other);
        assert_eq!(caller_of(&pki.admin.cert_pem), Caller::Other);
    }
}
