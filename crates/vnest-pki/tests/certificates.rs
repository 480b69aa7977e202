//! Parses every certificate of a generated control-plane set back and checks
//! what Kubernetes and etcd rely on: chain, names, key usages, validity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use vnest_pki::{
    CertAndKey, CertificateAuthority, ClientCredentials, ControlPlanePki, ControlPlaneSpec,
    LeafSpec, Usage, Validity, render_kubeconfig,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

fn with_cert<T>(pem: &str, f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let (_, pem) = parse_x509_pem(pem.as_bytes()).expect("PEM parses");
    let cert = pem.parse_x509().expect("DER parses");
    f(&cert)
}

fn spec() -> ControlPlaneSpec {
    let mut spec = ControlPlaneSpec::new("tenant-a");
    spec.apiserver_names = vec![
        "apiserver.vc-tenant-a.svc".to_owned(),
        "203.0.113.7".to_owned(),
    ];
    spec.etcd_names = vec!["etcd-0.etcd.vc-tenant-a.svc".to_owned()];
    spec.kubelet_proxy_names = vec!["kubelet-proxy.vc-tenant-a.svc".to_owned()];
    spec
}

struct Expected<'a> {
    what: &'static str,
    leaf: &'a CertAndKey,
    issuer: &'a CertificateAuthority,
    common_name: &'static str,
    group: Option<&'static str>,
    server: bool,
    client: bool,
    names: Vec<&'static str>,
}

#[test]
fn every_leaf_chains_to_its_ca_with_the_right_identity_and_usage() {
    let pki = ControlPlanePki::generate(&spec()).unwrap();
    let cases = [
        Expected {
            what: "apiserver",
            leaf: &pki.apiserver,
            issuer: &pki.ca,
            common_name: "kube-apiserver",
            group: None,
            server: true,
            client: false,
            names: vec![
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
                "10.96.0.1",
                "127.0.0.1",
                "::1",
                "apiserver.vc-tenant-a.svc",
                "203.0.113.7",
            ],
        },
        Expected {
            what: "apiserver-kubelet-client",
            leaf: &pki.apiserver_kubelet_client,
            issuer: &pki.ca,
            common_name: "kube-apiserver-kubelet-client",
            group: Some("system:masters"),
            server: false,
            client: true,
            names: vec![],
        },
        Expected {
            what: "kubelet-proxy",
            leaf: &pki.kubelet_proxy,
            issuer: &pki.ca,
            common_name: "kubelet-proxy",
            group: None,
            server: true,
            client: false,
            names: vec!["localhost", "kubelet-proxy.vc-tenant-a.svc"],
        },
        Expected {
            what: "controller-manager",
            leaf: &pki.controller_manager,
            issuer: &pki.ca,
            common_name: "system:kube-controller-manager",
            group: None,
            server: false,
            client: true,
            names: vec![],
        },
        Expected {
            what: "scheduler",
            leaf: &pki.scheduler,
            issuer: &pki.ca,
            common_name: "system:kube-scheduler",
            group: None,
            server: false,
            client: true,
            names: vec![],
        },
        Expected {
            what: "admin",
            leaf: &pki.admin,
            issuer: &pki.ca,
            common_name: "kubernetes-admin",
            group: Some("system:masters"),
            server: false,
            client: true,
            names: vec![],
        },
        Expected {
            what: "apiserver-etcd-client",
            leaf: &pki.apiserver_etcd_client,
            issuer: &pki.etcd_ca,
            common_name: "kube-apiserver-etcd-client",
            group: None,
            server: false,
            client: true,
            names: vec![],
        },
        Expected {
            what: "etcd server",
            leaf: &pki.etcd_server,
            issuer: &pki.etcd_ca,
            common_name: "etcd-server",
            group: None,
            server: true,
            client: true,
            names: vec![
                "localhost",
                "127.0.0.1",
                "::1",
                "etcd-0.etcd.vc-tenant-a.svc",
            ],
        },
        Expected {
            what: "etcd peer",
            leaf: &pki.etcd_peer,
            issuer: &pki.etcd_ca,
            common_name: "etcd-peer",
            group: None,
            server: true,
            client: true,
            names: vec![
                "localhost",
                "127.0.0.1",
                "::1",
                "etcd-0.etcd.vc-tenant-a.svc",
            ],
        },
        Expected {
            what: "front-proxy-client",
            leaf: &pki.front_proxy_client,
            issuer: &pki.front_proxy_ca,
            common_name: "front-proxy-client",
            group: None,
            server: false,
            client: true,
            names: vec![],
        },
    ];

    for case in &cases {
        with_cert(&case.issuer.cert().cert_pem, |ca| {
            with_cert(&case.leaf.cert_pem, |leaf| {
                let what = case.what;
                leaf.verify_signature(Some(ca.public_key()))
                    .unwrap_or_else(|e| panic!("{what}: not signed by its CA: {e}"));
                assert_eq!(leaf.issuer(), ca.subject(), "{what}: issuer name");
                assert!(
                    other_cas(&pki, case.issuer)
                        .all(|other| with_cert(&other.cert().cert_pem, |o| leaf
                            .verify_signature(Some(o.public_key()))
                            .is_err())),
                    "{what}: verifies against a CA that did not sign it"
                );

                let cn: Vec<_> = leaf
                    .subject()
                    .iter_common_name()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                assert_eq!(cn, [case.common_name], "{what}: common name");
                let orgs: Vec<_> = leaf
                    .subject()
                    .iter_organization()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                assert_eq!(
                    orgs,
                    case.group.into_iter().collect::<Vec<_>>(),
                    "{what}: group"
                );

                let bc = leaf.basic_constraints().unwrap();
                assert!(
                    bc.is_none_or(|bc| !bc.value.ca),
                    "{what}: a leaf must not be a CA"
                );
                let ku = leaf.key_usage().unwrap().expect("key usage present").value;
                assert!(ku.digital_signature(), "{what}: digitalSignature");
                assert!(!ku.key_cert_sign(), "{what}: must not sign certificates");
                let eku = leaf
                    .extended_key_usage()
                    .unwrap()
                    .expect("EKU present")
                    .value;
                assert_eq!(eku.server_auth, case.server, "{what}: serverAuth");
                assert_eq!(eku.client_auth, case.client, "{what}: clientAuth");

                let mut sans = sans_of(leaf);
                let mut expected: Vec<String> = case.names.iter().map(|s| s.to_string()).collect();
                sans.sort();
                expected.sort();
                assert_eq!(sans, expected, "{what}: subject alternative names");

                let validity = leaf.validity();
                assert!(validity.is_valid(), "{what}: valid now");
                let lifetime = validity.not_after.timestamp() - validity.not_before.timestamp();
                assert!(
                    (364 * 86400..=366 * 86400).contains(&lifetime),
                    "{what}: a leaf lives about a year, not {lifetime}s"
                );
                assert!(
                    validity.not_after.timestamp() <= ca.validity().not_after.timestamp(),
                    "{what}: outlives its CA"
                );
            })
        });
    }
}

