//! A snapshot written to a file so that nothing incomplete or unchecked
//! ever carries the file's name: it streams into `FILE.partial`, is flushed
//! to disk and verified, and only then renamed. `vnest snapshot`, the
//! scheduled backups and `vnest backups --fetch` all write this way, and
//! name their files alike.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::client::{EtcdError, Member, Progress, Snapshot};
use crate::snapshot_file::{SnapshotFileError, VerifiedSnapshot, verify};

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{path} exists; a snapshot never overwrites a file")]
    Exists { path: PathBuf },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("streaming the snapshot: {0}")]
    Stream(#[from] EtcdError),
    #[error("checking the snapshot just written: {0}")]
    Verify(#[from] SnapshotFileError),
}

/// Streams a snapshot from `member` into `out`, reporting `progress`.
/// On failure no file is left under either name.
pub async fn save(
    member: &Member,
    out: &Path,
    progress: impl FnMut(Progress),
) -> Result<(Snapshot, VerifiedSnapshot), SaveError> {
    write_checked(out, async move |file| {
        Ok(member.snapshot(file, progress).await?)
    })
    .await
}

/// Copies a snapshot from `stream` (one `save` wrote elsewhere) into
/// `out`, checked as [`save`] checks it; returns the bytes copied.
pub async fn save_copy(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    out: &Path,
) -> Result<(u64, VerifiedSnapshot), SaveError> {
    let partial = partial_path(out);
    write_checked(out, async move |file| {
        tokio::io::copy(stream, file)
            .await
            .map_err(|source| SaveError::Write {
                path: partial,
                source,
            })
    })
    .await
}

/// Writes `out` through `fill`, which gets the partial file: flushed,
/// verified and only then renamed; on failure no file is left under
/// either name, and an existing `out` is never touched.
async fn write_checked<T>(
    out: &Path,
    fill: impl AsyncFnOnce(&mut tokio::fs::File) -> Result<T, SaveError>,
) -> Result<(T, VerifiedSnapshot), SaveError> {
    if out.exists() {
        return Err(SaveError::Exists {
            path: out.to_owned(),
        });
    }
    let partial = partial_path(out);
    let outcome = write_via(&partial, out, fill).await;
    if outcome.is_err() {
        std::fs::remove_file(&partial).ok();
    }
    outcome
}

async fn write_via<T>(
    partial: &Path,
    out: &Path,
    fill: impl AsyncFnOnce(&mut tokio::fs::File) -> Result<T, SaveError>,
) -> Result<(T, VerifiedSnapshot), SaveError> {
    let write = |path: &Path| {
        let path = path.to_owned();
        move |source| SaveError::Write { path, source }
    };
    let mut file = tokio::fs::File::create(partial)
        .await
        .map_err(write(partial))?;
    let filled = fill(&mut file).await?;
    file.sync_all().await.map_err(write(partial))?;
    drop(file);
    let verified = verify(partial)?;
    std::fs::rename(partial, out).map_err(write(out))?;
    Ok((filled, verified))
}

/// `CLUSTER-20261205T120000Z.db`: a snapshot of `cluster` taken `at`, in
/// UTC; such names sort by time.
pub fn file_name(cluster: &str, at: SystemTime) -> String {
    let utc = humantime::format_rfc3339_seconds(at).to_string();
    let compact: String = utc.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("{cluster}-{compact}.db")
}

/// Where snapshot `out` is written until it is complete and verified.
pub fn partial_path(out: &Path) -> PathBuf {
    beside(out, ".partial")
}

/// Where the tenant apiserver's encryption configuration (whose keys
/// sealed the Secrets in snapshot `out`) is kept beside it.
pub fn encryption_path(out: &Path) -> PathBuf {
    beside(out, ".encryption")
}

/// The file next to `out` named as it is plus `suffix`.
fn beside(out: &Path, suffix: &str) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    out.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_by_cluster_and_utc_time_and_sort_by_time() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_472_000);
        let name = file_name("team-a", at);
        assert_eq!(name, "team-a-20261205T120000Z.db");
        let later = file_name("team-a", at + std::time::Duration::from_secs(61));
        assert!(name < later);
    }

    #[tokio::test]
    async fn a_copy_that_is_no_snapshot_leaves_no_file_and_nothing_is_overwritten() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().join("a.db");
        let outcome = save_copy(&mut &b"not a snapshot"[..], &out).await;
        assert!(matches!(outcome, Err(SaveError::Verify(_))), "{outcome:?}");
        assert!(!out.exists() && !partial_path(&out).exists());
        std::fs::write(&out, "kept").unwrap_or_else(|e| panic!("{e}"));
        let outcome = save_copy(&mut &b"x"[..], &out).await;
        assert!(
            matches!(outcome, Err(SaveError::Exists { .. })),
            "{outcome:?}"
        );
        assert_eq!(std::fs::read_to_string(&out).ok().as_deref(), Some("kept"));
    }

    #[test]
    fn the_partial_and_encryption_files_sit_beside_the_snapshot() {
        assert_eq!(
            partial_path(Path::new("/b/team-a.db")),
            PathBuf::from("/b/team-a.db.partial")
        );
        assert_eq!(
            partial_path(Path::new("a.db")),
            PathBuf::from("a.db.partial")
        );
        assert_eq!(
            encryption_path(Path::new("/b/team-a.db")),
            PathBuf::from("/b/team-a.db.encryption")
        );
    }
}
