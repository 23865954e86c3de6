//! The supervisor's own mount namespace, where its container's overlay rootfs is
//! mounted instead of in the host's.
//!
//! Why: a container's mount namespace starts as a copy of its creator's, and a namespace
//! holding one overlay per running container makes every start copy (and the runtime
//! then walk, re-mark and detach) all of them: measured here, 1000 overlays in the
//! creator's namespace took a bare `codex-oci run` from 14.4 ms to 28.7 ms, and the
//! engine's `start` and `rm -f` grew by 10-13 ms each (docs/engine.md, "Cost model").
//! In a namespace of its own the supervisor's container copies the host's few mounts and
//! its one overlay, whatever N is; the host's table no longer grows with N either (`rm`
//! and `ps`-time readers of mountinfo stay small).
//!
//! The namespace is a slave of the host's: mounts and unmounts made on the host later
//! (a volume's filesystem, an admin's umount) reach it, and nothing mounted in it reaches
//! the host. It lives as long as the supervisor and its children (worker, shim, the
//! finishing run): when they are gone, so is the overlay, even after a `kill -9`.
//!
//! The host reaches a running container's merged tree through the supervisor's
//! `/proc/PID/root` ([`LiveRootfs`]), opened once and checked against the supervisor's
//! recorded identity.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use codex_sys::ProcessId;

use crate::engine::ROOTFS_DIR;
use crate::error::{Context, Error, Result};

/// Moves the calling process (single-threaded: a fresh supervisor) into a mount
/// namespace of its own, a slave of the one it was in.
pub fn enter_private() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .ctx(|| "unsharing the supervisor's mount namespace")?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .ctx(|| "making the supervisor's mounts slaves of the host's")
}

/// A running container's merged rootfs as its supervisor's namespace has it, held by
/// an fd: the path [`LiveRootfs::path`] names that very directory for as long as this
/// value lives, whatever happens to the supervisor after it was opened.
pub struct LiveRootfs {
    fd: OwnedFd,
}

impl LiveRootfs {
    /// Opens `dir`/rootfs as `supervisor` sees it. Fails when the supervisor is not the
    /// recorded process any more (gone, or its pid reused), checked after the open so
    /// that the fd is known to come from the recorded supervisor's namespace.
    pub fn open(supervisor: ProcessId, dir: &Path, name: &str) -> Result<LiveRootfs> {
        let gone = || {
            Error::invalid(
                "container",
                format!(
                    "{name}: its supervisor (process {}) is gone; its rootfs is no longer mounted",
                    supervisor.pid
                ),
            )
        };
        let path = supervisor_view(supervisor.pid, &dir.join(ROOTFS_DIR));
        let fd: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&path)
            .map(OwnedFd::from)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ESRCH) => gone(),
                _ => Error::Io {
                    context: format!("opening {}", path.display()),
                    cause: e,
                },
            })?;
        if !supervisor.is_running() {
            return Err(gone());
        }
        Ok(LiveRootfs { fd })
    }

    /// A path that opens the held directory (`/proc/self/fd/N`).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// `path` (absolute, in the host's tree) as process `pid`'s mount namespace has it.
fn supervisor_view(pid: i32, path: &Path) -> PathBuf {
    let mut view = PathBuf::from(format!("/proc/{pid}/root"));
    view.extend(path.components().skip(1));
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_is_the_path_below_the_process_root() {
        assert_eq!(
            supervisor_view(42, Path::new("/var/lib/codex/containers/abc/rootfs")),
            PathBuf::from("/proc/42/root/var/lib/codex/containers/abc/rootfs")
        );
    }
}