fn other_cas<'a>(
    pki: &'a ControlPlanePki,
    issuer: &'a CertificateAuthority,
) -> impl Iterator<Item = &'a CertificateAuthority> {
    [&pki.ca, &pki.etcd_ca, &pki.front_proxy_ca]
        .into_iter()
        .filter(move |ca| !std::ptr::eq(*ca, issuer))
}

fn sans_of(cert: &X509Certificate<'_>) -> Vec<String> {
    let Some(san) = cert.subject_alternative_name().unwrap() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => dns.to_string(),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap()).to_string(),
                16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap()).to_string(),
                n => panic!("IP SAN of {n} bytes"),
            },
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

#[test]
fn the_three_cas_are_distinct_self_signed_cas() {
    let pki = ControlPlanePki::generate(&spec()).unwrap();
    let mut subjects = Vec::new();
    for ca in [&pki.ca, &pki.etcd_ca, &pki.front_proxy_ca] {
        with_cert(&ca.cert().cert_pem, |cert| {
            cert.verify_signature(None).expect("self-signed");
            let bc = cert
                .basic_constraints()
                .unwrap()
                .expect("basicConstraints")
                .value;
            assert!(bc.ca);
            let ku = cert.key_usage().unwrap().expect("key usage").value;
            assert!(ku.key_cert_sign() && ku.crl_sign());
            let validity = cert.validity();
            let lifetime = validity.not_after.timestamp() - validity.not_before.timestamp();
            assert!(lifetime >= 3649 * 86400, "a CA lives ten years");
            subjects.push(cert.subject().to_string());
        });
    }
    assert_eq!(
        subjects,
        [
            "CN=tenant-a-ca",
            "CN=tenant-a-etcd-ca",
            "CN=tenant-a-front-proxy-ca"
        ]
    );
}

