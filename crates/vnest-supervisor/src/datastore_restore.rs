//! The steps of a restore pod that run from vnest's own image
//! (`vnest-supervisor restore-data STEP DIR`, see
//! [`vnest_api::etcd_volume`]): receiving the snapshot onto the member's
//! volume, and putting the member etcdutl restored in place of the old
//! data. Neither touches the member's data until the restored member is
//! complete.

use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use vnest_api::etcd_volume::{BEFORE_RESTORE, DATA, RESTORING, SNAPSHOT};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the snapshot received is not usable: {0}")]
    Snapshot(#[from] vnest_etcd::SnapshotFileError),
    #[error(
        "{0} holds no restored member (etcdutl did not finish); the member's data was left as it was"
    )]
    NothingRestored(PathBuf),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError {
    let path = path.to_owned();
    move |source| RestoreError::Io { what, path, source }
}

/// Step 1: `input` (the pod's stdin, fed by `vnest restore`) into the
/// snapshot file under `dir`, durable and checked; what an earlier
/// interrupted restore left is removed first.
pub fn receive(
    dir: &Path,
    input: &mut impl Read,
) -> Result<vnest_etcd::VerifiedSnapshot, RestoreError> {
    let restoring = dir.join(RESTORING);
    if restoring.exists() {
        std::fs::remove_dir_all(&restoring).map_err(io("removing the leftover", &restoring))?;
    }
    let snapshot = dir.join(SNAPSHOT);
    let parent = snapshot.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    let partial = snapshot.with_extension("partial");
    let mut file = std::fs::File::create(&partial).map_err(io("creating", &partial))?;
    std::io::copy(input, &mut file).map_err(io("writing", &partial))?;
    file.flush().map_err(io("writing", &partial))?;
    file.sync_all().map_err(io("flushing", &partial))?;
    drop(file);
    let verified = match vnest_etcd::verify(&partial) {
        Ok(verified) => verified,
        Err(error) => {
            std::fs::remove_file(&partial).ok();
            return Err(error.into());
        }
    };
    std::fs::rename(&partial, &snapshot).map_err(io("renaming", &partial))?;
    Ok(verified)
}

/// Step 3: the restored member becomes the member's data; the data it
/// replaces is kept as the one previous generation, and the snapshot file
/// is removed.
pub fn install(dir: &Path) -> Result<(), RestoreError> {
    let restoring = dir.join(RESTORING);
    if !restoring.join("member").is_dir() {
        return Err(RestoreError::NothingRestored(restoring));
    }
    let data = dir.join(DATA);
    let before = dir.join(BEFORE_RESTORE);
    if data.exists() {
        if before.exists() {
            std::fs::remove_dir_all(&before).map_err(io("removing the older", &before))?;
        }
        std::fs::rename(&data, &before).map_err(io("moving aside", &data))?;
    }
    std::fs::rename(&restoring, &data).map_err(io("moving into place", &restoring))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("flushing", dir))?;
    let snapshot = dir.join(SNAPSHOT);
    std::fs::remove_file(&snapshot).map_err(io("removing", &snapshot))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sha2::{Digest as _, Sha256};

    /// Bytes that pass the snapshot checks (see vnest-etcd's tests).
    fn snapshot_bytes() -> Vec<u8> {
        let mut db = vec![3u8; 4 * 4096];
        db[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
        let sum = Sha256::digest(&db);
        db.extend_from_slice(sum.as_slice());
        db
    }

    #[test]
    fn receive_then_install_replaces_the_data_keeping_one_generation() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join(DATA).join("member")).unwrap();
        std::fs::write(d.join(DATA).join("member/old"), "old").unwrap();
        std::fs::create_dir_all(d.join(RESTORING)).unwrap();
        std::fs::write(d.join(RESTORING).join("half"), "left by a failed try").unwrap();

        receive(d, &mut &snapshot_bytes()[..]).unwrap();
        assert!(d.join(SNAPSHOT).is_file());
        assert!(!d.join(RESTORING).exists(), "the leftover is gone");
        assert!(d.join(DATA).join("member/old").is_file(), "data untouched");

        // Without etcdutl's output, install refuses and changes nothing.
        assert!(matches!(install(d), Err(RestoreError::NothingRestored(_))));
        assert!(d.join(DATA).join("member/old").is_file());

        std::fs::create_dir_all(d.join(RESTORING).join("member")).unwrap();
        std::fs::write(d.join(RESTORING).join("member/new"), "new").unwrap();
        install(d).unwrap();
        assert!(d.join(DATA).join("member/new").is_file());
        assert!(d.join(BEFORE_RESTORE).join("member/old").is_file());
        assert!(!d.join(SNAPSHOT).exists());

        // A second restore replaces the older generation.
        receive(d, &mut &snapshot_bytes()[..]).unwrap();
        std::fs::create_dir_all(d.join(RESTORING).join("member")).unwrap();
        install(d).unwrap();
        assert!(d.join(BEFORE_RESTORE).join("member/new").is_file());
        assert!(!d.join(BEFORE_RESTORE).join("member/old").exists());
    }

    #[test]
    fn a_bad_snapshot_is_refused_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = snapshot_bytes();
        bytes[9000] ^= 0xff;
        let error = receive(dir.path(), &mut &bytes[..]).unwrap_err();
        assert!(error.to_string().contains("corrupt"), "{error}");
        assert!(!dir.path().join(SNAPSHOT).exists());
        assert!(!dir.path().join(SNAPSHOT).with_extension("partial").exists());
    }
}
