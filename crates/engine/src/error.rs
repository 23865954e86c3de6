//! The engine's error type: each variant names the object and what failed.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad user input; `field` names what was wrong (`name`, `volumes[1]`, `memory`).
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },

    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },

    #[error("{kind} name {name:?} is already in use")]
    NameInUse { kind: &'static str, name: String },

    /// A prefix or name that matches more than one object.
    #[error("{kind} reference {reference:?} is ambiguous: it matches {}; give more of the id", .matches.join(", "))]
    Ambiguous {
        kind: &'static str,
        reference: String,
        matches: Vec<String>,
    },

    /// An object that cannot be removed (or changed) while something uses it.
    #[error("{kind} {name:?} is in use by {by}")]
    InUse {
        kind: &'static str,
        name: String,
        by: String,
    },

    /// The operation does not fit the container's state (`start` of a running one).
    #[error("container {name:?} is {state}: {hint}")]
    WrongState {
        name: String,
        state: String,
        hint: String,
    },

    // The cause is part of the message (not a `#[source]`), so an error chain
    // printer does not repeat it.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },

    #[error("{path}: corrupt or unreadable state: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    #[error(transparent)]
    Runtime(#[from] codex_runtime::Error),
}

impl Error {
    /// The container's program could not be run: Docker's exit code for that (127 not
    /// found, 126 not executable).
    pub fn exec_code(&self) -> Option<i32> {
        match self {
            Error::Runtime(codex_runtime::Error::Exec { code, .. }) => Some(*code),
            _ => None,
        }
    }

    pub fn wrong_state(
        name: impl Into<String>,
        state: impl std::fmt::Display,
        hint: impl Into<String>,
    ) -> Self {
        Error::WrongState {
            name: name.into(),
            state: state.to_string(),
            hint: hint.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Attaches "what we were doing" to io errors.
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
