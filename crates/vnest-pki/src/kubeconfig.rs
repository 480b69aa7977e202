//! Rendering a kubeconfig with everything embedded, so that the file alone
//! is enough to reach the cluster.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::authority::CertAndKey;
use crate::error::{Error, Result};

/// How the kubeconfig's user authenticates.
#[derive(Clone, Copy, Debug)]
pub enum ClientCredentials<'a> {
    Certificate(&'a CertAndKey),
    Token(&'a str),
}

/// Where a kubeconfig's cluster is reached: the URL, and optionally the
/// name the server's certificate is checked against when the URL's host is
/// not one of its names (a NodePort on a node address, a port-forward).
#[derive(Clone, Copy, Debug)]
pub struct Server<'a> {
    pub url: &'a str,
    pub tls_server_name: Option<&'a str>,
}

impl<'a> From<&'a str> for Server<'a> {
    fn from(url: &'a str) -> Self {
        Server {
            url,
            tls_server_name: None,
        }
    }
}

impl<'a> From<&'a String> for Server<'a> {
    fn from(url: &'a String) -> Self {
        Server::from(url.as_str())
    }
}

/// Renders a kubeconfig with one cluster, one user and one current context.
///
/// `cluster_name` names the cluster, the user is `user_name`, and the context
/// is `user_name@cluster_name` as kubeadm writes it.
pub fn render_kubeconfig<'s>(
    cluster_name: &str,
    server: impl Into<Server<'s>>,
    ca_pem: &str,
    user_name: &str,
    credentials: ClientCredentials<'_>,
) -> Result<String> {
    let server = server.into();
    let context_name = format!("{user_name}@{cluster_name}");
    let user = match credentials {
        ClientCredentials::Certificate(ck) => User {
            client_certificate_data: Some(STANDARD.encode(&ck.cert_pem)),
            client_key_data: Some(STANDARD.encode(&ck.key_pem)),
            token: None,
        },
        ClientCredentials::Token(token) => User {
            client_certificate_data: None,
            client_key_data: None,
            token: Some(token.to_owned()),
        },
    };
    let config = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: vec![Named {
            name: cluster_name.to_owned(),
            cluster: Some(Cluster {
                server: server.url.to_owned(),
                tls_server_name: server.tls_server_name.map(str::to_owned),
                certificate_authority_data: STANDARD.encode(ca_pem),
            }),
            user: None,
            context: None,
        }],
        users: vec![Named {
            name: user_name.to_owned(),
            cluster: None,
            user: Some(user),
            context: None,
        }],
        contexts: vec![Named {
            name: context_name.clone(),
            cluster: None,
            user: None,
            context: Some(Context {
                cluster: cluster_name.to_owned(),
                user: user_name.to_owned(),
            }),
        }],
        current_context: context_name,
    };
    serde_yaml_ng::to_string(&config).map_err(Error::Kubeconfig)
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    clusters: Vec<Named>,
    users: Vec<Named>,
    contexts: Vec<Named>,
    current_context: String,
}

/// kubeconfig lists hold `{name, <kind>: {...}}` entries.
#[derive(Serialize)]
struct Named {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<Cluster>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<Context>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_server_name: Option<String>,
    certificate_authority_data: String,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_certificate_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_key_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

#[derive(Serialize)]
struct Context {
    cluster: String,
    user: String,
}
