//! A tenant etcd's maintenance API as vnest uses it: consistent snapshots
//! streamed from a member through etcd's own snapshot call (the member
//! keeps serving), and the checks a snapshot file must pass before a
//! restore may use it.

mod client;
pub mod proto;
pub mod saved;
pub mod snapshot_file;

pub use client::{EtcdError, Member, Progress, Snapshot, Tls};
pub use saved::{SaveError, save};
pub use snapshot_file::{SnapshotFileError, VerifiedSnapshot, verify};
