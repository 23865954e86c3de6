//! The steady-state half of a codex-ctr container supervisor.
//!
//! A supervisor (`codex-ctr __supervise --root ROOT ID`) needs the whole engine to
//! create and start a container and to clean up after it, but in between it only
//! copies the container's stdout and stderr into the log, enforces `--timeout` and
//! waits for the init, whose parent it must be. So the supervisor execs the small
//! `codex-shim` binary (the pid survives an exec) while a forked worker starts the
//! container; a container that outlives the worker's first moments is handed over
//! to the shim, which runs `codex-ctr __supervise --root ROOT ID --finish ...` when
//! the init has exited, to record the exit. See [`handoff`] and
//! `docs/supervisor.md`.
//!
//! This library is shared by both sides: the log writer ([`log`]), the output pump
//! ([`pump`]) and the protocol between them ([`handoff`]). It depends on `libc`
//! only, so that the shim stays small.

// Every unsafe block says why it is sound; nothing outside tests panics on a value that
// can be absent at run time (make lint and CI enforce both).
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod fdpass;
pub mod handoff;
pub mod history;
pub mod log;
pub mod monitor;
pub mod pump;
pub mod sys;

use std::fmt;

/// An I/O error with what was being done: displayed as `context: cause`.
#[derive(Debug)]
pub struct Error {
    pub context: String,
    pub cause: std::io::Error,
}

impl Error {
    pub fn new(context: impl Into<String>, cause: std::io::Error) -> Error {
        Error {
            context: context.into(),
            cause,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.cause)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches "what we were doing" to io errors.
pub(crate) trait Context<T> {
    fn ctx<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|cause| Error::new(context(), cause))
    }
}
