//! The local control plane against the real upstream etcd, kube-apiserver and
//! kube-controller-manager built by `tools/upstream/build.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, Config};
use vnest_tests::{TestControlPlane, control_plane_options, process_is_gone};

fn named<T: kube::Resource<DynamicType = ()> + Default>(name: &str) -> T {
    let mut object = T::default();
    *object.meta_mut() = ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    };
    object
}

#[tokio::test]
async fn the_admin_certificate_creates_and_lists_a_namespace() {
    let cp = TestControlPlane::start("ns").await;
    let namespaces: Api<Namespace> = Api::all(cp.client());
    namespaces
        .create(&PostParams::default(), &named("team-a"))
        .await
        .unwrap();
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|ns| ns.metadata.name)
        .collect();
    assert!(names.contains(&"team-a".to_owned()), "{names:?}");
    assert!(names.contains(&"kube-system".to_owned()), "{names:?}");
    cp.stop().await;
}

#[tokio::test]
async fn a_token_issued_by_the_controller_manager_is_accepted_by_the_apiserver() {
    let cp = TestControlPlane::start("token").await;
    let client = cp.client();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    sas.create(&PostParams::default(), &named("robot"))
        .await
        .unwrap();

    // The controller-manager's token controller fills in a legacy token
    // Secret, signing it with sa.key; the apiserver verifies with sa.pub.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let mut secret: Secret = named("robot-token");
    secret.type_ = Some("kubernetes.io/service-account-token".to_owned());
    secret.metadata.annotations = Some(
        [(
            "kubernetes.io/service-account.name".to_owned(),
            "robot".to_owned(),
        )]
        .into(),
    );
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let token = wait_for_token(&secrets, "robot-token").await;

    let review = self_subject_review(&cp, &token)
        .await
        .expect("the apiserver accepts the token");
    let user = review.status.unwrap().user_info.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:default:robot")
    );

    // A token whose signature does not verify is refused.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let err = self_subject_review(&cp, &String::from_utf8(forged).unwrap())
        .await
        .expect_err("a forged token must be refused");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 401),
        "{err:?}"
    );
    cp.stop().await;
}

async fn wait_for_token(secrets: &Api<Secret>, name: &str) -> String {
    for _ in 0..300 {
        if let Some(ByteString(token)) = secrets
            .get(name)
            .await
            .unwrap()
            .data
            .and_then(|mut d| d.remove("token"))
        {
            return String::from_utf8(token).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the controller-manager never filled in {name}");
}

async fn self_subject_review(
    cp: &TestControlPlane,
    token: &str,
) -> kube::Result<SelfSubjectReview> {
    let mut config = Config::new(cp.server().parse().unwrap());
    config.root_cert = Some(vec![pem_to_der(&cp.pki().ca.cert().cert_pem)]);
    config.auth_info.token = Some(token.to_owned().into());
    let client = Client::try_from(config).unwrap();
    let reviews: Api<SelfSubjectReview> = Api::all(client);
    reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[tokio::test]
async fn a_client_refuses_a_serving_certificate_whose_names_do_not_match() {
    let cp = TestControlPlane::start("san").await;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(cp.admin_kubeconfig()).unwrap();
    let base = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let version = |server_name: &'static str| {
        let mut config = base.clone();
        config.tls_server_name = Some(server_name.to_owned());
        async move { Client::try_from(config).unwrap().apiserver_version().await }
    };
    // The in-cluster name is in the certificate: accepted.
    version("kubernetes.default.svc")
        .await
        .expect("a name in the certificate is accepted");
    // A name the certificate does not carry: the TLS handshake fails.
    let err = version("not-the-apiserver.example")
        .await
        .expect_err("a name not in the certificate");
    let chain = error_chain(&err);
    assert!(
        chain.contains("NotValidForName") || chain.contains("not valid for"),
        "expected a name mismatch, got: {chain}"
    );
    cp.stop().await;
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = format!("{err:?}");
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(&format!(" <- {e:?}"));
        source = e.source();
    }
    out
}

#[tokio::test]
async fn two_control_planes_run_side_by_side_and_share_nothing() {
    let (a, b) = tokio::join!(
        TestControlPlane::start("pair-a"),
        TestControlPlane::start("pair-b")
    );
    assert_ne!(a.server(), b.server());
    let in_a: Api<Namespace> = Api::all(a.client());
    in_a.create(&PostParams::default(), &named("only-in-a"))
        .await
        .unwrap();
    let in_b: Api<Namespace> = Api::all(b.client());
    assert!(in_b.get_opt("only-in-a").await.unwrap().is_none());
    // a's admin certificate means nothing to b: b has its own CA.
    let mut config = Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(a.admin_kubeconfig()).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    config.cluster_url = b.server().parse().unwrap();
    let cross = Client::try_from(config).unwrap().apiserver_version().await;
    assert!(cross.is_err(), "a's kubeconfig must not reach b");
    tokio::join!(a.stop(), b.stop());
}

#[tokio::test]
async fn stopping_leaves_no_process_and_no_directory() {
    let cp = TestControlPlane::start_with({
        let mut o = control_plane_options("stop");
        o.with_scheduler = true;
        o
    })
    .await;
    let components = cp.components();
    assert_eq!(
        components.len(),
        4,
        "etcd, apiserver, controller-manager, scheduler"
    );
    let dir = cp.workdir().to_owned();
    cp.stop().await;
    for (component, pid, _) in components {
        assert!(process_is_gone(pid), "{component} (pid {pid}) still runs");
    }
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[tokio::test]
async fn a_panicking_owner_leaves_no_process_and_no_directory() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let cp = vnest_local::LocalControlPlane::start(control_plane_options("panic"))
            .await
            .unwrap();
        let pids: Vec<u32> = cp.components().into_iter().map(|(_, pid, _)| pid).collect();
        tx.send((pids, cp.workdir().to_owned())).unwrap();
        panic!("the test owning the control plane fails");
    });
    assert!(task.await.unwrap_err().is_panic());
    let (pids, dir) = rx.await.unwrap();
    for pid in pids {
        assert!(process_is_gone(pid), "pid {pid} survived the panic");
    }
    assert!(!dir.exists(), "{} survived the panic", dir.display());
}
