//! Writing an [`ImageSpec`] as an OCI image archive (image layout in a tar).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::spec::{Entry, ImageSpec};
use crate::{Error, Result};

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// The digests of what was written, `sha256:<hex>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDigests {
    pub manifest: String,
    pub config: String,
    pub layer: String,
}

/// Writes `spec` as an OCI archive at `out` (written to a temporary file
/// first and renamed, so `out` is never half-written).
pub fn write_oci_archive(spec: &ImageSpec, out: &Path) -> Result<ImageDigests> {
    let (_, tag) = split_reference(&spec.reference)?;
    let layer = build_layer(spec)?;
    let layer_digest = sha256(&layer);

    let mut config = serde_json::Map::new();
    config.insert("Env".into(), json!(spec.env));
    if !spec.entrypoint.is_empty() {
        config.insert("Entrypoint".into(), json!(spec.entrypoint));
    }
    if !spec.cmd.is_empty() {
        config.insert("Cmd".into(), json!(spec.cmd));
    }
    if let Some(dir) = &spec.working_dir {
        config.insert("WorkingDir".into(), json!(dir));
    }
    if let Some(user) = &spec.user {
        config.insert("User".into(), json!(user));
    }
    let config = json!({
        "architecture": oci_architecture(),
        "os": "linux",
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created_by": "vnest-images" }],
    });
    let config = to_json(&config);
    let config_digest = sha256(&config);

    let manifest = to_json(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": { "mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": LAYER_MEDIA_TYPE, "digest": layer_digest, "size": layer.len() }],
    }));
    let manifest_digest = sha256(&manifest);
    let index = to_json(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": oci_architecture(), "os": "linux" },
            "annotations": {
                "io.containerd.image.name": spec.reference,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }));

    let tmp = out.with_extension("tmp");
    let write_err = |source| Error::Write {
        path: tmp.clone(),
        source,
    };
    let file = std::fs::File::create(&tmp).map_err(write_err)?;
    let mut archive = tar::Builder::new(std::io::BufWriter::new(file));
    let blobs = [
        (blob_path(&layer_digest), &layer),
        (blob_path(&config_digest), &config),
        (blob_path(&manifest_digest), &manifest),
    ];
    append_bytes(
        &mut archive,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    )
    .map_err(write_err)?;
    append_bytes(&mut archive, "index.json", &index, 0o644).map_err(write_err)?;
    for (path, bytes) in blobs {
        append_bytes(&mut archive, &path, bytes, 0o644).map_err(write_err)?;
    }
    archive
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(write_err)?;
    std::fs::rename(&tmp, out).map_err(|source| Error::Write {
        path: out.to_owned(),
        source,
    })?;
    Ok(ImageDigests {
        manifest: manifest_digest,
        config: config_digest,
        layer: layer_digest,
    })
}

/// `name:tag` → (`name`, `tag`); a reference needs an explicit tag so the
/// kubelet's default pull policy for it is IfNotPresent, never a pull.
fn split_reference(reference: &str) -> Result<(&str, &str)> {
    let invalid = || Error::InvalidReference(reference.to_owned());
    let (name, tag) = reference.rsplit_once(':').ok_or_else(invalid)?;
    let valid_tag = !tag.is_empty()
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || !valid_tag || name.ends_with('/') {
        return Err(invalid());
    }
    Ok((name, tag))
}

fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn to_json(value: &serde_json::Value) -> Vec<u8> {
    // Serializing a Value cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn append_bytes<W: Write>(
    archive: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    archive.append_data(&mut header, path, bytes)
}

