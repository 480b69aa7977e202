//! The tenant apiserver's encryption configuration: Secrets are sealed in
//! etcd with secretbox under keys kept in Secret [`SECRET`] of the
//! control-plane namespace (never in etcd). The supervisor renders it once
//! per cluster; `vnest snapshot` saves it beside a snapshot (a snapshot's
//! Secrets cannot be read without it); `vnest restore` adds the saved keys
//! to the configuration of the cluster it restores into, after the
//! cluster's own, so restored Secrets can be read and new ones are sealed
//! with the cluster's own key ([`after_restore`]).

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

/// The configuration of a cluster whose etcd was just restored from a
/// snapshot sealed with `restored`'s keys: the cluster's own key
/// (`current`'s first) seals new Secrets, then the restored keys read the
/// snapshot's. A sealed value carries the name of its key, so the restored
/// keys keep their names and the cluster's own key takes another where a
/// restored key has its name (nothing in etcd is sealed with it any more:
/// the restore replaced all of it). `None` when `current` is that already.
pub fn after_restore(
    current: &str,
    restored: &str,
) -> Result<Option<String>, EncryptionConfigError> {
    let current_keys = keys(current)?;
    let restored = keys(restored)?;
    let mut own = current_keys[0].clone();
    if let Some(same) = restored.iter().find(|k| k.secret == own.secret) {
        own.name = same.name.clone();
    } else if restored.iter().any(|k| k.name == own.name) {
        own.name = own_key_name(&own.secret, &restored);
    }
    let mut wanted = vec![own.clone()];
    wanted.extend(restored.into_iter().filter(|k| k.secret != own.secret));
    Ok((wanted != current_keys).then(|| render(&wanted)))
}

/// A name for key `secret` that none of `taken` has: `own-` and a hash of
/// the key (not the key).
fn own_key_name(secret: &str, taken: &[Key]) -> String {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::digest(secret.as_bytes());
    let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let mut name = format!("own-{hash}");
    while taken.iter().any(|k| k.name == name) {
        name.push('x');
    }
    name
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
    fn restored_keys_keep_their_names_after_the_clusters_own() {
        let current = render(&[key("key1", "NEW")]);
        let restored = render(&[key("key1", "OLD"), key("key0", "OLDER")]);
        let merged = after_restore(&current, &restored).unwrap().unwrap();
        let merged_keys = keys(&merged).unwrap();
        assert_eq!(
            merged_keys[0].secret, "NEW",
            "new Secrets are sealed with the cluster's own key"
        );
        assert_ne!(
            merged_keys[0].name, "key1",
            "the restored key1 keeps its name"
        );
        assert_eq!(
            &merged_keys[1..],
            [key("key1", "OLD"), key("key0", "OLDER")]
        );
        assert_eq!(
            after_restore(&merged, &restored).unwrap(),
            None,
            "nothing to do twice"
        );
    }

    #[test]
    fn the_same_clusters_snapshot_changes_nothing() {
        let current = render(&[key("key1", "K")]);
        assert_eq!(after_restore(&current, &current).unwrap(), None);
        // The cluster's key among the restored ones: it takes that name.
        let restored = render(&[key("old", "K"), key("key1", "OTHER")]);
        let merged = keys(&after_restore(&current, &restored).unwrap().unwrap()).unwrap();
        assert_eq!(merged[0], key("old", "K"));
        assert_eq!(merged[1], key("key1", "OTHER"));
    }

    #[test]
    fn other_files_are_refused() {
        assert!(keys("apiVersion: v1\nkind: Config\n").is_err());
        let no_keys = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - identity: {}\n";
        assert!(matches!(keys(no_keys), Err(EncryptionConfigError::NoKeys)));
    }
}
