//! Errors that name what was being done and to which interface or address.

use std::io;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused (or a syscall failed); `context` says what and on what
    /// ("adding 10.88.0.1/16 to bridge codex0").
    // The cause is part of the message, not a #[source], so a chain printer does not
    // repeat it.
    #[error("{context}: {cause}")]
    Kernel { context: String, cause: io::Error },

    /// Bad input, caught before the kernel sees it; names the field.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },

    /// A link that must exist does not.
    #[error("no interface named {0:?}")]
    NoSuchLink(String),

    /// A name that is taken by an interface of another kind.
    #[error("interface {name:?} exists but is a {kind}, not a {want}")]
    WrongKind {
        name: String,
        kind: String,
        want: &'static str,
    },

    /// `nft` refused; `message` is what it printed (it names the line and token).
    #[error("{what}: nft: {message}")]
    Nft { what: String, message: String },

    /// An answer we could not understand.
    #[error("rtnetlink: {0}")]
    Protocol(String),
}

impl Error {
    pub(crate) fn kernel(context: impl Into<String>, cause: io::Error) -> Error {
        Error::Kernel {
            context: context.into(),
            cause,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The errno the kernel answered with, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { cause, .. } => cause.raw_os_error(),
            _ => None,
        }
    }
}
