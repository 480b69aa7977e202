//! The tenant apiserver's encryption configuration: Secrets are sealed in
//! etcd with secretbox under keys kept in Secret [`SECRET`] of the
//! control-plane namespace (never in etcd). The supervisor renders it once
//! per cluster; `vnest snapshot` saves it beside a snapshot (a snapshot's
//! Secrets cannot be read without it); `vnest restore` adds the saved keys
//! to the configuration of the cluster it restores into, after the
//! cluster's own, so restored Secrets can be read and new ones are sealed
//! with the cluster's own key.

use serde::{Deserialize, Serialize};

/// The Secret holding the configuration, and its one key (the file name
/// the apiserver reads).
pub const SECRET: &str = "apiserver-encryption";
pub const FILE: &str = "encryption.yaml";

/// One secretbox key: a name, and 32 random bytes in base64.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub name: String,
    pub secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EncryptionConfigError {
    #[error("not an apiserver EncryptionConfiguration: {0}")]
    Parse(#[from] serde_yaml_ng::Error),
    #[error("the EncryptionConfiguration has no secretbox keys for Secrets")]
    NoKeys,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptionConfiguration {
    api_version: String,
    kind: String,
    resources: Vec<ResourceRule>,
}

#[derive(Serialize, Deserialize)]
struct ResourceRule {
    resources: Vec<String>,
    providers: Vec<Provider>,
}

#[derive(Serialize, Deserialize)]
struct Provider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secretbox: Option<Keys>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Serialize, Deserialize)]
struct Keys {
    keys: Vec<Key>,
}

/// The configuration sealing Secrets with `keys[0]` and reading them with
/// any of `keys`; Secrets written before encryption (plain) stay readable.
pub fn render(keys: &[Key]) -> String {
    let config = EncryptionConfiguration {
        api_version: "apiserver.config.k8s.io/v1".to_owned(),
        kind: "EncryptionConfiguration".to_owned(),
        resources: vec![ResourceRule {
            resources: vec!["secrets".to_owned()],
            providers: vec![
                Provider {
                    secretbox: Some(Keys {
                        keys: keys.to_vec(),
                    }),
                    identity: None,
                },
                Provider {
                    secretbox: None,
                    identity: Some(Default::default()),
                },
            ],
        }],
    };
    // A struct of strings and lists always serializes.
    serde_yaml_ng::to_string(&config).unwrap_or_default()
}

/// The secretbox keys of a configuration, in order.
pub fn keys(config: &str) -> Result<Vec<Key>, EncryptionConfigError> {
    let config: EncryptionConfiguration = serde_yaml_ng::from_str(config)?;
    let keys: Vec<Key> = config
        .resources
        .into_iter()
        .filter(|r| r.resources.iter().any(|r| r == "secrets"))
        .flat_map(|r| r.providers)
        .filter_map(|p| p.secretbox)
        .flat_map(|k| k.keys)
        .collect();
    if keys.is_empty() {
        return Err(EncryptionConfigError::NoKeys);
    }
    Ok(keys)
}

/// `current` with the keys of `restored` it lacks added after its own
/// (renamed `restored-N` where a name is taken); `None` when it has them
/// all already.
pub fn with_restored_keys(
    current: &str,
    restored: &str,
) -> Result<Option<String>, EncryptionConfigError> {
    let mut keys = self::keys(current)?;
    let mut added = false;
    for key in self::keys(restored)? {
        if keys.iter().any(|k| k.secret == key.secret) {
            continue;
        }
        let name = if keys.iter().any(|k| k.name == key.name) {
            (1..)
                .map(|n| format!("restored-{n}"))
                .find(|name| keys.iter().all(|k| &k.name != name))
                .unwrap_or_default()
        } else {
            key.name
        };
        keys.push(Key {
            name,
            secret: key.secret,
        });
        added = true;
    }
    Ok(added.then(|| render(&keys)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(name: &str, secret: &str) -> Key {
        Key {
            name: name.to_owned(),
            secret: secret.to_owned(),
        }
    }

    #[test]
    fn a_rendered_configuration_reads_back() {
        let rendered = render(&[key("key1", "AAAA")]);
        assert_eq!(keys(&rendered).unwrap(), [key("key1", "AAAA")]);
        let value: serde_json::Value = serde_yaml_ng::from_str(&rendered).unwrap();
        assert_eq!(value["kind"], "EncryptionConfiguration");
        assert_eq!(
            value["resources"][0]["providers"][1],
            serde_json::json!({ "identity": {} })
        );
    }

    #[test]
    fn restored_keys_come_after_the_clusters_own() {
        let current = render(&[key("key1", "NEW")]);
        let restored = render(&[key("key1", "OLD")]);
        let merged = with_restored_keys(&current, &restored).unwrap().unwrap();
        assert_eq!(
            keys(&merged).unwrap(),
            [key("key1", "NEW"), key("restored-1", "OLD")],
            "new Secrets are sealed with the cluster's own key"
        );
        assert_eq!(
            with_restored_keys(&merged, &restored).unwrap(),
            None,
            "nothing to add twice"
        );
        assert_eq!(with_restored_keys(&current, &current).unwrap(), None);
    }

    #[test]
    fn other_files_are_refused() {
        assert!(keys("apiVersion: v1\nkind: Config\n").is_err());
        let no_keys = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - identity: {}\n";
        assert!(matches!(keys(no_keys), Err(EncryptionConfigError::NoKeys)));
    }
}
