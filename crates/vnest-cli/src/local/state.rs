//! Where local control planes keep their state, and the state file `serve`
//! writes and `up`, `list` and `down` read.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Overrides where state lives (default `$XDG_STATE_HOME/vnest` or
/// `~/.local/state/vnest`).
pub(crate) const STATE_DIR_ENV: &str = "VNEST_STATE_DIR";

/// The directory holding every local control plane's state.
pub(crate) fn root() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("local"));
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("vnest/local"));
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .context("neither HOME nor VNEST_STATE_DIR is set; set VNEST_STATE_DIR")?;
    Ok(PathBuf::from(home).join(".local/state/vnest/local"))
}

/// The files of one local control plane.
#[derive(Debug, Clone)]
pub(crate) struct PlaneDir {
    pub dir: PathBuf,
}

impl PlaneDir {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        Ok(Self {
            dir: root()?.join(name),
        })
    }
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn serve_log(&self) -> PathBuf {
        self.dir.join("serve.log")
    }
    /// The control plane's own work directory (certificates, etcd data, logs).
    pub fn workdir(&self) -> PathBuf {
        self.dir.join("plane")
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    pub fn read(&self) -> anyhow::Result<Option<State>> {
        let path = self.state_file();
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is not a vnest state file", path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Replaces the state file atomically, so readers never see half of it.
    pub fn write(&self, state: &State) -> anyhow::Result<()> {
        let path = self.state_file();
        let tmp = self.dir.join(".state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    pub fn remove(&self) -> anyhow::Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.dir.display()))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Phase {
    Starting,
    Running,
    Failed,
    Stopping,
}

/// What `serve` reports about its control plane.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct State {
    pub name: String,
    /// The `vnest local serve` process that owns the control plane.
    pub pid: u32,
    pub phase: Phase,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    /// Start-up steps done so far, in order, for `up` to show.
    pub steps: Vec<Step>,
    pub server: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    /// Component name and process id.
    pub components: Vec<(String, u32)>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Step {
    pub message: String,
    pub elapsed_ms: Option<u64>,
}

impl State {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            pid: std::process::id(),
            phase: Phase::Starting,
            started_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            steps: Vec::new(),
            server: None,
            kubeconfig: None,
            components: Vec::new(),
            error: None,
        }
    }
}

/// Whether process `pid` still runs. A child of ours that exited is a zombie
/// until reaped, so it is reaped here rather than counted as alive.
pub(crate) fn is_alive(pid: u32) -> bool {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match waitpid(Pid::from_raw(raw), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => true,
        Ok(_) => false,
        // Not our child.
        Err(_) => vnest_local::process_running(pid),
    }
}

/// Every plane directory that exists, sorted by name.
pub(crate) fn all() -> anyhow::Result<Vec<PlaneDir>> {
    let root = root()?;
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", root.display())),
    };
    let mut dirs: Vec<PlaneDir> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| PlaneDir { dir: e.path() })
        .collect();
    dirs.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(dirs)
}

pub(crate) fn name_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