#[test]
fn keys_belong_to_their_certificates() {
    let pki = ControlPlanePki::generate(&spec()).unwrap();
    let mut pairs: Vec<&CertAndKey> =
        vec![pki.ca.cert(), pki.etcd_ca.cert(), pki.front_proxy_ca.cert()];
    pairs.extend([
        &pki.apiserver,
        &pki.admin,
        &pki.etcd_server,
        &pki.apiserver_etcd_client,
    ]);
    for pair in pairs {
        let key = rcgen::KeyPair::from_pem(&pair.key_pem).unwrap();
        with_cert(&pair.cert_pem, |cert| {
            assert_eq!(
                cert.public_key().subject_public_key.data.as_ref(),
                key.public_key_raw()
            );
        });
    }
    let sa = rcgen::KeyPair::from_pem(&pki.service_account.private_key_pem).unwrap();
    assert_eq!(sa.public_key_pem(), pki.service_account.public_key_pem);
}

#[test]
fn a_ca_loaded_from_pem_signs_leaves_that_chain_to_it() {
    let original =
        CertificateAuthority::generate("reload", Validity::starting_now(Validity::CA_LIFETIME))
            .unwrap();
    let reloaded =
        CertificateAuthority::from_pem(&original.cert().cert_pem, &original.cert().key_pem)
            .unwrap();
    let leaf = reloaded
        .issue(&LeafSpec::client("system:node:n1", Some("system:nodes")))
        .unwrap();
    with_cert(&original.cert().cert_pem, |ca| {
        with_cert(&leaf.cert_pem, |cert| {
            cert.verify_signature(Some(ca.public_key()))
                .expect("chains to the original CA");
            assert_eq!(cert.issuer(), ca.subject());
        })
    });
}

