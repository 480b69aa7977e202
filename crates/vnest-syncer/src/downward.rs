//! The downward API as the tenant pod sees it. The host's kubelet answers
//! downward-API fields from the host pod, whose name, namespace, UID,
//! labels and annotations are not the tenant pod's. Environment variables
//! get the tenant's values written in ([`tenant_field`]). Volume files,
//! which the kubelet keeps up to date, read annotations of the host pod
//! instead ([`volume_on_host`]), which the syncer keeps equal to the tenant
//! pod's values ([`annotations`]), so a tenant label change reaches them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, Pod, Volume};
use vnest_api::host_names::hashed_label;

/// The domain of the host pod annotations that carry tenant values.
const DOMAIN: &str = "downward.vnest.dev";

/// Downward-API field `path` as the tenant pod has it, where the host pod's
/// would differ: its name, namespace, UID, ServiceAccount, its labels or
/// annotations (the host pod carries vnest's own besides, and not the
/// tenant's annotations), or one of them. `None` for what the host's
/// kubelet reports truly (addresses, node, resources).
pub fn tenant_field(tenant: &Pod, path: &str) -> Option<String> {
    let meta = &tenant.metadata;
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => Some(
            meta.namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
        ),
        "metadata.uid" => meta.uid.clone(),
        "metadata.labels" => Some(format_map(meta.labels.as_ref())),
        "metadata.annotations" => Some(format_map(meta.annotations.as_ref())),
        "spec.serviceAccountName" => Some(service_account(tenant)),
        _ => keyed("metadata.labels['", meta.labels.as_ref())
            .or_else(|| keyed("metadata.annotations['", meta.annotations.as_ref())),
    }
}

/// The host pod annotation carrying field `path` for volumes, for the
/// fields [`tenant_field`] answers.
fn annotation_for(path: &str) -> Option<String> {
    let name = match path {
        "metadata.name" => "name".to_owned(),
        "metadata.namespace" => "namespace".to_owned(),
        "metadata.uid" => "uid".to_owned(),
        "metadata.labels" => "labels".to_owned(),
        "metadata.annotations" => "annotations".to_owned(),
        _ => {
            // One label or annotation: its key may not fit an annotation
            // name, so it is named by its hash.
            let kind = if path.starts_with("metadata.labels['") {
                "label"
            } else if path.starts_with("metadata.annotations['") {
                "annotation"
            } else {
                return None;
            };
            hashed_label(kind, &format!("{kind}:{path}"), "")
        }
    };
    Some(format!("{DOMAIN}/{name}"))
}

/// The downward-API files of `volume` (plain or projected).
fn files(volume: &mut Volume) -> impl Iterator<Item = &mut DownwardAPIVolumeFile> {
    let plain = volume
        .downward_api
        .iter_mut()
        .flat_map(|d| d.items.iter_mut().flatten());
    let projected = volume
        .projected
        .iter_mut()
        .flat_map(|p| p.sources.iter_mut().flatten())
        .flat_map(|s| s.downward_api.iter_mut())
        .flat_map(|d| d.items.iter_mut().flatten());
    plain.chain(projected)
}

/// `volume` with each downward-API file that would show the host pod's
/// identity reading its annotation of [`annotations`] instead.
pub fn volume_on_host(volume: &mut Volume) {
    for file in files(volume) {
        if let Some(field) = file.field_ref.as_mut()
            && let Some(annotation) = annotation_for(&field.field_path)
        {
            field.field_path = format!("metadata.annotations['{annotation}']");
        }
    }
}

/// The annotations the host pod of `tenant` carries for its downward-API
/// volumes, with the tenant pod's current values.
pub fn annotations(tenant: &Pod) -> BTreeMap<String, String> {
    let mut volumes = tenant
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    volumes
        .iter_mut()
        .flat_map(files)
        .filter_map(|file| {
            let path = &file.field_ref.as_ref()?.field_path;
            Some((annotation_for(path)?, tenant_field(tenant, path)?))
        })
        .collect()
}

