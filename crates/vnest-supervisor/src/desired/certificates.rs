//! A VirtualCluster's certificates on the host: the names they must carry,
//! the Secret that stores them, and whether to keep, create or renew them.
//! Certificates are never regenerated needlessly: a stored set is kept until
//! a leaf comes within [`RENEW_BEFORE`] of expiry, and then only the leaves
//! are renewed, under the same CAs.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use time::{Duration, OffsetDateTime};
use vnest_api::VirtualCluster;
use vnest_api::certificate_renewal;
use vnest_api::host_names::{HostNamespaceRole, host_namespace_of, identity};
use vnest_pki::{ControlPlanePki, ControlPlaneSpec};

use super::pods::secret_key;

/// Leaves are renewed this long before they expire (kubeadm's
/// `certs check-expiration` warns at 30 days too).
pub const RENEW_BEFORE: Duration = Duration::days(30);
pub use super::addresses::PKI_SECRET;
use super::addresses::apiserver::SERVICE as APISERVER_SERVICE;
use super::addresses::etcd::SERVICE as ETCD_SERVICE;

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error(
        "the stored certificates in Secret {secret} cannot be used: {source}; delete the Secret to issue a new set (tenants' kubeconfigs stop working)"
    )]
    Stored {
        secret: String,
        #[source]
        source: vnest_pki::Error,
    },
    #[error(transparent)]
    Pki(#[from] vnest_pki::Error),
}

/// The annotation of the PKI Secret listing the names the apiserver
/// certificate was issued for: when they change, the leaves are renewed.
pub const NAMES_ANNOTATION: &str = "vnest.dev/apiserver-names";

/// The renewal `vc` asks for, if any.
fn renewal_asked(vc: &VirtualCluster) -> Option<&String> {
    vc.metadata
        .annotations
        .as_ref()?
        .get(certificate_renewal::ASKED)
}

/// The names the tenant's control plane is reached under. `apiserver_ip` is
/// the apiserver Service's address on the host: tenant pods run there and
/// are told to reach their apiserver at it, so the certificate carries it.
pub fn pki_spec(vc: &VirtualCluster, apiserver_ip: Option<&str>) -> ControlPlaneSpec {
    let (_, vc_name) = identity(vc);
    let host_ns = host_namespace_of(vc, HostNamespaceRole::ControlPlane);
    let mut spec = ControlPlaneSpec::new(vc_name);
    vnest_api::CLUSTER_DOMAIN.clone_into(&mut spec.cluster_domain);
    let apiserver = format!("{APISERVER_SERVICE}.{host_ns}");
    spec.apiserver_names = vec![
        apiserver.clone(),
        format!("{apiserver}.svc"),
        format!("{apiserver}.svc.{}", spec.cluster_domain),
    ];
    spec.apiserver_names.extend(apiserver_ip.map(str::to_owned));
    spec.apiserver_names
        .extend(vc.spec.control_plane.expose.extra_sans.iter().cloned());
    let proxy = super::addresses::syncer::kubelet_proxy_host(vc);
    spec.kubelet_proxy_names = vec![proxy.clone(), format!("{proxy}.{}", spec.cluster_domain)];
    let replicas = vc.spec.datastore.members();
    let etcd = format!("{ETCD_SERVICE}.{host_ns}.svc");
    spec.etcd_names = vec![etcd.clone(), format!("{etcd}.{}", spec.cluster_domain)];
    for i in 0..replicas {
        spec.etcd_names.push(format!("{ETCD_SERVICE}-{i}.{etcd}"));
        spec.etcd_names
            .push(format!("{ETCD_SERVICE}-{i}.{etcd}.{}", spec.cluster_domain));
    }
    spec
}

/// What reconcile does with the certificates.
#[derive(Debug)]
pub enum CertificatePlan {
    /// The stored set is complete and not close to expiry.
    Keep(ControlPlanePki),
    /// Nothing stored yet: a new set.
    Create(ControlPlanePki),
    /// Leaves expire within [`RENEW_BEFORE`], or the apiserver's names
    /// changed: all leaves renewed under the stored CAs; the control plane's
    /// pods roll.
    Renew { pki: ControlPlanePki, why: String },
}

