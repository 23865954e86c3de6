//! A removed container's files (`containers/.removing-<id>`): what is left to delete once
//! the container is gone for everyone, its name unlinked and its directory renamed
//! away, both under the registry lock ([`Registry::retire_container_if`]).
//!
//! The deletion needs no lock, but the removal's intent covers it: a remover killed
//! before the files are gone leaves the intent abandoned, and the next command's open
//! runs the full reconcile, which deletes `.removing-*` leftovers.
//!
//! At the end of an attached `run --rm` the process that recorded the end, which waits
//! for the command's exit anyway, deletes them ([`Registry::delete_retired`]; the
//! record's `deleter_pid`), and the command exits 0.7-0.9 ms sooner. Handing the
//! deletion to a process spawned for it was measured and left: the spawn (even a vfork)
//! cost 0.2-0.5 ms, and on two cores the deleter's exec landed on the next command's
//! time (docs/benchmarks.md). That process may also have removed the container itself,
//! in the step that recorded its end ([`Registry::update_container_then_retire`]); the
//! command then reads the end from the removed record ([`Registry::retired_record`]).

use std::path::{Path, PathBuf};

use super::files::{mount_points, mounts_under, read_versioned, remove_tree};
use super::STATE_FILE;
use super::{still_mounted, ContainerRecord, Registry, RECORD_VERSION, REMOVING_PREFIX};
use crate::error::{Error, Result};

impl Registry {
    /// [`Registry::update_container`], then, if `f` returned true, the container's
    /// removal for everyone under the same lock: its name unlinked and its directory
    /// renamed to `.removing-<id>`, whose files stay until someone deletes them
    /// ([`Registry::delete_retired`]). The end of an attached `run --rm`: its supervisor
    /// records the end and removes the container in one step, and the command, which
    /// holds the log open, reads the end from the renamed record
    /// ([`Registry::retired_record`]). Only an ephemeral container is removed so (its
    /// removal is not synced); should the removal fail, the end stays recorded and the
    /// container is left to its remover, as if `f` had said no. Returns the record as
    /// written and whether the container was removed.
    pub(crate) fn update_container_then_retire(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord) -> Result<bool>,
    ) -> Result<(ContainerRecord, bool)> {
        let _lock = self.lock()?;
        let mut retire = false;
        let rec = self.update_locked(id, |r| {
            retire = f(r)?;
            Ok(())
        })?;
        if !retire || !rec.ephemeral() {
            return Ok((rec, false));
        }
        // The end is written and the container not yet removed: a reader now finds it
        // ended and still there (the attached command then removes it itself, and finds
        // it gone once this lock is released).
        crate::testhook::pause("end-written");
        let dir = self.container_dir(id)?;
        let trash = self.containers_dir().join(format!("{REMOVING_PREFIX}{id}"));
        // The name first, then the directory, as every removal does.
        if self.remove_link(&rec.name).is_err() {
            return Ok((rec, false));
        }
        // No mount check: nothing is mounted below a container whose end was just
        // recorded (its supervisor unmounted the rootfs first, and a `cp`, which mounts
        // a stopped container's, needs the end recorded and this lock); the deletion,
        // later, checks.
        if self.retire(&dir, &trash, &[], false).is_err() {
            let _ = self.add_link(&rec.name, id);
            return Ok((rec, false));
        }
        Ok((rec, true))
    }

    /// The record of container `id` as its removal left it in `.removing-<id>`, until its
    /// files are deleted; `None` once they are (or if it was never removed so).
    pub fn retired_record(&self, id: &str) -> Result<Option<ContainerRecord>> {
        // Checked as an id before it becomes a path.
        self.container_dir(id)?;
        let trash = self.containers_dir().join(format!("{REMOVING_PREFIX}{id}"));
        let record = read_versioned::<ContainerRecord>(&trash.join(STATE_FILE), RECORD_VERSION)?;
        Ok(record.filter(|r| r.id == id))
    }

    /// Deletes what a removal of container `id` left to be deleted (its `.removing-<id>`),
    /// if anything: the end of a deletion a remover left to the container's last
    /// supervisor ([`crate::registry::ContainerRecord::deleter_pid`]). Hold an intent
    /// while this runs. Whether there was anything to delete.
    pub(crate) fn delete_retired(&self, id: &str) -> Result<bool> {
        let path = self.retired_dir(id);
        if path.symlink_metadata().is_err() {
            return Ok(false);
        }
        // Nothing can be mounted below a renamed container, whose paths nobody uses any
        // more; the check keeps a deletion from ever descending into a mount.
        if let Some(mount) = mounts_under(&mount_points()?, &path).first() {
            return Err(still_mounted(format!("deleting {}", path.display()), mount));
        }
        Trash::new(id, path).remove().map(|()| true)
    }
}

impl Registry {
    /// Where the directory of container `id` is once it is removed (renamed, until its
    /// files are deleted).
    pub(crate) fn retired_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(format!("{REMOVING_PREFIX}{id}"))
    }
}

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
        let deleted = self.remove();
        crate::trace::phase("rm: files deleted");
        deleted
    }

    fn remove(self) -> Result<()> {
        remove_tree(&self.path).map_err(|e| match e {
            Error::Io { context, cause } => Error::Io {
                context: format!("container {} is removed, but {context} failed", self.id),
                cause,
            },
            other => other,
        })
    }
}