/// Whether annotation `key` is one of [`annotations`].
pub fn is_downward_annotation(key: &str) -> bool {
    key.strip_prefix(DOMAIN)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// A map as the kubelet writes it into a downward-API file: `key="value"`
/// lines sorted by key, values quoted as Go's `%q` quotes them.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", go_quote(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn go_quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{b}' => quoted.push_str("\\v"),
            '\u{c}' => quoted.push_str("\\f"),
            c if c.is_control() && (c as u32) < 0x80 => {
                quoted.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// The ServiceAccount tenant pod `pod` runs as (`default` when unnamed).
pub fn service_account(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tenant() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web", "namespace": "shop", "uid": "u-1",
                "labels": { "app": "web", "tier": "front" },
                "annotations": { "note": "say \"hi\"\nbye" },
            },
            "spec": {
                "containers": [{ "name": "c", "image": "i" }],
                "volumes": [
                    { "name": "info", "downwardAPI": { "items": [
                        { "path": "name", "fieldRef": { "fieldPath": "metadata.name" } },
                        { "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } },
                        { "path": "cpu", "resourceFieldRef": { "containerName": "c", "resource": "limits.cpu" } },
                    ] } },
                    { "name": "all", "projected": { "sources": [
                        { "downwardAPI": { "items": [
                            { "path": "ns", "fieldRef": { "fieldPath": "metadata.namespace" } },
                            { "path": "note", "fieldRef": { "fieldPath": "metadata.annotations['note']" } },
                            { "path": "annotations", "fieldRef": { "fieldPath": "metadata.annotations" } },
                        ] } },
                    ] } },
                ],
            },
        }))
        .unwrap()
    }

    #[test]
    fn volume_files_read_annotations_holding_the_tenant_values() {
        let pod = tenant();
        let annotations = annotations(&pod);
        let mut volumes = pod.spec.unwrap().volumes.unwrap();
        volumes.iter_mut().for_each(volume_on_host);
        let mut read = Vec::new();
        for file in volumes.iter_mut().flat_map(files) {
            match &file.field_ref {
                Some(field) => {
                    let key = field
                        .field_path
                        .strip_prefix("metadata.annotations['")
                        .and_then(|k| k.strip_suffix("']"))
                        .unwrap_or_else(|| panic!("{} reads the host pod", field.field_path));
                    assert!(is_downward_annotation(key), "{key}");
                    read.push((file.path.clone(), annotations[key].clone()));
                }
                // What the host's kubelet reports truly is left to it.
                None => assert!(file.resource_field_ref.is_some()),
            }
        }
        assert_eq!(
            read,
            [
                ("name".to_owned(), "web".to_owned()),
                (
                    "labels".to_owned(),
                    "app=\"web\"\ntier=\"front\"".to_owned()
                ),
                ("ns".to_owned(), "shop".to_owned()),
                ("note".to_owned(), "say \"hi\"\nbye".to_owned()),
                (
                    "annotations".to_owned(),
                    "note=\"say \\\"hi\\\"\\nbye\"".to_owned()
                ),
            ]
        );
        assert_eq!(annotations.len(), 5);
    }

    #[test]
    fn one_key_each_and_none_for_what_the_host_reports() {
        assert_ne!(
            annotation_for("metadata.labels['a']"),
            annotation_for("metadata.annotations['a']")
        );
        assert_ne!(
            annotation_for("metadata.labels['a']"),
            annotation_for("metadata.labels['b']")
        );
        let long = format!("metadata.labels['{}/x']", "p".repeat(250));
        assert!(annotation_for(&long).is_some_and(|a| a.len() < 100));
        for path in ["status.podIP", "spec.nodeName", "metadata.generation"] {
            assert_eq!(annotation_for(path), None, "{path}");
        }
    }

    #[test]
    fn maps_are_quoted_as_the_kubelet_quotes_them() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("tab\there"), r#""tab\there""#);
        assert_eq!(go_quote("\u{1}é"), "\"\\x01é\"");
        assert_eq!(format_map(None), "");
    }
}