/// Decides from what is stored (the PKI Secret, if any), the names the
/// apiserver needs now, and `now`.
pub fn plan(
    vc: &VirtualCluster,
    apiserver_ip: Option<&str>,
    stored: Option<&Secret>,
    now: OffsetDateTime,
) -> Result<CertificatePlan, CertificateError> {
    let spec = pki_spec(vc, apiserver_ip);
    let Some(secret) = stored else {
        return Ok(CertificatePlan::Create(ControlPlanePki::generate(&spec)?));
    };
    let stored_error = |source| CertificateError::Stored {
        secret: secret.metadata.name.clone().unwrap_or_default(),
        source,
    };
    let pki = from_secret(secret).map_err(stored_error)?;
    let expiring = pki
        .leaves_expiring_before(now + RENEW_BEFORE)
        .map_err(stored_error)?;
    let names = names_of(&spec);
    let stored_annotation = |key| secret.metadata.annotations.as_ref()?.get(key);
    let stored_names = stored_annotation(NAMES_ANNOTATION);
    let asked = renewal_asked(vc);
    let stored_files = secret.data.as_ref();
    let webhook_ca_stored =
        stored_files.is_some_and(|d| d.contains_key(&secret_key(vnest_pki::WEBHOOK_CLIENT_CA.0)));
    let why = if !expiring.is_empty() {
        format!("{} were close to expiry", expiring.join(", "))
    } else if !webhook_ca_stored {
        "the webhook client CA was added".to_owned()
    } else if stored_names != Some(&names) {
        format!("the apiserver's names changed to {names}")
    } else if let Some(asked) = asked
        && renewal_answered(secret) != Some(asked)
    {
        format!("renewal asked for at {asked}")
    } else {
        return Ok(CertificatePlan::Keep(pki));
    };
    Ok(CertificatePlan::Renew {
        pki: pki.renew_leaves(&spec)?,
        why,
    })
}

fn names_of(spec: &ControlPlaneSpec) -> String {
    spec.apiserver_subject_alt_names().join(",")
}

