//! `vnest local up`: starts `serve` in the background and follows its progress.

use std::io::Write;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vnest_local::layout::write_file;
use vnest_local::{Component, UpstreamBinaries, validate_name};

use super::UpArgs;
use super::down::stop_serving;
use super::state::{Phase, PlaneDir, State, is_alive};

/// `serve`'s log filter unless VNEST_LOG says otherwise. kube-client logs every
/// refused connection at ERROR, which is expected while the apiserver starts.
const SERVE_LOG: &str = "info,kube_client::client::builder=off";
const POLL: Duration = Duration::from_millis(25);
/// How long `serve` may take to write its first state file.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    validate_name(&args.name)?;
    // Fail fast, with the fix, when a binary is missing.
    let binaries = UpstreamBinaries::from_env();
    let mut needed = vec![
        Component::Etcd,
        Component::ApiServer,
        Component::ControllerManager,
    ];
    if args.plane.with_scheduler {
        needed.push(Component::Scheduler);
    }
    for component in needed {
        binaries.locate(component)?;
    }

    let plane_dir = PlaneDir::new(&args.name)?;
    if let Some(state) = plane_dir.read()? {
        if is_alive(state.pid) {
            bail!(
                "a local control plane named {:?} already runs (server {}); \
                 use it, or stop it with `vnest local down {}`",
                args.name,
                state.server.as_deref().unwrap_or("not ready yet"),
                args.name
            );
        }
        bail!(
            "a local control plane named {:?} was left behind by a process that died; \
             clean it up with `vnest local down {}`",
            args.name,
            args.name
        );
    }
    if let Some(root) = plane_dir.dir.parent() {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    }
    // Creating the directory claims the name: of two `up`s racing for it,
    // exactly one succeeds.
    match std::fs::create_dir(&plane_dir.dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "a local control plane named {:?} is being started by another `vnest local up`",
            args.name
        ),
        other => other.with_context(|| format!("creating {}", plane_dir.dir.display()))?,
    }

    let started = Instant::now();
    let pid = spawn_serve(&args, &plane_dir)?;
    eprintln!("Starting local control plane {:?}", args.name);

    let outcome = tokio::select! {
        outcome = follow(&plane_dir, pid) => outcome,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("Interrupted; stopping {:?}", args.name);
            stop_serving(&plane_dir, pid).await?;
            eprintln!("Stopped; nothing is left behind.");
            return Ok(ExitCode::from(130));
        }
    };
    let state = match outcome {
        Ok(state) => state,
        Err(error) => {
            stop_serving(&plane_dir, pid).await?;
            return Err(error);
        }
    };

    let kubeconfig = state
        .kubeconfig
        .clone()
        .context("the control plane is running but recorded no kubeconfig")?;
    if let Some(out) = &args.kubeconfig_out {
        let contents = std::fs::read_to_string(&kubeconfig)
            .with_context(|| format!("reading {}", kubeconfig.display()))?;
        write_file(out, &contents, true)?;
    }
    let shown = args.kubeconfig_out.as_ref().unwrap_or(&kubeconfig);
    eprintln!(
        "Local control plane {:?} is ready at {} ({:.1}s).\n\
         \n  kubectl --kubeconfig {} get namespaces\n\
         \nStop it with: vnest local down {}",
        args.name,
        state.server.as_deref().unwrap_or("?"),
        started.elapsed().as_secs_f64(),
        shown.display(),
        args.name,
    );
    println!("{}", shown.display());
    Ok(ExitCode::SUCCESS)
}

fn spawn_serve(args: &UpArgs, plane_dir: &PlaneDir) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("locating the vnest binary")?;
    let log_path = plane_dir.serve_log();
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = std::process::Command::new(exe);
    command
        .args(["local", "serve", &args.name, "--timeout"])
        .arg(humantime::format_duration(args.plane.timeout).to_string())
        .args(args.plane.with_scheduler.then_some("--with-scheduler"))
        .env(
            "VNEST_LOG",
            std::env::var("VNEST_LOG").unwrap_or_else(|_| SERVE_LOG.into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in this terminal later must not
        // reach the control plane that outlives this command.
        .process_group(0);
    let child = command.spawn().context("starting `vnest local serve`")?;
    // `serve` is reparented to init once this process exits; nothing waits here.
    Ok(child.id())
}

/// Prints each new start-up step until the control plane runs or fails.
async fn follow(plane_dir: &PlaneDir, pid: u32) -> anyhow::Result<State> {
    let spawned = Instant::now();
    let mut shown = 0;
    let mut stderr = std::io::stderr();
    loop {
        let state = plane_dir.read().ok().flatten();
        if let Some(state) = &state {
            for step in &state.steps[shown.min(state.steps.len())..] {
                match step.elapsed_ms {
                    Some(ms) => {
                        writeln!(stderr, "  ✓ {} ({:.1}s)", step.message, ms as f64 / 1000.0)
                    }
                    None => writeln!(stderr, "  … {}", step.message),
                }?;
            }
            shown = state.steps.len();
            match state.phase {
                Phase::Running => return Ok(state.clone()),
                Phase::Failed => bail!(
                    "the local control plane failed to start: {}",
                    state.error.as_deref().unwrap_or("no reason recorded")
                ),
                Phase::Starting | Phase::Stopping => {}
            }
        } else if spawned.elapsed() > SPAWN_TIMEOUT {
            bail!("`vnest local serve` did not report within {SPAWN_TIMEOUT:?}");
        }
        if !is_alive(pid) {
            let log = std::fs::read_to_string(plane_dir.serve_log()).unwrap_or_default();
            bail!(
                "`vnest local serve` exited before the control plane was ready; its log:\n{}",
                log.trim_end()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
