//! One development host per machine, from its start to the end of its
//! teardown. Two hosts on one kernel share the bridge, the node network
//! namespaces' names and the pod network namespaces: a host still tearing
//! down deletes what the next one just made. The node-namespace check in
//! [`crate::DevHost::up`] sees a running host, not one half torn down, so
//! the host holds an exclusive `flock` on [`LOCK_FILE`] for its whole
//! life; the kernel releases it when the process ends, however it ends.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// On tmpfs: a reboot ends every host and every lock.
pub const LOCK_FILE: &str = "/run/vnest-devhost.lock";

/// How often a waiting host says so.
const REPORT_EVERY: Duration = Duration::from_secs(15);

/// The machine's development-host lock, held until dropped.
pub struct MachineLock {
    _lock: Flock<File>,
}

impl MachineLock {
    /// Takes the lock at `path` ([`LOCK_FILE`] for a host), waiting up to
    /// `wait` for a host that is stopping; `progress` hears who holds it
    /// while waiting.
    pub async fn acquire(
        path: &Path,
        wait: Duration,
        progress: &mut impl FnMut(&str),
    ) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut reported: Option<Instant> = None;
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut lock) => {
                    lock.set_len(0).context("clearing the lock's holder")?;
                    lock.rewind().context("clearing the lock's holder")?;
                    write!(lock, "{}", std::process::id())
                        .with_context(|| format!("writing {}", path.display()))?;
                    return Ok(Self { _lock: lock });
                }
                Err((mut file, Errno::EWOULDBLOCK)) => {
                    let holder = holder(&mut file);
                    anyhow::ensure!(
                        started.elapsed() < wait,
                        "another development host runs on this machine (process {holder}); \
                         two hosts on one kernel tear down each other's network; stop it \
                         first (`kill {holder}`, or `vnest-devhost down` after a crash)"
                    );
                    if reported.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                        progress(&format!(
                            "waiting for the development host of process {holder} to stop"
                        ));
                        reported = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err((_, errno)) => {
                    return Err(anyhow::anyhow!("locking {}: {errno}", path.display()));
                }
            }
        }
    }
}

/// The pid the holder wrote, or "unknown".
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    match file.read_to_string(&mut text) {
        Ok(_) if !text.trim().is_empty() => text.trim().to_owned(),
        _ => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A second lock waits for the first and fails, naming its holder, once
    /// the wait is over; the lock is free again once the first is dropped.
    #[tokio::test]
    async fn a_second_host_waits_then_names_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let mut said = Vec::new();
        let first = MachineLock::acquire(&path, Duration::ZERO, &mut |_: &str| {})
            .await
            .unwrap();
        let error = MachineLock::acquire(&path, Duration::from_millis(1500), &mut |s: &str| {
            said.push(s.to_owned())
        })
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(
            error.contains(&std::process::id().to_string()),
            "names the holder: {error}"
        );
        assert!(said.iter().any(|s| s.contains("waiting")), "{said:?}");
        drop(first);
        MachineLock::acquire(&path, Duration::ZERO, &mut |_: &str| {})
            .await
            .unwrap();
    }
}
