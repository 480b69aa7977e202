//! The kubelet proxy's listener on a real socket, with real certificates:
//! clients that open connections and never finish a handshake are dropped
//! after the handshake timeout and never keep the tenant apiserver out, and
//! each path takes only its one caller (the kubelet client for kubelet
//! paths, the webhook client of the webhook CA for the Service-address
//! webhook). No server behind it: the calls tested never reach the host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use vnest_pki::{CertAndKey, ControlPlanePki, ControlPlaneSpec};
use vnest_syncer::context::{Settings, Syncer, TenantNetwork, Watched};
use vnest_syncer::kubelet_proxy;

/// A syncer whose clients point nowhere (the listener's checks need none).
fn syncer() -> Arc<Syncer> {
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "test".into(),
            instance: None,
        },
    );
    let (namespaces, _) = reflector::store::<Namespace>();
    let (policies, _) = reflector::store::<NetworkPolicy>();
    let (services, _) = reflector::store::<
        vnest_syncer::statusless::Statusless<k8s_openapi::api::core::v1::Service>,
    >();
    Arc::new(Syncer::new(
        client.clone(),
        client,
        Settings::default(),
        recorder,
        TenantNetwork {
            namespaces,
            policies,
            services,
        },
        Watched {
            host_quotas: reflector::store().0,
            host_pods: reflector::store().0,
            tenant_pods: reflector::store().0,
        },
    ))
}

fn write_pki(pki: &ControlPlanePki, dir: &std::path::Path) {
    for file in pki.files() {
        let path = dir.join(file.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, file.contents).unwrap();
    }
}

/// `GET`s `path` over TLS as the holder of `client`; the status code.
async fn call(address: SocketAddr, pki: &ControlPlanePki, client: &CertAndKey, path: &str) -> u16 {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.cert().cert_pem.as_bytes()).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let tcp = TcpStream::connect(address).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the handshake completes");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::post(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

#[tokio::test]
async fn idle_clients_are_dropped_and_each_path_takes_its_one_caller() {
    let pki = ControlPlanePki::generate(&ControlPlaneSpec::new("shop")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_pki(&pki, dir.path());
    let mut tls = kubelet_proxy::tls_config(dir.path()).unwrap();
    tls.handshake_timeout = Duration::from_millis(500);
    let address = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let server = tokio::spawn(kubelet_proxy::serve(syncer(), address, tls));
    let mut idle = Vec::new();
    for _ in 0..50 {
        loop {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    idle.push(stream);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    // With 50 idle connections open, the apiserver's clients still get in,
    // each only where it belongs.
    let webhook = vnest_syncer::service_addresses::WEBHOOK_PATH;
    let kubelet = &pki.apiserver_kubelet_client;
    let webhook_client = &pki.apiserver_webhook_client;
    assert_eq!(call(address, &pki, kubelet, "/nothing-here").await, 404);
    assert_eq!(call(address, &pki, kubelet, webhook).await, 403);
    assert_eq!(
        call(address, &pki, webhook_client, "/nothing-here").await,
        403
    );
    // An empty review is the webhook's to turn down: the caller got in.
    assert_eq!(call(address, &pki, webhook_client, webhook).await, 400);
    assert_eq!(call(address, &pki, &pki.admin, "/nothing-here").await, 403);

    // The idle ones were dropped after the handshake timeout.
    for mut stream in idle {
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("an idle connection is closed by the server");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    server.abort();
}
