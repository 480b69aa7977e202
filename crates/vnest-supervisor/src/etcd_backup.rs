//! One scheduled snapshot of a tenant's etcd (`spec.backup`), as the pods
//! of its CronJob take it (`vnest-supervisor etcd-backup`; the CronJob is
//! [`crate::desired::backup`]'s):
//!
//! 1. a snapshot through etcd's own call from the first member that answers
//!    (the tenant keeps serving), written as `vnest snapshot` writes one:
//!    `NAME-<UTC time>.db`, complete and verified or not there at all;
//! 2. the tenant apiserver's encryption configuration beside it
//!    (`.encryption`, mode 0600), without which its Secrets cannot be read
//!    elsewhere;
//! 3. the oldest snapshots of the cluster beyond `keep` removed, with their
//!    encryption files, and what an interrupted run left (`.partial`).
//!
//! A failed run leaves the snapshots that were there; the CronJob shows it
//! failed and the next run tries again.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use vnest_api::etcd_backup_args::EtcdBackupArgs;
use vnest_etcd::saved;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no etcd member answered: {0}")]
    NoMember(String),
    #[error(transparent)]
    Save(#[from] vnest_etcd::SaveError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} is not a snapshot on the backups' volume (`vnest backups NAME` lists them)")]
    NoSuchSnapshot { name: String },
}

/// What one run did.
#[derive(Debug)]
pub struct Outcome {
    pub file: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub member: String,
    /// Snapshots (and leftovers) removed to keep `keep`.
    pub removed: Vec<PathBuf>,
    /// The snapshots there now, oldest first.
    pub kept: Vec<PathBuf>,
}

/// Takes one snapshot as `args` say, then keeps the newest `keep`; the
/// members are tried for `connect_for` ([`CONNECT_FOR`] in the CronJob's
/// runs).
pub async fn run(
    args: &EtcdBackupArgs,
    connect_for: std::time::Duration,
) -> Result<Outcome, BackupError> {
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).map_err(|source| BackupError::Read { path, source })
    };
    let tls = vnest_etcd::Tls {
        ca_pem: read(args.pki.join("etcd/ca.crt"))?,
        client_cert_pem: read(args.pki.join("apiserver-etcd-client.crt"))?,
        client_key_pem: read(args.pki.join("apiserver-etcd-client.key"))?,
        server_name: args.server_name.clone(),
    };
    let encryption = read(args.encryption.clone())?;
    let (endpoint, member) = first_answering(&args.endpoints, &tls, connect_for).await?;
    let file = args
        .dir
        .join(saved::file_name(&args.cluster, SystemTime::now()));
    let (snapshot, verified) = saved::save(&member, &file, |_| {}).await?;
    let keys = saved::encryption_path(&file);
    if let Err(source) = write_private(&keys, &encryption) {
        // A snapshot whose Secrets no one could read elsewhere is not kept
        // as if it were whole.
        std::fs::remove_file(&file).ok();
        return Err(BackupError::Write { path: keys, source });
    }
    let (removed, kept) =
        keep_newest(&args.dir, &args.cluster, args.keep as usize).map_err(|source| {
            BackupError::Write {
                path: args.dir.clone(),
                source,
            }
        })?;
    Ok(Outcome {
        file,
        bytes: snapshot.bytes,
        sha256: verified.sha256,
        member: endpoint,
        removed,
        kept,
    })
}

/// How long a run tries the members: a pod just started may wait seconds
/// before the NetworkPolicy enforcer admits its traffic, and a member may
/// be restarting.
pub const CONNECT_FOR: std::time::Duration = std::time::Duration::from_secs(90);

/// The first member of `endpoints` that connects and answers, trying them
/// in turn until `connect_for` has passed.
async fn first_answering(
    endpoints: &[String],
    tls: &vnest_etcd::Tls,
    connect_for: std::time::Duration,
) -> Result<(String, vnest_etcd::Member), BackupError> {
    let deadline = tokio::time::Instant::now() + connect_for;
    loop {
        let mut refused = Vec::new();
        for endpoint in endpoints {
            let answer = match vnest_etcd::Member::connect(endpoint, tls).await {
                Ok(member) => member.status().await.map(|_| member),
                Err(error) => Err(error),
            };
            match answer {
                Ok(member) => return Ok((endpoint.clone(), member)),
                Err(error) => refused.push(format!("{endpoint}: {}", chain(&error))),
            }
        }
        let said = refused.join("; ");
        if tokio::time::Instant::now() >= deadline {
            return Err(BackupError::NoMember(said));
        }
        tracing::warn!(members = %said, "no etcd member answered yet; trying again");
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// An error with every cause it carries ("transport error" alone says
/// little).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Removes `cluster`'s snapshots in `dir` beyond the newest `keep` (their
/// names sort by time), each with its encryption file, and any
/// `.partial` left by an interrupted run. Files of other names are left
/// alone. Returns what it removed and the snapshots kept, oldest first.
pub fn keep_newest(
    dir: &Path,
    cluster: &str,
    keep: usize,
) -> std::io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let prefix = format!("{cluster}-");
    let mut snapshots = Vec::new();
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        if rest.strip_suffix(".db").is_some_and(is_utc_time) {
            snapshots.push(path);
        } else if rest.strip_suffix(".db.partial").is_some_and(is_utc_time) {
            std::fs::remove_file(&path)?;
            removed.push(path);
        }
    }
    snapshots.sort();
    let excess = snapshots.len().saturating_sub(keep);
    for old in snapshots.drain(..excess) {
        std::fs::remove_file(&old)?;
        let keys = saved::encryption_path(&old);
        if keys.exists() {
            std::fs::remove_file(&keys)?;
        }
        removed.push(old);
    }
    Ok((removed, snapshots))
}

