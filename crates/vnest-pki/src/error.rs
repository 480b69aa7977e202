/// What can go wrong while issuing certificates or rendering kubeconfigs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("generating a key pair failed: {0}")]
    KeyGeneration(#[source] rcgen::Error),

    #[error("signing the certificate for {subject:?} failed: {source}")]
    Signing {
        subject: String,
        #[source]
        source: rcgen::Error,
    },

    #[error("{name:?} is not a valid DNS name or IP address for a certificate")]
    InvalidSubjectAltName { name: String },

    #[error("the certificate authority could not be loaded: {0}")]
    InvalidAuthority(#[source] rcgen::Error),

    #[error("{path} is missing from the stored certificates")]
    MissingFile { path: String },

    #[error("{path} is not a PEM certificate")]
    InvalidCertificate { path: String },

    #[error("rendering the kubeconfig failed: {0}")]
    Kubeconfig(#[source] serde_yaml_ng::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
