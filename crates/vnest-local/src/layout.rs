//! Writing a control plane's files where its [`Layout`] puts them.

use std::path::Path;

use vnest_control_plane::Layout;
use vnest_pki::ControlPlanePki;

use crate::error::{IoContext, Result};

/// Writes every certificate and key of `pki` where `layout` puts them,
/// private keys readable by the owner only.
pub fn write_pki(layout: &Layout, pki: &ControlPlanePki) -> Result<()> {
    for file in pki.files() {
        let path = layout.pki(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
        }
        write_file(&path, file.contents, file.secret)?;
    }
    Ok(())
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