/// The snapshots in `dir` with their sizes, oldest first (of any cluster:
/// a restored cluster's volume may hold another name's).
pub fn list(dir: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_snapshot_name(&name) {
            found.push((name, entry.metadata()?.len()));
        }
    }
    found.sort_by(|a, b| time_of(&a.0).cmp(time_of(&b.0)).then(a.0.cmp(&b.0)));
    Ok(found)
}

/// Writes snapshot `name` of `dir` to `out` as `vnest backups --fetch`
/// reads it: a line with the length of its encryption file, that file
/// (empty when missing), then the snapshot. Returns the bytes written.
pub fn send(dir: &Path, name: &str, out: &mut impl std::io::Write) -> Result<u64, BackupError> {
    if !is_snapshot_name(name) {
        return Err(BackupError::NoSuchSnapshot {
            name: name.to_owned(),
        });
    }
    let path = dir.join(name);
    let mut snapshot = std::fs::File::open(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => BackupError::NoSuchSnapshot {
            name: name.to_owned(),
        },
        _ => BackupError::Read {
            path: path.clone(),
            source,
        },
    })?;
    let keys = std::fs::read(saved::encryption_path(&path)).unwrap_or_default();
    let written = |source| BackupError::Write {
        path: "standard output".into(),
        source,
    };
    out.write_all(format!("{}\n", keys.len()).as_bytes())
        .map_err(written)?;
    out.write_all(&keys).map_err(written)?;
    let bytes = std::io::copy(&mut snapshot, out).map_err(written)?;
    out.flush().map_err(written)?;
    Ok(bytes)
}

/// `CLUSTER-20261205T120000Z.db`: a name [`saved::file_name`] gives, with
/// no path in it.
fn is_snapshot_name(name: &str) -> bool {
    !name.contains('/')
        && name
            .strip_suffix(".db")
            .and_then(|stem| stem.len().checked_sub(16).map(|at| (stem, at)))
            .is_some_and(|(stem, at)| {
                at > 1 && stem.as_bytes()[at - 1] == b'-' && is_utc_time(&stem[at..])
            })
}

/// The time part of a snapshot's name.
fn time_of(name: &str) -> &str {
    name.strip_suffix(".db")
        .and_then(|stem| stem.get(stem.len().saturating_sub(16)..))
        .unwrap_or(name)
}

/// `20261205T120000Z`, as [`saved::file_name`] writes the time.
fn is_utc_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 16
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 => *b == b'T',
            15 => *b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_snapshot_is_sent_with_its_keys_and_only_snapshots_are_listed_or_sent() {
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        put("b-20261202T000000Z.db", "second");
        put("b-20261202T000000Z.db.encryption", "keys");
        put("a-20261203T000000Z.db", "third");
        put("b-20261201T000000Z.db", "first");
        put("b-20261204T000000Z.db.partial", "half");
        put("secrets.yaml", "no");
        let listed: Vec<String> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            listed,
            [
                "b-20261201T000000Z.db",
                "b-20261202T000000Z.db",
                "a-20261203T000000Z.db"
            ]
        );
        let mut out = Vec::new();
        assert_eq!(
            send(dir.path(), "b-20261202T000000Z.db", &mut out).unwrap(),
            6
        );
        assert_eq!(out, b"4\nkeyssecond");
        let mut out = Vec::new();
        send(dir.path(), "b-20261201T000000Z.db", &mut out).unwrap();
        assert_eq!(out, b"0\nfirst", "no keys: an empty file");
        for refused in [
            "secrets.yaml",
            "../b-20261201T000000Z.db",
            "b-20261204T000000Z.db.partial",
            "b-20261205T000000Z.db",
        ] {
            assert!(
                matches!(
                    send(dir.path(), refused, &mut Vec::new()),
                    Err(BackupError::NoSuchSnapshot { .. })
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn the_newest_are_kept_with_their_keys_and_nothing_else_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str| std::fs::write(dir.path().join(name), name).unwrap();
        for time in ["20261201T000000Z", "20261202T000000Z", "20261203T000000Z"] {
            put(&format!("team-a-{time}.db"));
            put(&format!("team-a-{time}.db.encryption"));
        }
        put("team-a-20261204T000000Z.db.partial");
        put("team-ab-20261101T000000Z.db");
        put("team-a-b-20261101T000000Z.db");
        put("notes.txt");
        let (removed, kept) = keep_newest(dir.path(), "team-a", 2).unwrap();
        assert_eq!(
            names(&kept),
            ["team-a-20261202T000000Z.db", "team-a-20261203T000000Z.db"]
        );
        let mut removed = names(&removed);
        removed.sort();
        assert_eq!(
            removed,
            [
                "team-a-20261201T000000Z.db",
                "team-a-20261204T000000Z.db.partial"
            ]
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "notes.txt",
                "team-a-20261202T000000Z.db",
                "team-a-20261202T000000Z.db.encryption",
                "team-a-20261203T000000Z.db",
                "team-a-20261203T000000Z.db.encryption",
                "team-a-b-20261101T000000Z.db",
                "team-ab-20261101T000000Z.db",
            ]
        );
    }
}