#[test]
fn bad_subject_alt_names_are_refused_with_the_name() {
    let ca = CertificateAuthority::generate("ca", Validity::starting_now(Validity::CA_LIFETIME))
        .unwrap();
    for bad in [
        "",
        "has space.example",
        "-leading.example",
        "under_score.example",
        "a..b",
        "ünï.example",
    ] {
        let err = ca
            .issue(&LeafSpec::server("s", Usage::Server, vec![bad.to_owned()]))
            .expect_err(bad);
        assert!(
            err.to_string().contains(&format!("{bad:?}")),
            "{bad}: {err}"
        );
    }
    for good in [
        "*.example.com",
        "a-b.example",
        "10.0.0.1",
        "fd00::1",
        "localhost",
    ] {
        ca.issue(&LeafSpec::server("s", Usage::Server, vec![good.to_owned()]))
            .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}

#[test]
fn kubeconfig_embeds_server_ca_and_credentials() {
    let pki = ControlPlanePki::generate(&spec()).unwrap();
    let yaml = render_kubeconfig(
        "tenant-a",
        "https://127.0.0.1:6443",
        &pki.ca.cert().cert_pem,
        "kubernetes-admin",
        ClientCredentials::Certificate(&pki.admin),
    )
    .unwrap();
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for needle in [
        "apiVersion: v1".to_owned(),
        "kind: Config".to_owned(),
        "server: https://127.0.0.1:6443".to_owned(),
        "current-context: kubernetes-admin@tenant-a".to_owned(),
        format!(
            "certificate-authority-data: {}",
            b64(&pki.ca.cert().cert_pem)
        ),
        format!("client-certificate-data: {}", b64(&pki.admin.cert_pem)),
        format!("client-key-data: {}", b64(&pki.admin.key_pem)),
    ] {
        assert!(yaml.contains(&needle), "missing {needle:?} in\n{yaml}");
    }
    let token = render_kubeconfig(
        "c",
        "https://h:1",
        "CA",
        "u",
        ClientCredentials::Token("abc"),
    )
    .unwrap();
    assert!(token.contains("token: abc") && !token.contains("client-key-data"));
}

#[test]
fn pki_files_follow_the_kubeadm_layout_and_mark_keys_secret() {
    let pki = ControlPlanePki::generate(&spec()).unwrap();
    let files = pki.files();
    let paths: Vec<_> = files.iter().map(|f| f.path).collect();
    for expected in [
        "ca.crt",
        "ca.key",
        "etcd/ca.crt",
        "etcd/ca.key",
        "front-proxy-ca.crt",
        "apiserver.crt",
        "apiserver-etcd-client.key",
        "apiserver-kubelet-client.crt",
        "etcd/server.crt",
        "etcd/peer.key",
        "sa.key",
        "sa.pub",
        "admin.crt",
    ] {
        assert!(paths.contains(&expected), "missing {expected}");
    }
    for f in &files {
        assert_eq!(f.secret, f.path.ends_with(".key"), "{}", f.path);
        assert_eq!(f.contents.contains("PRIVATE KEY"), f.secret, "{}", f.path);
    }
}

#[test]
fn a_stored_set_loads_back_and_renewal_keeps_the_authorities() {
    let spec = spec();
    let pki = ControlPlanePki::generate(&spec).unwrap();
    let stored: std::collections::BTreeMap<String, String> = pki
        .files()
        .iter()
        .map(|f| (f.path.to_owned(), f.contents.to_owned()))
        .collect();
    let loaded = ControlPlanePki::from_files(|path| stored.get(path).cloned()).unwrap();
    let reloaded: std::collections::BTreeMap<String, String> = loaded
        .files()
        .iter()
        .map(|f| (f.path.to_owned(), f.contents.to_owned()))
        .collect();
    assert_eq!(stored, reloaded, "every file survives the round trip");

    let renewed = loaded.renew_leaves(&spec).unwrap();
    for kept in [
        "ca.crt",
        "ca.key",
        "etcd/ca.crt",
        "front-proxy-ca.key",
        "sa.key",
        "sa.pub",
    ] {
        let now = renewed
            .files()
            .into_iter()
            .find(|f| f.path == kept)
            .unwrap();
        assert_eq!(now.contents, stored[kept], "{kept} must survive renewal");
    }
    for changed in [
        "apiserver.crt",
        "apiserver.key",
        "admin.crt",
        "etcd/server.crt",
    ] {
        let now = renewed
            .files()
            .into_iter()
            .find(|f| f.path == changed)
            .unwrap();
        assert_ne!(now.contents, stored[changed], "{changed} must be renewed");
    }
    with_cert(&stored["ca.crt"], |ca| {
        with_cert(&renewed.apiserver.cert_pem, |leaf| {
            leaf.verify_signature(Some(ca.public_key()))
                .expect("a renewed leaf chains to the kept CA");
        })
    });
}

#[test]
fn expiring_leaves_are_found_and_cas_are_not_counted() {
    let pki = ControlPlanePki::generate(&spec()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    assert!(
        pki.leaves_expiring_before(now + time::Duration::days(30))
            .unwrap()
            .is_empty()
    );
    let soon = pki
        .leaves_expiring_before(now + time::Duration::days(400))
        .unwrap();
    assert_eq!(soon.len(), 11, "{soon:?}");
    assert!(
        soon.contains(&"apiserver.crt") && !soon.contains(&"ca.crt"),
        "{soon:?}"
    );
}

#[test]
fn a_set_stored_before_the_webhook_client_ca_gains_one() {
    let pki = ControlPlanePki::generate(&spec()).unwrap();
    let webhook_files = [vnest_pki::WEBHOOK_CLIENT_CA, vnest_pki::WEBHOOK_CLIENT];
    let stored: std::collections::BTreeMap<String, String> = pki
        .files()
        .iter()
        .filter(|f| {
            !webhook_files
                .iter()
                .any(|(crt, key)| f.path == *crt || f.path == *key)
        })
        .map(|f| (f.path.to_owned(), f.contents.to_owned()))
        .collect();
    let loaded = ControlPlanePki::from_files(|path| stored.get(path).cloned()).unwrap();
    let ca = loaded.webhook_client_ca.cert();
    assert_ne!(
        ca.cert_pem,
        pki.webhook_client_ca.cert().cert_pem,
        "a new one"
    );
    assert!(
        ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"),
        "{}",
        ca.cert_pem
    );
    assert!(
        loaded
            .files()
            .iter()
            .any(|f| f.path == vnest_pki::WEBHOOK_CLIENT.0),
        "and its leaf"
    );
}

#[test]
fn a_missing_stored_file_is_named() {
    let pki = ControlPlanePki::generate(&spec()).unwrap();
    let stored: std::collections::BTreeMap<String, String> = pki
        .files()
        .iter()
        .filter(|f| f.path != "etcd/peer.key")
        .map(|f| (f.path.to_owned(), f.contents.to_owned()))
        .collect();
    let err =
        ControlPlanePki::from_files(|path| stored.get(path).cloned()).expect_err("incomplete");
    assert!(err.to_string().contains("etcd/peer.key"), "{err}");
}
