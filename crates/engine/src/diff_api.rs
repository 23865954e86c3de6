//! `diff`: the paths a container added, changed or deleted in its root filesystem, from
//! its overlay upper dir against its image's layers (the walk is in
//! `image/layer/changes.rs`). Read-only: nothing is mounted, paused or written.

use std::path::PathBuf;

use crate::commit_api::upper_options;
use crate::engine::Engine;
use crate::error::{Error, Result};
pub use crate::image::layer::{Change, ChangeKind};

impl Engine {
    /// The container's changes to its image's files, sorted by path (Docker's
    /// `/containers/{id}/changes`). Mount points (volumes, `/etc/hosts`, ...) are left
    /// out: they are not the container's files.
    pub fn diff(&self, reference: &str) -> Result<Vec<Change>> {
        let rec = self.get(reference)?;
        let dir = self.container_dir(&rec.id)?;
        let path = dir.join("lowers");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::invalid(
                    "container",
                    format!(
                        "{} uses the host's filesystem (minimal isolation): it has no changes of its own to list",
                        rec.name
                    ),
                ))
            }
            Err(e) => {
                return Err(Error::Io {
                    context: format!("reading {}", path.display()),
                    cause: e,
                })
            }
        };
        let lowers: Vec<PathBuf> = serde_json::from_slice(&text).map_err(|e| Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let spec = self.spec(&rec.id)?;
        crate::image::layer::changes(&dir.join("upper"), &lowers, &upper_options(&spec))
    }
}
