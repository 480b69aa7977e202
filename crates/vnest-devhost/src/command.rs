//! Running the system tools the host is built with (`ip`, `sysctl`, `ctr`).

use std::process::Command;

use anyhow::{Context, bail};

/// Runs `program args…` and fails with its stderr when it exits non-zero.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program).args(args).output().with_context(|| {
        format!("running {program} (is it installed? see tools/host/install-prerequisites.sh)")
    })?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Like [`run`], for clean-up: a failure is logged, not returned.
pub fn run_quietly(program: &str, args: &[&str]) {
    if let Err(error) = run(program, args) {
        tracing::debug!(%error, "clean-up step had nothing to do or failed");
    }
}
