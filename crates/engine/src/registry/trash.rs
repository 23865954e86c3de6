//! A removed container's files (`containers/.removing-<id>`), deleted by its remover
//! or, for a command about to exit, by a process of their own.
//!
//! A container is gone for everyone once its name is unlinked and its directory renamed
//! away, both under the registry lock ([`Registry::retire_container_if`]). Deleting the
//! renamed tree changes nothing anyone can see but the disk space it holds, and it is a
//! dozen directory removals (the overlay's upper and work directories, the bundle...):
//! 0.8-1 ms on ext4 here, the largest part of the end of an attached `run --rm`. So a
//! command that has nothing else to do but exit hands the tree to a deleter,
//! `codex-shim __delete-trash TRASH INTENT`, and returns.
//!
//! The removal's intent covers the deletion wherever it runs: the deleter gets a copy of
//! the intent's locked fd (so the intent stays held after the command has exited) and
//! unlinks the intent's file once the tree is gone. A deleter killed before leaves the
//! intent abandoned, and the next command's open runs the full reconcile, which deletes
//! `.removing-*` leftovers; one that cannot delete the tree leaves it the same way, for
//! the reconcile to retry and report.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::files::remove_tree;
use super::Intent;
use crate::error::{Context, Error, Result};

pub use codex_shim::trash::{LOCK_FD as DELETE_TRASH_LOCK_FD, MODE as DELETE_TRASH_MODE};

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

    /// Deletes the files here and now.
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

    /// Hands the files and `intent` (the removal's, held until now) to a deleter process
    /// started from `deleter` (a `codex-shim`), which outlives this process if need be.
    /// If it cannot be started, the files are deleted here, as [`Trash::delete`] does.
    pub fn delete_in_background(self, intent: Intent, deleter: &Path) -> Result<()> {
        let child = match self.spawn_deleter(&intent, deleter) {
            Ok(child) => child,
            Err(_) => {
                let deleted = self.delete();
                drop(intent);
                return deleted;
            }
        };
        // The deleter's copy of the lock holds the intent now; ours goes, and the file
        // is the deleter's to unlink.
        drop(intent.hand_over());
        crate::trace::phase("rm: files handed over");
        // Reaped by a thread, so a long-lived program embedding the engine collects no
        // zombies; a command that exits first leaves the deleter to init.
        let _ = std::thread::Builder::new()
            .name("codex-trash".into())
            .spawn(move || {
                let mut child = child;
                let _ = child.wait();
            });
        Ok(())
    }

    fn spawn_deleter(&self, intent: &Intent, deleter: &Path) -> Result<std::process::Child> {
        let lock = intent
            .lock_fd()
            .ok_or_else(|| Error::invalid("intent", "it was handed over already"))?;
        // Above the fd the child's dup2 targets: the dup2 never meets its own source
        // (which it would leave close-on-exec).
        let lock = lock
            .try_clone_to_owned()
            .and_then(|fd| above(fd, DELETE_TRASH_LOCK_FD + 1))
            .ctx(|| "copying the intent's lock")?;
        let raw = lock.as_raw_fd();
        let mut cmd = Command::new(deleter);
        cmd.arg(DELETE_TRASH_MODE)
            .arg(&self.path)
            .arg(intent.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of our process group: a signal to the caller's job (a ^C right after
            // the command returned) does not stop the deletion half-way.
            .process_group(0);
        // SAFETY: between fork and exec only dup2, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, DELETE_TRASH_LOCK_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .ctx(|| format!("starting {}", deleter.display()))?;
        drop(lock);
        Ok(child)
    }
}

/// `fd` moved to a number at least `min`, close-on-exec.
fn above(fd: OwnedFd, min: i32) -> std::io::Result<OwnedFd> {
    let raw = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: F_DUPFD_CLOEXEC just returned this new fd, owned by nothing else.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) })
}
