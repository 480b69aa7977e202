//! Where a control plane's files live inside its directory.

use std::path::PathBuf;

/// Where a control plane's files live inside its directory: kubeadm's
/// layout under `pki/`, etcd's data, logs and kubeconfigs.
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
