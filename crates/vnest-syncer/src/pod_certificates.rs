//! PodCertificate projections, requested from the tenant's signers. The
//! host kubelet would request them from the host's, so the syncer does
//! what a kubelet does for them: a new private key per source, an empty
//! PKCS#10 request proving it in a PodCertificateRequest in the tenant
//! (naming the pod, its ServiceAccount and its node), and once the
//! tenant's signer has issued it, the key and the chain in the pod's
//! Secret ([`crate::translate::pod_secret_name`]) at the source's paths;
//! a new request from `beginRefreshAt` on, the old credentials kept until
//! it is issued. Pure but for key generation; the calls are in `pods`.

use k8s_openapi::api::certificates::v1::PodCertificateRequestStatus;
use k8s_openapi::api::core::v1::{Pod, PodCertificateProjection};
use k8s_openapi::jiff::Timestamp;

/// The key types vnest generates: those its crypto library makes
/// (RSA3072, RSA4096 and ECDSAP521 are refused with a reason).
pub const KEY_TYPES: [&str; 3] = ["ECDSAP256", "ECDSAP384", "ED25519"];

/// One podCertificate source of a pod: `id` names it among the pod's
/// (`<volume>-<index>`) in the keys of the pod's Secret.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub id: String,
    pub projection: PodCertificateProjection,
}

/// Every podCertificate source of the pod's projected volumes.
pub fn sources(pod: &Pod) -> Vec<Source> {
    crate::translate::projected_sources(pod)
        .filter_map(|(volume, index, source)| {
            Some(Source {
                id: format!("{volume}-{index}"),
                projection: source.pod_certificate.clone()?,
            })
        })
        .collect()
}

/// The keys of the pod's Secret that hold source `id`'s credentials and
/// the state of its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    /// The private key then the chain (`credentialBundlePath`).
    pub bundle: String,
    /// The private key alone (`keyPath`).
    pub key: String,
    /// The chain alone (`certificateChainPath`).
    pub chain: String,
    /// When to request anew (RFC 3339).
    pub refresh: String,
    /// The key of a request not yet issued, and the request's name.
    pub pending_key: String,
    pub pending_request: String,
}

impl Keys {
    pub fn of(id: &str) -> Self {
        Self {
            bundle: format!("cert-bundle-{id}"),
            key: format!("cert-key-{id}"),
            chain: format!("cert-chain-{id}"),
            refresh: format!("cert-refresh-{id}"),
            pending_key: format!("cert-pending-key-{id}"),
            pending_request: format!("cert-pending-request-{id}"),
        }
    }

    /// Every key, for carrying them from one version of the Secret to the
    /// next.
    pub fn all(&self) -> [&str; 6] {
        [
            &self.bundle,
            &self.key,
            &self.chain,
            &self.refresh,
            &self.pending_key,
            &self.pending_request,
        ]
    }
}

/// Why a key cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("keyType {0} is not one vnest can generate; use one of ECDSAP256, ECDSAP384, ED25519")]
    Unsupported(String),
    #[error("generating a {key_type} key: {source}")]
    Generate {
        key_type: String,
        #[source]
        source: rcgen::Error,
    },
}

/// A new private key of `key_type` (PKCS#8 PEM, as the kubelet writes it)
/// and the empty PKCS#10 request it signs (DER): the proof of possession
/// the apiserver checks.
pub fn new_key(key_type: &str) -> Result<(String, Vec<u8>), KeyError> {
    let algorithm = match key_type {
        "ECDSAP256" => &rcgen::PKCS_ECDSA_P256_SHA256,
        "ECDSAP384" => &rcgen::PKCS_ECDSA_P384_SHA384,
        "ED25519" => &rcgen::PKCS_ED25519,
        other => return Err(KeyError::Unsupported(other.to_owned())),
    };
    let generate = |source| KeyError::Generate {
        key_type: key_type.to_owned(),
        source,
    };
    let key = rcgen::KeyPair::generate_for(algorithm).map_err(generate)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let request = params.serialize_request(&key).map_err(generate)?;
    Ok((key.serialize_pem(), request.der().to_vec()))
}

/// Where a request stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Issued {
        chain: String,
        refresh_at: Option<Timestamp>,
    },
    /// Denied or failed: the reason, for the tenant.
    Refused(String),
    Waiting,
}

/// The outcome `status` records: issued once it has a chain, refused on a
/// `Denied` or `Failed` condition that is true.
pub fn outcome(status: Option<&PodCertificateRequestStatus>) -> Outcome {
    let Some(status) = status else {
        return Outcome::Waiting;
    };
    let refusal = status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True");
    if let Some(condition) = refusal {
        return Outcome::Refused(format!(
            "{} ({}): {}",
            condition.type_, condition.reason, condition.message
        ));
    }
    match &status.certificate_chain {
        Some(chain) if !chain.is_empty() => Outcome::Issued {
            chain: chain.clone(),
            refresh_at: status.begin_refresh_at.as_ref().map(|t| t.0),
        },
        _ => Outcome::Waiting,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use x509_parser::prelude::FromDer;

    #[test]
    fn keys_of_every_supported_type_are_proven_by_a_request_they_sign() {
        for key_type in KEY_TYPES {
            let (key, request) = new_key(key_type).unwrap();
            assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key_type}");
            let (_, parsed) =
                x509_parser::certification_request::X509CertificationRequest::from_der(&request)
                    .unwrap();
            parsed.verify_signature().unwrap();
            assert_eq!(parsed.certification_request_info.subject.iter().count(), 0);
        }
        let error = new_key("RSA3072").unwrap_err();
        assert!(error.to_string().contains("ECDSAP256"), "{error}");
    }

    #[test]
    fn a_request_is_issued_refused_or_waited_for() {
        assert_eq!(outcome(None), Outcome::Waiting);
        let mut status = PodCertificateRequestStatus::default();
        assert_eq!(outcome(Some(&status)), Outcome::Waiting);
        let refresh = Timestamp::from_second(1_900_000_000).unwrap();
        status.certificate_chain = Some("CHAIN".to_owned());
        status.begin_refresh_at = Some(Time(refresh));
        assert_eq!(
            outcome(Some(&status)),
            Outcome::Issued {
                chain: "CHAIN".to_owned(),
                refresh_at: Some(refresh)
            }
        );
        status.conditions = Some(vec![Condition {
            type_: "Denied".to_owned(),
            status: "True".to_owned(),
            reason: "UnsupportedKeyType".to_owned(),
            message: "use ED25519".to_owned(),
            last_transition_time: Time(refresh),
            observed_generation: None,
        }]);
        assert_eq!(
            outcome(Some(&status)),
            Outcome::Refused("Denied (UnsupportedKeyType): use ED25519".to_owned())
        );
    }

    #[test]
    fn each_source_is_named_by_its_volume_and_place() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": { "containers": [], "volumes": [{ "name": "tls", "projected": { "sources": [
                { "configMap": { "name": "x" } },
                { "podCertificate": { "signerName": "example.com/s", "keyType": "ED25519", "credentialBundlePath": "b.pem" } },
            ] } }] },
        }))
        .unwrap();
        let found = sources(&pod);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "tls-1");
        assert_eq!(Keys::of("tls-1").bundle, "cert-bundle-tls-1");
    }
}
