//! The tenant's kube-apiserver: a Deployment in the control-plane namespace
//! and the Service in front of it, of the type the VirtualCluster asks for.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, Secret, Service, ServicePort, ServiceSpec, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use vnest_api::{ExposeType, VirtualCluster};
use vnest_control_plane::flags;

use super::addresses::apiserver::SERVICE as APISERVER_SERVICE;
pub use super::addresses::apiserver::{
    COMPONENT, SECURE_PORT, SERVICE_PORT, in_cluster_host, in_cluster_url,
};
use super::addresses::etcd::EXTERNAL_CLIENT_SECRET;
use super::addresses::syncer::{KUBELET_PROXY_PORT, kubelet_proxy_host};
use super::datastore;
use super::pods::{self, Settings};
use super::resources::{self, Component};
const EXTERNAL_ETCD_DIR: &str = "/etc/vnest/etcd-client";
/// The Secret with the apiserver's admission configuration.
pub const ADMISSION_SECRET: &str = "apiserver-admission";
const ADMISSION_FILE: &str = "admission.yaml";
/// The Secret with the key the apiserver encrypts the tenant's Secrets
/// with in etcd; made once and never replaced (what it encrypted would be
/// lost).
pub const ENCRYPTION_SECRET: &str = vnest_api::apiserver_encryption::SECRET;
const ENCRYPTION_FILE: &str = vnest_api::apiserver_encryption::FILE;
const WEBHOOK_KUBECONFIG_FILE: &str = "webhook.kubeconfig";

/// The files of the PKI Secret the apiserver mounts (not the CA keys: only
/// the controller-manager signs).
pub const APISERVER_FILES: &[&str] = &[
    "ca.crt",
    "apiserver.crt",
    "apiserver.key",
    "apiserver-etcd-client.crt",
    "apiserver-etcd-client.key",
    "apiserver-kubelet-client.crt",
    "apiserver-kubelet-client.key",
    "front-proxy-ca.crt",
    "front-proxy-client.crt",
    "front-proxy-client.key",
    vnest_pki::WEBHOOK_CLIENT.0,
    vnest_pki::WEBHOOK_CLIENT.1,
    "sa.key",
    "sa.pub",
    "etcd/ca.crt",
];

/// The flag `arg` sets, as the apiserver reads it: its flag parser takes
/// `_` for `-` (`--authorization_mode` is `--authorization-mode`).
fn flag_name(arg: &str) -> String {
    arg.trim_start_matches('-')
        .split('=')
        .next()
        .unwrap_or_default()
        .replace('_', "-")
}

/// The apiserver's command line: where it listens, its etcd, the security
/// flags vnest always sets, then the VirtualCluster's extra flags.
pub fn args(vc: &VirtualCluster) -> Vec<String> {
    let mut args = vec![
        "--bind-address=0.0.0.0".to_owned(),
        "--advertise-address=$(POD_IP)".to_owned(),
        "--endpoint-reconciler-type=lease".to_owned(),
        format!("--secure-port={SECURE_PORT}"),
        format!("--etcd-servers={}", datastore::client_urls(vc).join(",")),
        format!(
            "--admission-control-config-file={}",
            pods::layout().dir.join(ADMISSION_FILE).display()
        ),
        format!(
            "--encryption-provider-config={}",
            pods::layout().dir.join(ENCRYPTION_FILE).display()
        ),
    ];
    let external = vc.spec.datastore.external.is_some();
    for arg in flags::apiserver_security(&pods::layout()) {
        let name = flag_name(&arg);
        if external && name.starts_with("etcd-") {
            continue;
        }
        if name == "kubelet-preferred-address-types" {
            // The tenant's Nodes name the syncer's kubelet proxy as their
            // host name; the apiserver verifies it by the tenant CA.
            args.push(format!("--{name}=Hostname"));
            args.push(format!(
                "--kubelet-certificate-authority={}",
                pods::layout().pki("ca.crt").display()
            ));
            continue;
        }
        args.push(arg);
    }
    if external {
        args.extend([
            format!("--etcd-cafile={EXTERNAL_ETCD_DIR}/ca.crt"),
            format!("--etcd-certfile={EXTERNAL_ETCD_DIR}/tls.crt"),
            format!("--etcd-keyfile={EXTERNAL_ETCD_DIR}/tls.key"),
        ]);
    }
    let extra = &vc.spec.control_plane.extra_api_server_args;
    if vc.spec.control_plane.replicas > 1
        && !extra
            .iter()
            .any(|a| flag_name(a) == "shutdown-delay-duration")
    {
        args.push(format!(
            "--shutdown-delay-duration={}s",
            SHUTDOWN_DELAY.as_secs()
        ));
    }
    if vc.spec.control_plane.replicas > 1
        && !extra
            .iter()
            .any(|a| flag_name(a) == "shutdown-send-retry-after")
    {
        // Once the delay is over, requests still in flight are finished,
        // not cut: the apiserver keeps listening until they are, answering
        // new ones with 429 and Retry-After (which client-go follows
        // without a word) but serving its own loopback calls. Without it a
        // Service created in that moment failed ("failed to allocate IP":
        // the apiserver's call to itself for the IPAddress was refused).
        args.push("--shutdown-send-retry-after=true".to_owned());
    }
    args.extend(extra.iter().cloned());
    args
}

