//! What a killed `image import` leaves, and how the next store operation finishes it.
//!
//! An import commits under the store lock in steps (layer, blobs, manifest, index), each
//! a rename or an atomic write. Before the first it writes the image id into its work dir
//! (`commit`). A process killed between two steps leaves its work dir unlocked with that
//! marker: the image record, if the index does not name the image yet, is deleted (the
//! import never happened), and the layers and blobs nothing uses are collected. The
//! index write is the import's commit point.

use std::collections::HashSet;
use std::fs;

use super::fsutil::{self, write_atomic};
use super::{is_hex64, ImageStore};
use crate::error::Result;

/// The file in an import's work dir that names the image being committed.
pub(super) const COMMIT_MARKER: &str = "commit";

impl ImageStore {
    /// Writes the commit marker of an import into its work dir (under the store lock).
    pub(super) fn mark_commit(&self, work: &std::path::Path, id: &str) -> Result<()> {
        write_atomic(&work.join(COMMIT_MARKER), id.as_bytes())
    }

    /// Images whose import is committing now or died committing: not imported until
    /// the index names them, so `image ls` does not show them (lock-free readers see
    /// them between the manifest and the index write).
    pub(super) fn pending_commits(&self) -> HashSet<String> {
        let rd = fs::read_dir(self.tmp_dir()).into_iter().flatten().flatten();
        rd.filter_map(|e| fs::read_to_string(e.path().join(COMMIT_MARKER)).ok())
            .map(|id| id.trim().to_string())
            .collect()
    }

    /// Under the store lock: removes the work dirs of operations that died, undoing an
    /// import that died mid-commit. True when it found any (then a [`ImageStore::gc`]
    /// collects what they left in the store).
    pub(super) fn recover(&self) -> Result<bool> {
        // Every writer of the store's JSON holds the lock: a temp file of an atomic write
        // found under it is a dead writer's.
        for dir in [self.dir.clone(), self.dir.join("manifests")] {
            let rd = fs::read_dir(&dir).into_iter().flatten().flatten();
            for e in rd.filter(|e| is_temp(&e.file_name().to_string_lossy())) {
                let _ = fs::remove_file(e.path());
            }
        }
        let tmp = self.tmp_dir();
        let Ok(rd) = fs::read_dir(&tmp) else {
            return Ok(false);
        };
        let mut index = None;
        let mut found = false;
        for e in rd.flatten() {
            let path = e.path();
            if !fsutil::work_dir_is_stale(&path) {
                continue;
            }
            if let Ok(id) = fs::read_to_string(path.join(COMMIT_MARKER)) {
                let id = id.trim();
                if index.is_none() {
                    index = Some(self.read_index()?);
                }
                let named = index
                    .as_ref()
                    .is_some_and(|i| i.references.values().any(|v| v == id));
                if is_hex64(id) && !named {
                    self.delete_record(id)?;
                }
            }
            // Best effort, as before: what stays is collected next time.
            let _ = fs::remove_dir_all(&path);
            found = true;
        }
        Ok(found)
    }
}

/// `.<name>.json.tmp-<random>`: an atomic write's temp file.
fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.contains(&format!(".json{}", codex_sys::TMP_MARK))
}
