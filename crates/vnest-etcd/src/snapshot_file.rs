//! What a snapshot file must be before a restore may use it: an etcd
//! database (bbolt) followed by the SHA-256 of its bytes, as etcd's
//! snapshot API sends it and `etcdutl snapshot restore` checks it. A file
//! that is not a database, that was copied from a member's data directory
//! (no checksum), or whose bytes changed since it was taken is refused,
//! saying which.

use std::io::Read;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// The length of the checksum etcd appends to a snapshot.
pub const CHECKSUM_LEN: u64 = 32;
/// bbolt's magic number, in the meta page at the start of the file.
const BBOLT_MAGIC: u32 = 0xED0C_DAED;
/// bbolt's page header (id, flags, count, overflow) before the meta fields.
const PAGE_HEADER_LEN: usize = 16;
/// The smallest database bbolt writes: two meta pages, a freelist and a
/// leaf, of at least 512 bytes each.
const MIN_DATABASE_LEN: u64 = 4 * 512;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an etcd snapshot: {reason}")]
    Foreign { path: String, reason: String },
    #[error(
        "{path} has no checksum: it is an etcd database but not a snapshot taken through etcd's snapshot API (a copy of a member's data directory?), so its integrity cannot be checked; take one with `vnest snapshot`"
    )]
    NoChecksum { path: String },
    #[error(
        "{path} is corrupt: its bytes hash to {actual} but the snapshot recorded {recorded} (truncated or changed since it was taken)"
    )]
    Corrupt {
        path: String,
        recorded: String,
        actual: String,
    },
}

/// A snapshot file that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSnapshot {
    /// The database's size, without the checksum.
    pub database_bytes: u64,
    /// The SHA-256 of the database, in hex.
    pub sha256: String,
}