/// How long a stopping apiserver of several keeps serving, unready, before
/// it closes its connections: the host takes it out of its Service's
/// endpoints meanwhile, so a rolling update (a certificate renewal, a
/// version change) sends every new connection to a replica that stays and
/// clients see no failed request. A single apiserver has no other replica
/// to send them to, so it stops at once (a deleted or paused cluster goes
/// sooner). The admin may set another in `extraApiServerArgs`.
pub const SHUTDOWN_DELAY: std::time::Duration = std::time::Duration::from_secs(10);

/// Flags extra args may not set although vnest leaves them at their
/// defaults: they switch admission plugins off or on (the default set,
/// ServiceAccount and NodeRestriction among them, is part of the tenant's
/// isolation from itself and what vnest's webhook relies on).
const ADMISSION_FLAGS: [&str; 3] = [
    "enable-admission-plugins",
    "disable-admission-plugins",
    "admission-control",
];

/// Extra apiserver flags may not replace a flag vnest sets: each of those is
/// an isolation or wiring decision (authorization, admission, certificates,
/// etcd); nor may they change which admission plugins run. Returns the
/// refused flags' names.
pub fn protected_flags_in_extra_args(vc: &VirtualCluster) -> Vec<String> {
    let mut own = args(&VirtualCluster::new("probe", vc.spec.clone()));
    own.truncate(own.len() - vc.spec.control_plane.extra_api_server_args.len());
    let mut protected: Vec<String> = own.iter().map(|a| flag_name(a)).collect();
    protected.extend(ADMISSION_FLAGS.map(str::to_owned));
    vc.spec
        .control_plane
        .extra_api_server_args
        .iter()
        .map(|a| flag_name(a))
        .filter(|name| protected.contains(name))
        .collect()
}

/// The apiserver's admission configuration: it calls the syncer's webhook
/// (Service addresses from the host) with its webhook-client certificate,
/// the one identity the syncer's webhook accepts (of a CA no tenant
/// component holds), and no other webhook gets a credential.
pub fn admission_secret(vc: &VirtualCluster) -> Secret {
    let layout = pods::layout();
    let admission = format!(
        "apiVersion: apiserver.config.k8s.io/v1\n\
         kind: AdmissionConfiguration\n\
         plugins:\n\
         - name: MutatingAdmissionWebhook\n  \
           configuration:\n    \
             apiVersion: apiserver.config.k8s.io/v1\n    \
             kind: WebhookAdmissionConfiguration\n    \
             kubeConfigFile: {}\n",
        layout.dir.join(WEBHOOK_KUBECONFIG_FILE).display()
    );
    // A webhook URL's host and (non-443) port name the user whose
    // credentials the apiserver presents to it.
    let webhook_kubeconfig = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         users:\n\
         - name: \"{}:{KUBELET_PROXY_PORT}\"\n  \
           user:\n    \
             client-certificate: {}\n    \
             client-key: {}\n",
        kubelet_proxy_host(vc),
        layout.pki(vnest_pki::WEBHOOK_CLIENT.0).display(),
        layout.pki(vnest_pki::WEBHOOK_CLIENT.1).display(),
    );
    Secret {
        metadata: pods::control_plane_meta(vc, ADMISSION_SECRET, COMPONENT),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            (
                ADMISSION_FILE.to_owned(),
                ByteString(admission.into_bytes()),
            ),
            (
                WEBHOOK_KUBECONFIG_FILE.to_owned(),
                ByteString(webhook_kubeconfig.into_bytes()),
            ),
        ])),
        ..Secret::default()
    }
}

