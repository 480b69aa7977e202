//! What goes into an image.

use std::path::PathBuf;

/// One entry of the image's filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A regular file copied from the local filesystem.
    File {
        path: String,
        source: PathBuf,
        mode: u32,
    },
    /// A regular file with the given contents.
    Contents {
        path: String,
        contents: Vec<u8>,
        mode: u32,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::File { path, .. }
            | Entry::Contents { path, .. }
            | Entry::Dir { path, .. }
            | Entry::Symlink { path, .. } => path,
        }
    }
}

/// An image: its reference, its files and how it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSpec {
    /// The name it is imported under, e.g. `registry.k8s.io/pause:3.10`.
    pub reference: String,
    pub entries: Vec<Entry>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `uid[:gid]` or a name; root when `None`.
    pub user: Option<String>,
}

impl ImageSpec {
    pub fn new(reference: impl Into<String>) -> Self {
        Self {
            reference: reference.into(),
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ],
            ..Self::default()
        }
    }

    /// Adds a local file at `path` in the image, executable when `mode` says.
    pub fn file(mut self, path: &str, source: impl Into<PathBuf>, mode: u32) -> Self {
        self.entries.push(Entry::File {
            path: path.to_owned(),
            source: source.into(),
            mode,
        });
        self
    }

    pub fn contents(mut self, path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.entries.push(Entry::Contents {
            path: path.to_owned(),
            contents: contents.into(),
            mode,
        });
        self
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.entries.push(Entry::Dir {
            path: path.to_owned(),
            mode,
        });
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries.push(Entry::Symlink {
            path: path.to_owned(),
            target: target.to_owned(),
        });
        self
    }

    pub fn entrypoint(mut self, args: &[&str]) -> Self {
        self.entrypoint = args.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn cmd(mut self, args: &[&str]) -> Self {
        self.cmd = args.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }
}
