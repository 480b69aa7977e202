//! A certificate authority and the leaf certificates it signs.

use std::net::IpAddr;
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};

/// How far `not_before` lies in the past, so that a certificate issued on one
/// machine is already valid on another whose clock runs a little behind.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// The period a certificate is valid for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// Ten years, as kubeadm gives its CAs.
    pub const CA_LIFETIME: Duration = Duration::days(3650);
    /// One year, as kubeadm gives its leaf certificates.
    pub const LEAF_LIFETIME: Duration = Duration::days(365);

    /// Valid from a few minutes ago (clock skew) for `lifetime`.
    pub fn starting_now(lifetime: Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - CLOCK_SKEW,
            not_after: now + lifetime,
        }
    }
}

/// What a leaf certificate may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (extended key usage serverAuth).
    Server,
    /// A TLS client, i.e. a user or component authenticating to a server.
    Client,
    /// Both, as etcd members need for their peer and client listeners.
    ServerAndClient,
}

/// The identity and names of one leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafSpec {
    /// The subject's common name; Kubernetes reads it as the user name.
    pub common_name: String,
    /// The subject's organization; Kubernetes reads it as the user's group.
    /// rcgen writes one attribute per type, so a certificate carries one group.
    pub group: Option<String>,
    pub usage: Usage,
    /// Subject alternative names: each is stored as an IP address SAN when it
    /// parses as one, and as a DNS name SAN otherwise.
    pub subject_alt_names: Vec<String>,
    pub validity: Validity,
}

impl LeafSpec {
    /// A client certificate for `user` in `group`, valid for a year.
    pub fn client(user: impl Into<String>, group: Option<&str>) -> Self {
        Self {
            common_name: user.into(),
            group: group.map(str::to_owned),
            usage: Usage::Client,
            subject_alt_names: Vec::new(),
            validity: Validity::starting_now(Validity::LEAF_LIFETIME),
        }
    }

    /// A certificate for a server reachable under `names`, valid for a year.
    pub fn server(common_name: impl Into<String>, usage: Usage, names: Vec<String>) -> Self {
        Self {
            common_name: common_name.into(),
            group: None,
            usage,
            subject_alt_names: names,
            validity: Validity::starting_now(Validity::LEAF_LIFETIME),
        }
    }
}

/// A PEM certificate with its PEM (PKCS#8) private key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAndKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A self-signed CA that signs leaf certificates.
pub struct CertificateAuthority {
    cert: CertAndKey,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new CA with a fresh key, valid for `validity`.
    pub fn generate(common_name: &str, validity: Validity) -> Result<Self> {
        let key = KeyPair::generate().map_err(Error::KeyGeneration)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name, None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.self_signed(&key).map_err(|source| Error::Signing {
            subject: common_name.to_owned(),
            source,
        })?;
        let cert = CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Self {
            cert,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA issued earlier (for example from a Secret) to sign more.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem).map_err(Error::InvalidAuthority)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(Error::InvalidAuthority)?;
        Ok(Self {
            cert: CertAndKey {
                cert_pem: cert_pem.to_owned(),
                key_pem: key_pem.to_owned(),
            },
            issuer,
        })
    }

    /// The CA's own certificate and key.
    pub fn cert(&self) -> &CertAndKey {
        &self.cert
    }

    /// Issues a leaf certificate with a fresh key.
    pub fn issue(&self, spec: &LeafSpec) -> Result<CertAndKey> {
        let key = KeyPair::generate().map_err(Error::KeyGeneration)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&spec.common_name, spec.group.as_deref());
        params.subject_alt_names = spec
            .subject_alt_names
            .iter()
            .map(|name| subject_alt_name(name))
            .collect::<Result<_>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match spec.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        params.use_authority_key_identifier_extension = true;
        params.not_before = spec.validity.not_before;
        params.not_after = spec.validity.not_after;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| Error::Signing {
                subject: spec.common_name.clone(),
                source,
            })?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn distinguished_name(common_name: &str, group: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(group) = group {
        dn.push(DnType::OrganizationName, group);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn subject_alt_name(name: &str) -> Result<SanType> {
    let invalid = || Error::InvalidSubjectAltName {
        name: name.to_owned(),
    };
    if let Ok(ip) = IpAddr::from_str(name) {
        return Ok(SanType::IpAddress(ip));
    }
    let valid_dns = !name.is_empty()
        && name.len() <= 253
        && name.split('.').enumerate().all(|(i, label)| {
            // A leading "*" label is a wildcard; every other label is an RFC 1123 label.
            (i == 0 && label == "*")
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        });
    if !valid_dns {
        return Err(invalid());
    }
    Ok(SanType::DnsName(name.try_into().map_err(|_| invalid())?))
}

/// When the PEM certificate `pem` (named `path` in errors) expires.
pub(crate) fn not_after(path: &str, pem: &str) -> Result<OffsetDateTime> {
    let invalid = || Error::InvalidCertificate {
        path: path.to_owned(),
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| invalid())?;
    let cert = pem.parse_x509().map_err(|_| invalid())?;
    OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
        .map_err(|_| invalid())
}

/// The subject common name of the PEM certificate `pem`, if it has one.
pub(crate) fn common_name(pem: &str) -> Option<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let name = cert.subject().iter_common_name().next()?;
    name.as_str().ok().map(str::to_owned)
}