/// The single layer: every entry plus the parent directories it needs,
/// sorted by path so the bytes depend on nothing but the inputs.
fn build_layer(spec: &ImageSpec) -> Result<Vec<u8>> {
    let mut entries: BTreeMap<String, &Entry> = BTreeMap::new();
    let mut parents: BTreeMap<String, ()> = BTreeMap::new();
    for entry in &spec.entries {
        let path = clean_path(entry.path())?;
        let mut parent = Path::new(&path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            parents.insert(p.to_string_lossy().into_owned(), ());
            parent = p.parent();
        }
        entries.insert(path, entry);
    }
    let mut archive = tar::Builder::new(Vec::new());
    let mut all: BTreeMap<String, Option<&Entry>> =
        parents.into_keys().map(|p| (p, None)).collect();
    all.extend(entries.into_iter().map(|(p, e)| (p, Some(e))));
    let io = |source| Error::Write {
        path: spec.reference.clone().into(),
        source,
    };
    for (path, entry) in all {
        match entry {
            None | Some(Entry::Dir { .. }) => {
                let mode = match entry {
                    Some(Entry::Dir { mode, .. }) => *mode,
                    _ => 0o755,
                };
                let mut header = header(tar::EntryType::Directory, mode, 0);
                archive
                    .append_data(&mut header, format!("{path}/"), std::io::empty())
                    .map_err(io)?;
            }
            Some(Entry::File { source, mode, .. }) => {
                let bytes = std::fs::read(source).map_err(|e| Error::Read {
                    path: source.clone(),
                    source: e,
                })?;
                let mut header = header(tar::EntryType::Regular, *mode, bytes.len() as u64);
                archive
                    .append_data(&mut header, &path, bytes.as_slice())
                    .map_err(io)?;
            }
            Some(Entry::Contents { contents, mode, .. }) => {
                let mut header = header(tar::EntryType::Regular, *mode, contents.len() as u64);
                archive
                    .append_data(&mut header, &path, contents.as_slice())
                    .map_err(io)?;
            }
            Some(Entry::Symlink { target, .. }) => {
                let mut header = header(tar::EntryType::Symlink, 0o777, 0);
                archive
                    .append_link(&mut header, &path, target)
                    .map_err(io)?;
            }
        }
    }
    archive.into_inner().map_err(io)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// `/bin/sh` and `bin/sh` both mean `bin/sh`; `..` is refused.
fn clean_path(path: &str) -> Result<String> {
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty() || trimmed.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(Error::InvalidPath(path.to_owned()));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn read_archive(path: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            out.insert(name, bytes);
        }
        out
    }

    fn spec() -> ImageSpec {
        ImageSpec::new("registry.example/tools:1.0")
            .contents("/bin/tool", b"#!/bin/sh\necho hi\n".to_vec(), 0o755)
            .symlink("/usr/bin/tool", "/bin/tool")
            .entrypoint(&["/bin/tool"])
            .user("65534")
    }

    #[test]
    fn the_archive_is_an_oci_layout_whose_digests_match_its_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("image.tar");
        let digests = write_oci_archive(&spec(), &out).unwrap();
        let files = read_archive(&out);
        for digest in [&digests.manifest, &digests.config, &digests.layer] {
            let blob = &files[&blob_path(digest)];
            assert_eq!(&sha256(blob), digest);
        }
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let annotations = &index["manifests"][0]["annotations"];
        assert_eq!(
            annotations["io.containerd.image.name"],
            "registry.example/tools:1.0"
        );
        assert_eq!(annotations["org.opencontainers.image.ref.name"], "1.0");
        let config: serde_json::Value =
            serde_json::from_slice(&files[&blob_path(&digests.config)]).unwrap();
        assert_eq!(config["config"]["Entrypoint"][0], "/bin/tool");
        assert_eq!(config["config"]["User"], "65534");
        assert_eq!(config["rootfs"]["diff_ids"][0], digests.layer.as_str());
    }

    #[test]
    fn the_layer_holds_files_links_and_their_parent_directories() {
        let layer = build_layer(&spec()).unwrap();
        let mut archive = tar::Archive::new(layer.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            seen.push((
                entry.path().unwrap().to_string_lossy().into_owned(),
                header.entry_type(),
                header.mode().unwrap(),
            ));
        }
        assert_eq!(
            seen,
            [
                ("bin/".to_owned(), tar::EntryType::Directory, 0o755),
                ("bin/tool".to_owned(), tar::EntryType::Regular, 0o755),
                ("usr/".to_owned(), tar::EntryType::Directory, 0o755),
                ("usr/bin/".to_owned(), tar::EntryType::Directory, 0o755),
                ("usr/bin/tool".to_owned(), tar::EntryType::Symlink, 0o777),
            ]
        );
    }

    #[test]
    fn the_same_inputs_give_the_same_digests() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_oci_archive(&spec(), &dir.path().join("a.tar")).unwrap();
        let b = write_oci_archive(&spec(), &dir.path().join("b.tar")).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_paths_and_references_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.tar");
        for bad in ["../etc/passwd", "a/../b", "/", ""] {
            let spec = ImageSpec::new("r.example/x:1").contents(bad, b"".to_vec(), 0o644);
            assert!(
                matches!(write_oci_archive(&spec, &out), Err(Error::InvalidPath(_))),
                "{bad}"
            );
        }
        for bad in ["no-tag", "r.example/x:", ":1", "r.example/x:bad tag"] {
            let spec = ImageSpec::new(bad);
            assert!(
                matches!(
                    write_oci_archive(&spec, &out),
                    Err(Error::InvalidReference(_))
                ),
                "{bad}"
            );
        }
        assert!(!out.exists());
    }
}
