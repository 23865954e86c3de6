//! The runtime's error type: every variant says what was being done and on what.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },

    #[error("container {0:?} already exists")]
    AlreadyExists(String),

    #[error("container {0:?} does not exist")]
    NotFound(String),

    /// The container's state.json cannot be read as a record: left empty or cut short by
    /// a host crash (a foreground `run`'s and a create's record are written unsynced).
    #[error("{}: corrupt state: {reason} (delete --force removes it)", path.display())]
    CorruptState { path: PathBuf, reason: String },

    /// The container's program could not be run: `code` is the shell's (and Docker's)
    /// exit code for it, 127 when it was not found and 126 when it could not be
    /// executed, so callers can report it without reading the message.
    #[error("{message}")]
    Exec { code: i32, message: String },

    /// A problem with config.json; `field` is the JSON path (`process.args[0]`).
    #[error("config.json: {field}: {reason}")]
    Config { field: String, reason: String },

    #[error("container {id:?} is {status}: {op} {needs}")]
    WrongState {
        id: String,
        status: String,
        op: &'static str,
        needs: &'static str,
    },

    /// `create`, `run` and `exec` fork; a fork copies only the calling thread, so a lock
    /// another thread holds (the allocator's, stdio's) would stay locked in the child.
    #[error(
        "{op} forks the calling process, which has {threads} threads: call codex-runtime \
         from a single-threaded process (before any thread or async runtime is started, \
         or from a helper process such as the codex-oci binary or the engine's supervisor)"
    )]
    MultiThreaded { op: &'static str, threads: usize },

    /// The container's processes are forks of the caller until they exec: if the
    /// caller's binary is writable, a container can rewrite it through /proc/PID/exe.
    #[error(
        "{op} refused: this process runs from a writable binary ({exe}){why}, which a container \
         could overwrite through /proc/PID/exe (CVE-2019-5736): call \
         codex_runtime::selfclone::ensure_protected_self() first (it re-executes the \
         process from a read-only view of its binary)"
    )]
    Unprotected {
        op: &'static str,
        exe: String,
        why: String,
    },

    #[error("not supported: {0}")]
    Unsupported(String),

    // The cause is part of the message (not a `#[source]`), so an error chain
    // printer does not repeat it.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },

    #[error("{hook} hook {path}: {reason}")]
    Hook {
        hook: &'static str,
        path: PathBuf,
        reason: String,
    },

    /// Reported by the container's init process (or an exec'd process) before it ran the program.
    #[error("{0}")]
    Container(String),

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Attaches "what we were doing" to low-level errors.
pub trait Context<T> {
    fn ctx<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|cause| Error::Io {
            context: context().into(),
            cause,
        })
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|errno| Error::Io {
            context: context().into(),
            cause: std::io::Error::from_raw_os_error(errno as i32),
        })
    }
}