/// Checks the snapshot file at `path` (reads it once).
pub fn verify(path: &Path) -> Result<VerifiedSnapshot, SnapshotFileError> {
    let shown = path.display().to_string();
    let read = |source| SnapshotFileError::Read {
        path: shown.clone(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read)?;
    let len = file.metadata().map_err(read)?.len();
    verify_reader(&mut file, len, &shown).map_err(|e| match e {
        Checked::Io(source) => read(source),
        Checked::File(e) => e,
    })
}

enum Checked {
    Io(std::io::Error),
    File(SnapshotFileError),
}

/// The checks of [`verify`] over `len` bytes of `input`.
fn verify_reader(input: &mut impl Read, len: u64, path: &str) -> Result<VerifiedSnapshot, Checked> {
    let foreign = |reason: &str| {
        Checked::File(SnapshotFileError::Foreign {
            path: path.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if len < MIN_DATABASE_LEN {
        return Err(foreign(&format!(
            "{len} bytes is smaller than any etcd database"
        )));
    }
    let mut first_page = [0u8; PAGE_HEADER_LEN + 4];
    input.read_exact(&mut first_page).map_err(Checked::Io)?;
    let magic = u32::from_le_bytes([
        first_page[PAGE_HEADER_LEN],
        first_page[PAGE_HEADER_LEN + 1],
        first_page[PAGE_HEADER_LEN + 2],
        first_page[PAGE_HEADER_LEN + 3],
    ]);
    if magic != BBOLT_MAGIC {
        return Err(foreign(
            "it does not start with a bbolt database (etcd's storage format)",
        ));
    }
    // etcdutl's rule: a snapshot carries a checksum when its length is a
    // checksum more than a multiple of 512 (a database is whole pages).
    if len % 512 != CHECKSUM_LEN {
        return Err(Checked::File(SnapshotFileError::NoChecksum {
            path: path.to_owned(),
        }));
    }
    let database_bytes = len - CHECKSUM_LEN;
    let mut hasher = Sha256::new();
    hasher.update(first_page);
    let mut rest = input.take(database_bytes - first_page.len() as u64);
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = rest.read(&mut buffer).map_err(Checked::Io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let mut recorded = [0u8; CHECKSUM_LEN as usize];
    input.read_exact(&mut recorded).map_err(Checked::Io)?;
    let actual = hasher.finalize();
    if actual.as_slice() != recorded {
        return Err(Checked::File(SnapshotFileError::Corrupt {
            path: path.to_owned(),
            recorded: hex(&recorded),
            actual: hex(actual.as_slice()),
        }));
    }
    Ok(VerifiedSnapshot {
        database_bytes,
        sha256: hex(actual.as_slice()),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write as _;

    /// A database-shaped file of `pages` 4 KiB pages (the magic where bbolt
    /// puts it, the rest arbitrary), with the checksum etcd appends.
    fn snapshot(pages: usize, fill: u8) -> Vec<u8> {
        let mut db = vec![fill; pages * 4096];
        db[PAGE_HEADER_LEN..PAGE_HEADER_LEN + 4].copy_from_slice(&BBOLT_MAGIC.to_le_bytes());
        let sum = Sha256::digest(&db);
        db.extend_from_slice(sum.as_slice());
        db
    }

    fn check(bytes: &[u8]) -> Result<VerifiedSnapshot, SnapshotFileError> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        verify(file.path())
    }

    #[test]
    fn accepts_a_database_with_its_checksum() {
        let verified = check(&snapshot(4, 7)).unwrap();
        assert_eq!(verified.database_bytes, 4 * 4096);
        assert_eq!(verified.sha256.len(), 64);
    }

    #[test]
    fn refuses_a_changed_byte() {
        let mut bytes = snapshot(4, 7);
        bytes[5000] ^= 1;
        assert!(matches!(
            check(&bytes),
            Err(SnapshotFileError::Corrupt { .. })
        ));
    }

    #[test]
    fn refuses_a_truncated_file() {
        let bytes = snapshot(4, 7);
        // Cut in the middle of the database: the length rule no longer
        // holds, so it reads as a database without a checksum.
        assert!(matches!(
            check(&bytes[..bytes.len() - 1000]),
            Err(SnapshotFileError::NoChecksum { .. })
        ));
        // Cut by exactly one 512-byte block: the length rule holds, the
        // checksum does not.
        let mut cut = bytes[..4 * 4096 - 512].to_vec();
        cut.extend_from_slice(&bytes[4 * 4096..]);
        assert!(matches!(
            check(&cut),
            Err(SnapshotFileError::Corrupt { .. })
        ));
    }

    #[test]
    fn refuses_a_data_directory_copy() {
        let bytes = snapshot(4, 7);
        let error = check(&bytes[..4 * 4096]).unwrap_err();
        assert!(matches!(error, SnapshotFileError::NoChecksum { .. }));
        assert!(error.to_string().contains("vnest snapshot"), "{error}");
    }

    #[test]
    fn refuses_files_that_are_not_etcd_databases() {
        let mut tarball = snapshot(4, 0);
        tarball[PAGE_HEADER_LEN] = 0x1f;
        let error = check(&tarball).unwrap_err();
        assert!(
            matches!(error, SnapshotFileError::Foreign { .. }),
            "{error}"
        );
        assert!(matches!(
            check(b"apiVersion: v1\nkind: Config\n"),
            Err(SnapshotFileError::Foreign { .. })
        ));
        assert!(matches!(check(b""), Err(SnapshotFileError::Foreign { .. })));
    }

    #[test]
    fn a_missing_file_says_so() {
        let error = verify(Path::new("/nonexistent/snapshot.db")).unwrap_err();
        assert!(matches!(error, SnapshotFileError::Read { .. }));
        assert!(error.to_string().contains("/nonexistent/snapshot.db"));
    }

    proptest::proptest! {
        /// Any change of one byte, anywhere, is caught.
        #[test]
        fn every_single_byte_change_is_refused(at in 0usize..(3 * 4096 + 32), bit in 0u8..8) {
            let mut bytes = snapshot(3, 0x5a);
            bytes[at] ^= 1 << bit;
            proptest::prop_assert!(check(&bytes).is_err());
        }
    }
}
