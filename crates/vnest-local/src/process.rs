//! A child process started with its output in a log file, tied to this
//! process's life, stopped gracefully or killed. The control plane's
//! components run as these, and so can anything else a test environment runs.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, IoContext, Result};

/// How many lines of a component's log an error shows.
const LOG_TAIL_LINES: usize = 25;

pub struct ManagedProcess {
    name: String,
    child: Child,
    log: PathBuf,
    /// The binary and arguments, when started by [`spawn`](Self::spawn),
    /// so that [`restart`](Self::restart) can run it again.
    command_line: Option<(PathBuf, Vec<String>)>,
}

impl ManagedProcess {
    /// Starts `binary args…` with stdout and stderr appended to `log`.
    ///
    /// The child gets `PR_SET_PDEATHSIG(SIGKILL)`: if the thread that started
    /// it dies (a test aborted, the CLI killed with SIGKILL) the kernel kills
    /// the child, so no etcd or apiserver outlives its owner.
    pub fn spawn(
        name: impl Into<String>,
        binary: &Path,
        args: &[String],
        log: PathBuf,
    ) -> Result<Self> {
        let mut command = Command::new(binary);
        command.args(args);
        let mut process = Self::spawn_command(name, command, log)?;
        process.command_line = Some((binary.to_owned(), args.to_vec()));
        Ok(process)
    }

    /// Kills the process (SIGKILL: a crash, nothing flushed) and starts it
    /// again with the same command line, appending to the same log (what a
    /// crash and a supervisor's restart look like). Only for processes
    /// started by [`spawn`](Self::spawn).
    pub fn crash_and_restart(&mut self) -> Result<()> {
        let Some((binary, args)) = self.command_line.clone() else {
            return Err(Error::Io {
                context: format!("restarting {}", self.name),
                source: std::io::Error::other("it was not started from a command line vnest kept"),
            });
        };
        self.kill_and_reap();
        *self = Self::spawn(self.name.clone(), &binary, &args, self.log.clone())?;
        Ok(())
    }

    /// [`spawn`](Self::spawn) for a command built by the caller (for
    /// example wrapped in `nsenter`, or with its own environment).
    pub fn spawn_command(
        name: impl Into<String>,
        mut command: Command,
        log: PathBuf,
    ) -> Result<Self> {
        let name = name.into();
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .context(|| format!("opening {}", log.display()))?;
        let err = out
            .try_clone()
            .context(|| format!("opening {}", log.display()))?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .context(|| format!("starting {name} ({:?})", command.get_program()))?;
        tracing::debug!(process = %name, pid = child.id(), log = %log.display(), "started");
        Ok(Self {
            name,
            child,
            log,
            command_line: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// An error, with the log's last lines, when the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                process: self.name.clone(),
                status: status.to_string(),
                log: self.log.clone(),
                tail: log_tail(&self.log),
            }),
            Err(source) => Err(Error::Io {
                context: format!("checking on {}", self.name),
                source,
            }),
        }
    }

    /// The error for a process that did not become ready in time.
    pub fn not_ready(&self, waited: Duration) -> Error {
        Error::NotReady {
            process: self.name.clone(),
            waited,
            log: self.log.clone(),
            tail: log_tail(&self.log),
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once the process is gone.
    pub async fn terminate(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        if kill(pid, Signal::SIGTERM).is_ok() {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    tracing::debug!(process = %self.name, "stopped");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tracing::warn!(process = %self.name, ?grace, "did not stop in time; killing");
        }
        self.kill_and_reap();
    }

    /// SIGKILL and reap, synchronously; used on drop.
    pub fn kill_and_reap(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs between fork and exec and only makes the
    // async-signal-safe syscalls prctl, getppid and _exit.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have died between fork and prctl.
            if nix::unistd::getppid() != parent {
                nix::libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Whether process `pid` runs: it exists and is not a zombie (exited, waiting
/// to be reaped by whichever process inherited it).
pub fn process_running(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if kill(Pid::from_raw(raw), None) == Err(nix::errno::Errno::ESRCH) {
        return false;
    }
    // The state letter follows the parenthesised command name.
    !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// The last lines of a log file, for error messages.
pub(crate) fn log_tail(log: &Path) -> String {
    const MAX_BYTES: u64 = 16 * 1024;
    let Ok(mut file) = File::open(log) else {
        return String::from("(no log)");
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}
