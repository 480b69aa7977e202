//! `vnest local serve NAME`: owns one control plane until SIGTERM or SIGINT.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use vnest_local::layout::write_file;
use vnest_local::{LocalControlPlane, LocalOptions, Progress};

use super::ServeArgs;
use super::state::{Phase, PlaneDir, State, Step};

/// How often a running control plane checks that its components still run.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let plane_dir = PlaneDir::new(&args.name)?;
    std::fs::create_dir_all(&plane_dir.dir)
        .with_context(|| format!("creating {}", plane_dir.dir.display()))?;
    let mut state = State::new(&args.name);
    plane_dir.write(&state)?;

    // Listen before starting, so a `down` during start-up is not lost.
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;

    let mut options = LocalOptions::new(&args.name);
    options.workdir = Some(plane_dir.workdir());
    options.with_scheduler = args.plane.with_scheduler;
    options.startup_timeout = args.plane.timeout;

    let start = LocalControlPlane::start_with_progress(options, |progress| {
        state.steps.push(step_of(&progress));
        if let Err(error) = plane_dir.write(&state) {
            tracing::warn!(%error, "could not record progress");
        }
    });
    let started = tokio::select! {
        started = start => started,
        _ = terminate.recv() => return stopped_during_start(&plane_dir),
        _ = interrupt.recv() => return stopped_during_start(&plane_dir),
    };
    let mut plane = match started {
        Ok(plane) => plane,
        Err(error) => {
            tracing::error!(%error, "start-up failed");
            state.phase = Phase::Failed;
            state.error = Some(error.to_string());
            plane_dir.write(&state)?;
            return Ok(ExitCode::FAILURE);
        }
    };

    let kubeconfig = plane_dir.kubeconfig();
    write_file(&kubeconfig, plane.admin_kubeconfig(), true)?;
    state.phase = Phase::Running;
    state.server = Some(plane.server().to_owned());
    state.kubeconfig = Some(kubeconfig);
    state.components = plane
        .components()
        .into_iter()
        .map(|(component, pid, _)| (component.to_string(), pid))
        .collect();
    plane_dir.write(&state)?;
    tracing::info!(server = plane.server(), "serving until SIGTERM");

    let mut health = tokio::time::interval(HEALTH_INTERVAL);
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = health.tick() => {
                if let Err(error) = plane.ensure_running() {
                    // Keep the files: the logs say why it died. `down` removes them.
                    tracing::error!(%error, "a component died; stopping the rest");
                    state.phase = Phase::Failed;
                    state.error = Some(error.to_string());
                    plane_dir.write(&state)?;
                    plane.keep_workdir();
                    plane.stop().await;
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    state.phase = Phase::Stopping;
    plane_dir.write(&state)?;
    plane.stop().await;
    plane_dir.remove()?;
    Ok(ExitCode::SUCCESS)
}

/// Dropping the start-up future killed whatever had started and removed the
/// work directory; what is left is the state directory.
fn stopped_during_start(plane_dir: &PlaneDir) -> anyhow::Result<ExitCode> {
    tracing::info!("stopped during start-up");
    plane_dir.remove()?;
    Ok(ExitCode::SUCCESS)
}

fn step_of(progress: &Progress) -> Step {
    match progress {
        Progress::IssuingCertificates => Step {
            message: "issuing certificates".to_owned(),
            elapsed_ms: None,
        },
        Progress::Starting(component) => Step {
            message: format!("starting {component}"),
            elapsed_ms: None,
        },
        Progress::Ready { component, elapsed } => Step {
            message: format!("{component} ready"),
            elapsed_ms: Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
        },
    }
}
