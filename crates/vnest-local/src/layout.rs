//! Where a control plane's files live inside its work directory, and writing
//! them there.

use std::path::{Path, PathBuf};

use vnest_pki::ControlPlanePki;

use crate::error::{IoContext, Result};

/// Where a control plane's files live inside its work directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn pki(&self, file: &str) -> PathBuf {
        self.dir.join("pki").join(file)
    }
    pub fn etcd_data(&self) -> PathBuf {
        self.dir.join("etcd-data")
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }
    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{user}.kubeconfig"))
    }
}

impl Layout {
    /// Writes every certificate and key in kubeadm's layout under `pki/`,
    /// private keys readable by the owner only.
    pub fn write_pki(&self, pki: &ControlPlanePki) -> Result<()> {
        for file in pki.files() {
            let path = self.pki(file.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .context(|| format!("creating {}", parent.display()))?;
            }
            write_file(&path, file.contents, file.secret)?;
        }
        Ok(())
    }
}

/// Writes `contents` to `path`, mode 0600 when `secret`, 0644 otherwise.
pub fn write_file(path: &Path, contents: &str, secret: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .context(|| format!("writing {}", path.display()))
}
