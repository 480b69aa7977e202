//! What lives on a tenant etcd member's volume, and the steps that restore
//! it from a snapshot. The member mounts its volume at [`MOUNT`] and keeps
//! its data in [`DATA`]; a restore pod (built by `vnest restore`, run by
//! the `vnest-supervisor restore-data` steps and etcd's own `etcdutl`)
//! mounts the same volume at the same place and:
//!
//! 1. [`RestoreStep::Receive`]: reads the snapshot from its stdin into
//!    [`SNAPSHOT`], checks it, and clears what an earlier interrupted
//!    restore left;
//! 2. `etcdutl snapshot restore` writes a new member into [`RESTORING`];
//! 3. [`RestoreStep::Install`]: moves the old data to [`BEFORE_RESTORE`]
//!    (one generation is kept) and the restored member to [`DATA`].
//!
//! Until step 3 the old data is untouched, so a restore that fails at any
//! step leaves the member as it was.

/// Where a member's volume is mounted, in the member and in restore pods.
pub const MOUNT: &str = "/var/lib/etcd";
/// The member's data directory, under [`MOUNT`].
pub const DATA: &str = "data";
/// The snapshot a restore received, under [`MOUNT`].
pub const SNAPSHOT: &str = "restore/snapshot.db";
/// Where etcdutl writes the restored member, under [`MOUNT`].
pub const RESTORING: &str = "restoring";
/// The data the last restore replaced, under [`MOUNT`].
pub const BEFORE_RESTORE: &str = "data.before-restore";

/// `vnest-supervisor restore-data`'s steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RestoreStep {
    Receive,
    Install,
}

impl RestoreStep {
    /// The command line of this step in a restore pod.
    pub fn command(self) -> Vec<String> {
        let step = match self {
            RestoreStep::Receive => "receive",
            RestoreStep::Install => "install",
        };
        ["vnest-supervisor", "restore-data", step, MOUNT]
            .map(str::to_owned)
            .to_vec()
    }
}

/// `path` under [`MOUNT`].
pub fn under_mount(path: &str) -> String {
    format!("{MOUNT}/{path}")
}
