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
use vnest_syncer::certificate_reload::{self, ClientSwitch, Reloader};
use vnest_syncer::context::{Settings, Syncer, TenantNetwork, Watched};
use vnest_syncer::kubelet_proxy::{self, ServingTls};

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

fn free_address() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

/// An HTTP/1.1 connection over TLS to `address` as the holder of `client`:
/// the request sender, and the certificate the server presented.
async fn connect(
    address: SocketAddr,
    pki: &ControlPlanePki,
    client: &CertAndKey,
) -> (
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    Vec<u8>,
) {
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
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    (sender, served)
}

/// `GET`s `path` over TLS as the holder of `client`; the status code.
async fn call(address: SocketAddr, pki: &ControlPlanePki, client: &CertAndKey, path: &str) -> u16 {
    let (mut sender, _) = connect(address, pki, client).await;
    send(&mut sender, path).await
}

async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
) -> u16 {
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
    let address = free_address();
    let server = tokio::spawn(kubelet_proxy::serve(
        syncer(),
        address,
        Arc::new(ServingTls::new(tls)),
    ));
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

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// A plain HTTP server on `address` answering every request with `body`.
async fn answering(body: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                TokioIo::new(tcp),
                hyper::service::service_fn(move |_| async move {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(body.as_bytes()),
                    )))
                }),
            ));
        }
    });
    address
}

/// A tenant kubeconfig in `dir` for the server at `address`, as `pki`'s
/// admin.
fn write_kubeconfig(dir: &std::path::Path, address: SocketAddr, pki: &ControlPlanePki) {
    let kubeconfig = vnest_pki::render_kubeconfig(
        "shop",
        &format!("http://{address}"),
        &pki.ca.cert().cert_pem,
        "admin",
        vnest_pki::ClientCredentials::Certificate(&pki.admin),
    )
    .unwrap();
    // Whole or not at all, as the kubelet writes a Secret's files.
    std::fs::write(dir.join("kubeconfig.new"), kubeconfig).unwrap();
    std::fs::rename(dir.join("kubeconfig.new"), dir.join("kubeconfig")).unwrap();
}

/// `pki`'s files in `root/data-GENERATION`, then put in place at once as
/// `root/pki` (a symbolic link, as the kubelet's atomic writer does).
fn swap_in_pki(pki: &ControlPlanePki, root: &std::path::Path, generation: u32) {
    let data = root.join(format!("data-{generation}"));
    write_pki(pki, &data);
    let link = root.join("pki.new");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    std::fs::rename(&link, root.join("pki")).unwrap();
}

async fn tenant_says(client: &kube::Client) -> String {
    client
        .request_text(http::Request::get("/version").body(Vec::new()).unwrap())
        .await
        .unwrap()
}

/// What renewal does to a running syncer: the kubelet rewrites its files,
/// and from then on the proxy serves the new certificate and the tenant
/// client uses the new kubeconfig, while open connections go on; files it
/// cannot load leave the ones in use in place.
#[tokio::test]
async fn renewed_certificates_are_taken_without_a_restart() {
    let spec = ControlPlaneSpec::new("shop");
    let pki = ControlPlanePki::generate(&spec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    swap_in_pki(&pki, dir.path(), 1);
    let kubeconfig = dir.path().join("kubeconfig");
    write_kubeconfig(dir.path(), answering("first").await, &pki);

    let loaded = certificate_reload::contents(&kubeconfig, Some(&pki_dir));
    let serving = Arc::new(ServingTls::new(
        kubelet_proxy::tls_config(&pki_dir).unwrap(),
    ));
    let (switch, tenant) = ClientSwitch::new(
        certificate_reload::tenant_client(&kubeconfig)
            .await
            .unwrap(),
    );
    let syncer = syncer();
    let address = free_address();
    let server = tokio::spawn(kubelet_proxy::serve(
        syncer.clone(),
        address,
        serving.clone(),
    ));
    let reloader = tokio::spawn(
        Reloader {
            kubeconfig: kubeconfig.clone(),
            tenant: switch,
            serving: Some((pki_dir.clone(), serving)),
            loaded,
        }
        .run(syncer.clone()),
    );
    let kubelet = &pki.apiserver_kubelet_client;
    let (mut open, served) = loop {
        if TcpStream::connect(address).await.is_ok() {
            break connect(address, &pki, kubelet).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(served, der(&pki.kubelet_proxy.cert_pem));
    assert_eq!(tenant_says(&tenant).await, "first");

    let renewed = pki.renew_leaves(&spec).unwrap();
    swap_in_pki(&renewed, dir.path(), 2);
    write_kubeconfig(dir.path(), answering("second").await, &renewed);
    let deadline = tokio::time::Instant::now() + certificate_reload::CHECK_EVERY * 3;
    loop {
        let (_, served) = connect(address, &renewed, &renewed.apiserver_kubelet_client).await;
        if served == der(&renewed.kubelet_proxy.cert_pem) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed serving certificate was not taken"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(tenant_says(&tenant).await, "second");
    // The connection made before the renewal still serves.
    assert_eq!(send(&mut open, "/nothing-here").await, 404);
    let metrics = syncer.metrics.render();
    assert!(
        metrics.contains("vnest_syncer_certificate_reloads_total{outcome=\"taken\"} 1"),
        "{metrics}"
    );

    // A key that does not load is not taken: the renewed pair stays.
    std::fs::write(pki_dir.join(kubelet_proxy::KEY_FILE), "not a key").unwrap();
    let deadline = tokio::time::Instant::now() + certificate_reload::CHECK_EVERY * 3;
    while !syncer
        .metrics
        .render()
        .contains("vnest_syncer_certificate_reloads_total{outcome=\"failed\"}")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unloadable key was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, served) = connect(address, &renewed, &renewed.apiserver_kubelet_client).await;
    assert_eq!(served, der(&renewed.kubelet_proxy.cert_pem));
    assert_eq!(tenant_says(&tenant).await, "second");
    reloader.abort();
    server.abort();
}
