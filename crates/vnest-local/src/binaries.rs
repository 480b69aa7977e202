//! Finding the upstream binaries built by `tools/upstream/build.sh`.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The variable naming the directory that holds the upstream binaries.
pub const BIN_DIR_ENV: &str = "VNEST_UPSTREAM_BIN_DIR";

/// An upstream component vnest runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    Etcd,
    ApiServer,
    ControllerManager,
    Scheduler,
}

impl Component {
    pub fn binary(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary())
    }
}

/// Where the upstream binaries are.
#[derive(Clone, Debug)]
pub enum UpstreamBinaries {
    /// All in one directory (what `tools/upstream/build.sh` prints).
    Dir(PathBuf),
    /// Looked up on `PATH`.
    Path,
}

impl UpstreamBinaries {
    /// `$VNEST_UPSTREAM_BIN_DIR` when set, `PATH` otherwise.
    pub fn from_env() -> Self {
        match std::env::var_os(BIN_DIR_ENV) {
            Some(dir) if !dir.is_empty() => UpstreamBinaries::Dir(PathBuf::from(dir)),
            _ => UpstreamBinaries::Path,
        }
    }

    /// The previous Kubernetes minor's control-plane binaries, which
    /// `tools/upstream/build.sh` puts in `previous/` of its directory; none
    /// when looked up on `PATH`.
    pub fn previous_minor(&self) -> Option<UpstreamBinaries> {
        match self {
            UpstreamBinaries::Dir(dir) => Some(UpstreamBinaries::Dir(dir.join("previous"))),
            UpstreamBinaries::Path => None,
        }
    }

    /// The path of `component`'s binary, checked to exist and be executable.
    pub fn locate(&self, component: Component) -> Result<PathBuf> {
        self.locate_binary(component.binary())
    }

    /// The path of any binary the build produces (`kubectl`, `etcdctl`, …).
    pub fn locate_binary(&self, binary: &'static str) -> Result<PathBuf> {
        match self {
            UpstreamBinaries::Dir(dir) => {
                let path = dir.join(binary);
                if is_executable(&path) {
                    Ok(path)
                } else {
                    Err(Error::BinaryNotFound {
                        binary,
                        searched: format!("{BIN_DIR_ENV}={}", dir.display()),
                    })
                }
            }
            UpstreamBinaries::Path => std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .map(|dir| dir.join(binary))
                .find(|p| is_executable(p))
                .ok_or(Error::BinaryNotFound {
                    binary,
                    searched: format!("PATH ({BIN_DIR_ENV} is not set)"),
                }),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_where_it_looked_and_how_to_build_it() {
        let dir = UpstreamBinaries::Dir(PathBuf::from("/nonexistent/bin"));
        let message = match dir.locate(Component::ApiServer) {
            Err(error) => error.to_string(),
            Ok(path) => panic!("found {}", path.display()),
        };
        assert!(
            message.contains("kube-apiserver was not found"),
            "{message}"
        );
        assert!(
            message.contains("VNEST_UPSTREAM_BIN_DIR=/nonexistent/bin"),
            "{message}"
        );
        assert!(message.contains("tools/upstream/build.sh"), "{message}");
    }
}
