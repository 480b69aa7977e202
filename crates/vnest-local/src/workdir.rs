//! The directory a control plane keeps its certificates, data and logs in,
//! and the sweep that removes directories whose owner died without cleaning up.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

const TEMP_PREFIX: &str = "vnest-local-";
const OWNER_FILE: &str = "owner.pid";

/// A work directory that is removed when dropped.
#[derive(Debug)]
pub(crate) struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// A fresh directory under the system temp dir, after sweeping orphans.
    pub(crate) fn temporary() -> Result<Self> {
        sweep_orphans(&std::env::temp_dir());
        let dir = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir()
            .context(|| "creating a temporary directory".to_owned())?;
        Self::claim(dir.keep())
    }

    /// `path`, created if missing; it must be empty.
    pub(crate) fn at(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).context(|| format!("creating {}", path.display()))?;
        let mut entries =
            std::fs::read_dir(path).context(|| format!("reading {}", path.display()))?;
        if entries.next().is_some() {
            return Err(crate::Error::Io {
                context: format!("using {} as a work directory", path.display()),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "it is not empty"),
            });
        }
        Self::claim(path.to_owned())
    }

    fn claim(path: PathBuf) -> Result<Self> {
        let dir = Self { path, keep: false };
        for sub in ["pki/etcd", "logs"] {
            let p = dir.path.join(sub);
            std::fs::create_dir_all(&p).context(|| format!("creating {}", p.display()))?;
        }
        let owner = dir.path.join(OWNER_FILE);
        std::fs::write(&owner, std::process::id().to_string())
            .context(|| format!("writing {}", owner.display()))?;
        Ok(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory on drop (for post-mortems).
    pub(crate) fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), %error, "could not remove the work directory");
        }
    }
}

/// Removes `vnest-local-*` directories in `temp` whose owner process is gone.
fn sweep_orphans(temp: &Path) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let Ok(owner) = std::fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue;
        };
        let Ok(pid) = owner.trim().parse::<u32>() else {
            continue;
        };
        if !crate::process::process_running(pid) {
            tracing::info!(dir = %dir.display(), pid, "removing the directory of a control plane whose owner died");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
