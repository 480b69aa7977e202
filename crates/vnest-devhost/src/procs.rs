//! Finding processes by command line, for clean-up of what outlives its parent.

use nix::sys::signal::{Signal, kill as send};
use nix::unistd::Pid;

/// Process ids whose command line contains every one of `needles`, except
/// this process.
pub fn with_cmdline_containing(needles: &[&str]) -> Vec<i32> {
    let me = i32::try_from(std::process::id()).unwrap_or(-1);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| {
                    let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
                    needles.iter().all(|n| cmdline.contains(n))
                })
                .unwrap_or(false)
        })
        .collect()
}

pub fn kill(pid: i32) {
    if send(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
        tracing::debug!(pid, "killed a left-over process");
    }
}
