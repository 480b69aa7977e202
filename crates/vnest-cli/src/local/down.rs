//! `vnest local down`: stops a control plane and removes its state.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::DownArgs;
use super::state::{self, Phase, PlaneDir, is_alive, name_of};

/// How long `serve` gets to stop its components before it is killed (its
/// components then die with it: they carry PR_SET_PDEATHSIG).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) async fn run(args: DownArgs) -> anyhow::Result<ExitCode> {
    let planes = match &args.name {
        Some(name) => {
            let plane = PlaneDir::new(name)?;
            if !plane.dir.exists() {
                bail!(
                    "there is no local control plane named {name:?}; `vnest local list` shows them"
                );
            }
            vec![plane]
        }
        None => state::all()?,
    };
    for plane in planes {
        let name = name_of(&plane.dir);
        match plane.read()? {
            Some(state) if is_alive(state.pid) => {
                eprintln!("Stopping local control plane {name:?}…");
                let started = Instant::now();
                stop_serving(&plane, state.pid).await?;
                eprintln!(
                    "Stopped {name:?} ({:.1}s).",
                    started.elapsed().as_secs_f64()
                );
            }
            state => {
                // The serving process is gone: it stopped after a component
                // failed, or it died. Its components died with it; make sure
                // before removing their files.
                let failed = state.as_ref().is_some_and(|s| s.phase == Phase::Failed);
                for (component, pid) in state.map(|s| s.components).unwrap_or_default() {
                    if is_alive(pid) {
                        tracing::warn!(component, pid, "killing a left-over component");
                        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    }
                }
                plane.remove()?;
                if failed {
                    eprintln!("Removed {name:?}, which had failed.");
                } else {
                    eprintln!("Removed the remains of {name:?}, whose serving process had died.");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends SIGTERM to `serve`, waits for it to exit (SIGKILL after a timeout)
/// and removes the state directory.
pub(crate) async fn stop_serving(plane: &PlaneDir, pid: u32) -> anyhow::Result<()> {
    let target = Pid::from_raw(i32::try_from(pid)?);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while is_alive(pid) {
        if Instant::now() > deadline {
            tracing::warn!(pid, "`vnest local serve` did not stop in time; killing it");
            let _ = kill(target, Signal::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    plane.remove()
}
