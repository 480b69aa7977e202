//! The exit codes of `vnest`, and the failures that have their own, so a
//! script can tell "vnest is not installed" from "the host is down".

/// Shown under every `--help`.
pub(crate) const HELP: &str = "Exit codes: 0 success; 1 error (the message says what to do); 2 bad usage; \
3 not found; 4 timed out waiting (the message names the stage); 5 the host cluster is unreachable \
or refused the credentials; 6 vnest is not installed on the host; 7 your host identity may not do this (RBAC); \
8 `vnest verify` found a check failing; 130 interrupted. `vnest run` exits with its command's code.\n\
Docs: docs/cli.md";

/// Exit code: the wait ran out of time.
pub(crate) const TIMED_OUT: u8 = 4;

/// A failure with an exit code of its own; its text says what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    NotInstalled(String),
    #[error("{0}")]
    Forbidden(String),
}

/// The exit code for an error that ends the command.
pub(crate) fn code_of(error: &anyhow::Error) -> u8 {
    match error.downcast_ref::<Failure>() {
        Some(Failure::NotFound(_)) => 3,
        Some(Failure::Unreachable(_)) => 5,
        Some(Failure::NotInstalled(_)) => 6,
        Some(Failure::Forbidden(_)) => 7,
        None => 1,
    }
}