/// The Secret holding `pki` in the control-plane namespace of `vc`, noting
/// the apiserver names it was issued for and the renewal it answers.
pub fn to_secret(vc: &VirtualCluster, apiserver_ip: Option<&str>, pki: &ControlPlanePki) -> Secret {
    let data: BTreeMap<String, ByteString> = super::pods::pki_data(pki)
        .into_iter()
        .map(|(key, bytes)| (key, ByteString(bytes)))
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(PKI_SECRET.to_owned()),
            namespace: Some(host_namespace_of(vc, HostNamespaceRole::ControlPlane)),
            annotations: Some(
                [(
                    NAMES_ANNOTATION.to_owned(),
                    names_of(&pki_spec(vc, apiserver_ip)),
                )]
                .into_iter()
                .chain(
                    renewal_asked(vc)
                        .map(|asked| (certificate_renewal::DONE.to_owned(), asked.clone())),
                )
                .collect(),
            ),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The renewal request ([`certificate_renewal::ASKED`]) the leaves stored
/// in `secret` were issued for, if any.
pub fn renewal_answered(secret: &Secret) -> Option<&String> {
    secret
        .metadata
        .annotations
        .as_ref()?
        .get(certificate_renewal::DONE)
}

/// The set stored in a Secret written by [`to_secret`].
pub fn from_secret(secret: &Secret) -> Result<ControlPlanePki, vnest_pki::Error> {
    let data = secret.data.clone().unwrap_or_default();
    ControlPlanePki::from_files(|path| {
        data.get(&secret_key(path))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vnest_api::host_names::host_namespace;

    fn vc() -> VirtualCluster {
        let mut vc = crate::desired::test_cluster();
        vc.spec.control_plane.expose.extra_sans = vec!["team-a.example.com".into()];
        vc
    }

    /// `vnest-pki`, which cannot see `vnest_api`, names the same cluster
    /// domain in the apiserver's certificate.
    #[test]
    fn one_cluster_domain_everywhere() {
        assert_eq!(
            ControlPlaneSpec::new("x").cluster_domain,
            vnest_api::CLUSTER_DOMAIN
        );
    }

    #[test]
    fn certificates_carry_the_in_cluster_and_extra_names() {
        let spec = pki_spec(&vc(), Some("10.96.3.4"));
        let host_ns = host_namespace("tenants", "team-a", HostNamespaceRole::ControlPlane);
        let names = spec.apiserver_subject_alt_names();
        for expected in [
            format!("apiserver.{host_ns}.svc"),
            format!("apiserver.{host_ns}.svc.cluster.local"),
            "team-a.example.com".to_owned(),
            "kubernetes.default.svc".to_owned(),
            "10.96.3.4".to_owned(),
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(
            spec.etcd_subject_alt_names()
                .contains(&format!("etcd-0.etcd.{host_ns}.svc"))
        );
    }

    #[test]
    fn nothing_stored_creates_fresh_stored_keeps_expiring_renews() {
        let vc = vc();
        let now = OffsetDateTime::now_utc();
        let ip = Some("10.96.3.4");
        let CertificatePlan::Create(pki) = plan(&vc, ip, None, now).unwrap() else {
            panic!("nothing stored must create");
        };
        let secret = to_secret(&vc, ip, &pki);
        assert!(secret.data.as_ref().unwrap().contains_key("etcd-ca.crt"));
        let CertificatePlan::Keep(kept) = plan(&vc, ip, Some(&secret), now).unwrap() else {
            panic!("a fresh set must be kept");
        };
        assert_eq!(
            kept.apiserver.cert_pem, pki.apiserver.cert_pem,
            "kept means not regenerated"
        );

        // 340 days later every leaf (valid one year) is within 30 days of expiry.
        let later = now + Duration::days(340);
        let CertificatePlan::Renew { pki: renewed, why } =
            plan(&vc, ip, Some(&secret), later).unwrap()
        else {
            panic!("an expiring set must be renewed");
        };
        assert!(why.contains("apiserver.crt"), "{why}");
        assert_eq!(
            renewed.ca.cert().cert_pem,
            pki.ca.cert().cert_pem,
            "the CA is kept"
        );
        assert_ne!(renewed.apiserver.cert_pem, pki.apiserver.cert_pem);

        // A new apiserver address renews the leaves under the same CAs.
        let CertificatePlan::Renew { pki: moved, why } =
            plan(&vc, Some("10.96.9.9"), Some(&secret), now).unwrap()
        else {
            panic!("new names must renew");
        };
        assert!(why.contains("10.96.9.9"), "{why}");
        assert_eq!(moved.ca.cert().cert_pem, pki.ca.cert().cert_pem);
    }

    /// Each new value of the annotation renews once: the renewed Secret
    /// records it, and the same value asks nothing more.
    #[test]
    fn an_asked_renewal_is_honoured_once_per_request() {
        let now = OffsetDateTime::now_utc();
        let ip = Some("10.96.3.4");
        let mut vc = vc();
        let CertificatePlan::Create(pki) = plan(&vc, ip, None, now).unwrap() else {
            panic!("nothing stored must create");
        };
        let stored = to_secret(&vc, ip, &pki);
        let ask = |vc: &mut VirtualCluster, at: &str| {
            vc.metadata.annotations = Some(BTreeMap::from([(
                certificate_renewal::ASKED.to_owned(),
                at.to_owned(),
            )]));
        };
        ask(&mut vc, "2026-12-05T10:00:00Z");
        let CertificatePlan::Renew { pki: renewed, why } =
            plan(&vc, ip, Some(&stored), now).unwrap()
        else {
            panic!("an asked renewal renews");
        };
        assert!(why.contains("2026-12-05T10:00:00Z"), "{why}");
        assert_eq!(renewed.ca.cert().cert_pem, pki.ca.cert().cert_pem);
        assert_ne!(renewed.apiserver.cert_pem, pki.apiserver.cert_pem);
        let stored = to_secret(&vc, ip, &renewed);
        assert!(
            matches!(
                plan(&vc, ip, Some(&stored), now).unwrap(),
                CertificatePlan::Keep(_)
            ),
            "honoured once"
        );
        ask(&mut vc, "2026-12-06T10:00:00Z");
        assert!(matches!(
            plan(&vc, ip, Some(&stored), now).unwrap(),
            CertificatePlan::Renew { .. }
        ));
        // A cluster made with the annotation already set starts renewed.
        let CertificatePlan::Create(fresh) = plan(&vc, ip, None, now).unwrap() else {
            panic!("nothing stored must create");
        };
        let stored = to_secret(&vc, ip, &fresh);
        assert!(matches!(
            plan(&vc, ip, Some(&stored), now).unwrap(),
            CertificatePlan::Keep(_)
        ));
    }

    #[test]
    fn every_file_gets_its_own_secret_key() {
        let pki = ControlPlanePki::generate(&pki_spec(&vc(), None)).unwrap();
        let secret = to_secret(&vc(), None, &pki);
        assert_eq!(secret.data.unwrap().len(), pki.files().len());
    }

    #[test]
    fn an_unusable_stored_set_is_reported_with_what_to_do() {
        let vc = vc();
        let pki = ControlPlanePki::generate(&pki_spec(&vc, None)).unwrap();
        let mut secret = to_secret(&vc, None, &pki);
        secret.data.as_mut().unwrap().remove("sa.key");
        let err = plan(&vc, None, Some(&secret), OffsetDateTime::now_utc()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("sa.key") && message.contains("delete the Secret"),
            "{message}"
        );
    }
}
