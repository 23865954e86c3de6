//! A removed container's files (`containers/.removing-<id>`): what is left to delete once
//! the container is gone for everyone, its name unlinked and its directory renamed
//! away, both under the registry lock ([`Registry::retire_container_if`]).
//!
//! The deletion needs no lock, but the removal's intent covers it: a remover killed
//! before the files are gone leaves the intent abandoned, and the next command's open
//! runs the full reconcile, which deletes `.removing-*` leftovers.
//!
//! Handing the deletion to a background process, so that a command exits before it,
//! was measured and left: at the end of an attached `run --rm` the deletion takes
//! 0.8-1 ms, handing it over (a spawn, even a vfork) 0.2-0.5 ms, and on two cores the
//! deleter's exec and work land on the supervisor's and the next command's time: the
//! end-to-end `run --rm` was 0.15-1.2 ms slower (docs/benchmarks.md).

use std::path::{Path, PathBuf};

use super::files::remove_tree;
#[cfg(doc)]
use super::Registry;
use crate::error::{Error, Result};

/// A removed container's renamed directory, to be deleted.
#[derive(Debug)]
pub struct Trash {
    id: String,
    path: PathBuf,
}

impl Trash {
    pub(super) fn new(id: &str, path: PathBuf) -> Trash {
        Trash {
            id: id.to_string(),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the files. The caller still holds the removal's intent.
    pub fn delete(self) -> Result<()> {
        let deleted = remove_tree(&self.path).map_err(|e| match e {
            Error::Io { context, cause } => Error::Io {
                context: format!("container {} is removed, but {context} failed", self.id),
                cause,
            },
            other => other,
        });
        crate::trace::phase("rm: files deleted");
        deleted
    }
}