/// The apiserver's encryption configuration, with `key`: the tenant's
/// Secrets are written to etcd sealed with secretbox (XSalsa20-Poly1305),
/// so neither a copy of etcd's data nor its volume left behind shows them;
/// Secrets written before are still read as they are.
pub fn encryption_secret(vc: &VirtualCluster, key: &[u8; 32]) -> Secret {
    use base64::Engine as _;
    let config = vnest_api::apiserver_encryption::render(&[vnest_api::apiserver_encryption::Key {
        name: "key1".to_owned(),
        secret: base64::engine::general_purpose::STANDARD.encode(key),
    }]);
    Secret {
        metadata: pods::control_plane_meta(vc, ENCRYPTION_SECRET, COMPONENT),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            ENCRYPTION_FILE.to_owned(),
            ByteString(config.into_bytes()),
        )])),
        ..Secret::default()
    }
}

pub fn deployment(
    vc: &VirtualCluster,
    settings: &Settings,
    pki_data: &BTreeMap<String, Vec<u8>>,
    version: &str,
) -> Deployment {
    let replicas = if vc.spec.paused {
        0
    } else {
        vc.spec.control_plane.replicas
    };
    let probe = |path, cadence| pods::probe(path, SECURE_PORT, "HTTPS", cadence);
    let mut mounts = vec![pods::config_mount()];
    let mut volumes = vec![pods::config_volume(
        APISERVER_FILES,
        &[
            (ADMISSION_SECRET, ADMISSION_FILE),
            (ADMISSION_SECRET, WEBHOOK_KUBECONFIG_FILE),
            (ENCRYPTION_SECRET, ENCRYPTION_FILE),
        ],
    )];
    if vc.spec.datastore.external.is_some() {
        volumes.push(pods::secret_volume(
            "etcd-client",
            EXTERNAL_CLIENT_SECRET,
            &["ca.crt", "tls.crt", "tls.key"],
        ));
        mounts.push(VolumeMount {
            name: "etcd-client".to_owned(),
            mount_path: EXTERNAL_ETCD_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let container = Container {
        name: COMPONENT.to_owned(),
        image: Some(pods::kubernetes_image(settings, "kube-apiserver", version)),
        command: Some(vec!["kube-apiserver".to_owned()]),
        args: Some(args(vc)),
        env: Some(vec![pods::field_env("POD_IP", "status.podIP")]),
        ports: Some(vec![pods::container_port("https", SECURE_PORT)]),
        startup_probe: Some(probe("/livez", pods::STARTUP)),
        readiness_probe: Some(probe("/readyz", pods::READINESS)),
        liveness_probe: Some(probe("/livez", pods::LIVENESS)),
        resources: Some(resources::requirements(vc, Component::ApiServer)),
        volume_mounts: Some(mounts),
        security_context: Some(pods::container_security_context()),
        ..Container::default()
    };
    let mut annotations = pods::template_annotations(pki_data, APISERVER_FILES);
    annotations.extend(external_secret_annotation(vc));
    Deployment {
        metadata: pods::control_plane_meta(vc, COMPONENT, COMPONENT),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: pods::label_selector(COMPONENT),
            template: pods::pod_template(vc, COMPONENT, annotations, container, volumes),
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn external_secret_annotation(vc: &VirtualCluster) -> Option<(String, String)> {
    vc.spec.datastore.external.as_ref().map(|e| {
        (
            "vnest.dev/etcd-client-secret".to_owned(),
            e.client_cert_secret_name.clone(),
        )
    })
}

pub fn service(vc: &VirtualCluster) -> Service {
    let type_ = match vc.spec.control_plane.expose.type_ {
        ExposeType::ClusterIP => "ClusterIP",
        ExposeType::NodePort => "NodePort",
        ExposeType::LoadBalancer => "LoadBalancer",
    };
    Service {
        metadata: pods::control_plane_meta(vc, APISERVER_SERVICE, COMPONENT),
        spec: Some(ServiceSpec {
            type_: Some(type_.to_owned()),
            selector: Some(pods::selector(COMPONENT)),
            ports: Some(vec![ServicePort {
                name: Some("https".to_owned()),
                port: i32::from(SERVICE_PORT),
                target_port: Some(IntOrString::Int(SECURE_PORT)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::Volume;

    fn value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
        let prefix = format!("--{name}=");
        args.iter().find_map(|a| a.strip_prefix(&prefix))
    }

    #[test]
    fn the_apiserver_never_mounts_a_ca_key() {
        assert!(APISERVER_FILES.iter().all(|f| !f.ends_with("ca.key")));
        let d = deployment(
            &VirtualCluster::new("a", Default::default()),
            &Settings::default(),
            &BTreeMap::new(),
            "v1.37.2",
        );
        let volumes: Vec<Volume> = d.spec.template.spec.unwrap().volumes.unwrap();
        assert_eq!(volumes.len(), 1);
    }

    #[test]
    fn extra_args_come_last_and_cannot_replace_protected_flags() {
        let mut vc = VirtualCluster::new("a", Default::default());
        vc.spec.control_plane.extra_api_server_args = vec![
            "--audit-log-maxage=3".into(),
            "--authorization-mode=AlwaysAllow".into(),
            "--disable-admission-plugins=ServiceAccount,NodeRestriction".into(),
            "--anonymous-auth=true".into(),
        ];
        let args = args(&vc);
        assert_eq!(args.last().unwrap(), "--anonymous-auth=true");
        assert_eq!(
            protected_flags_in_extra_args(&vc),
            vec![
                "authorization-mode".to_owned(),
                "disable-admission-plugins".to_owned()
            ]
        );
    }

    /// Several apiservers hand their connections over before stopping; one
    /// stops at once; the admin's own delay replaces vnest's.
    #[test]
    fn replicas_keep_serving_a_moment_when_stopping() {
        let delay = |vc: &VirtualCluster| {
            args(vc)
                .into_iter()
                .filter(|a| a.starts_with("--shutdown-"))
                .collect::<Vec<_>>()
        };
        let mut vc = VirtualCluster::new("a", Default::default());
        assert!(delay(&vc).is_empty());
        vc.spec.control_plane.replicas = 2;
        assert_eq!(
            delay(&vc),
            [
                "--shutdown-delay-duration=10s",
                "--shutdown-send-retry-after=true"
            ]
        );
        vc.spec.control_plane.extra_api_server_args = vec!["--shutdown-delay-duration=30s".into()];
        assert_eq!(
            delay(&vc),
            [
                "--shutdown-send-retry-after=true",
                "--shutdown-delay-duration=30s"
            ]
        );
        assert!(protected_flags_in_extra_args(&vc).is_empty());
    }

    #[test]
    fn secrets_are_sealed_in_etcd_and_older_ones_still_read() {
        let vc = VirtualCluster::new("a", Default::default());
        let secret = encryption_secret(&vc, &[7u8; 32]);
        let data = secret.data.unwrap();
        let config: serde_json::Value =
            serde_yaml_ng::from_slice(&data[ENCRYPTION_FILE].0).unwrap();
        let rule = &config["resources"][0];
        assert_eq!(rule["resources"], serde_json::json!(["secrets"]));
        let key = rule["providers"][0]["secretbox"]["keys"][0]["secret"]
            .as_str()
            .unwrap();
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap();
        assert_eq!(key, [7u8; 32]);
        assert_eq!(rule["providers"][1], serde_json::json!({ "identity": {} }));
        assert_eq!(
            value(&args(&vc), "encryption-provider-config"),
            Some("/etc/kubernetes/encryption.yaml")
        );
    }

    #[test]
    fn external_etcd_uses_the_admins_client_certificate() {
        let mut vc = VirtualCluster::new("a", Default::default());
        vc.spec.datastore.external = Some(vnest_api::ExternalEtcd {
            endpoints: vec!["https://db:2379".into(), "https://db2:2379".into()],
            client_cert_secret_name: "c".into(),
        });
        let args = args(&vc);
        assert_eq!(
            value(&args, "etcd-servers"),
            Some("https://db:2379,https://db2:2379")
        );
        assert_eq!(
            value(&args, "etcd-certfile"),
            Some("/etc/vnest/etcd-client/tls.crt")
        );
        assert_eq!(
            args.iter()
                .filter(|a| a.starts_with("--etcd-cafile"))
                .count(),
            1
        );
    }
}
