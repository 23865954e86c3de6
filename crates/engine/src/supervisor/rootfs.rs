//! The container's overlay rootfs on the host: mounted (nosuid,nodev) by the supervisor
//! before the runtime's create, unmounted at the end, and held under a lock so that a
//! `cp` or `export` of a stopped container and a start take turns.

use std::path::{Path, PathBuf};

use crate::engine::ROOTFS_DIR;
use crate::error::{Context, Error, Result};

/// Holds the container's rootfs lock: mounting and unmounting its rootfs, and a `cp`
/// or `export` working on it, happen one at a time (a `start` racing a copy out of a
/// stopped container would otherwise have its fresh mount undone by the copy's
/// unmount). Released when dropped.
pub fn lock_rootfs(dir: &Path) -> Result<codex_sys::FileLock> {
    let path = dir.join(ROOTFS_LOCK);
    codex_sys::FileLock::exclusive(&path).ctx(|| format!("locking {}", path.display()))
}

/// The lock file beside the rootfs (see [`lock_rootfs`]).
pub const ROOTFS_LOCK: &str = "rootfs.lock";

/// Mounts the overlay rootfs of a container whose directory has a layer list.
pub fn mount_rootfs(dir: &Path) -> Result<()> {
    let _lock = lock_rootfs(dir)?;
    mount_rootfs_locked(dir)
}

/// [`mount_rootfs`] for a caller that holds [`lock_rootfs`].
pub fn mount_rootfs_locked(dir: &Path) -> Result<()> {
    let Ok(text) = std::fs::read(dir.join("lowers")) else {
        return Ok(());
    };
    let lowers: Vec<PathBuf> = serde_json::from_slice(&text).map_err(|e| Error::Corrupt {
        path: dir.join("lowers"),
        reason: e.to_string(),
    })?;
    let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    let target = dir.join(ROOTFS_DIR);
    unmount_rootfs_locked(dir);
    // nosuid,nodev: nothing a container or an image put in it runs set-id or opens a
    // device through the host's mount (the container's bind clears them again, see
    // ROOTFS_SUID_DEV_ANNOTATION).
    nix::mount::mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| Error::Io {
        context: format!("mounting the rootfs overlay on {}", target.display()),
        cause: e.into(),
    })
}

pub fn unmount_rootfs(dir: &Path) {
    // Best effort, like the unmount itself: without the lock (a container directory
    // already gone) it unmounts anyway.
    let _lock = lock_rootfs(dir);
    unmount_rootfs_locked(dir);
}

/// [`unmount_rootfs`] for a caller that holds [`lock_rootfs`].
pub fn unmount_rootfs_locked(dir: &Path) {
    let _ = nix::mount::umount2(&dir.join(ROOTFS_DIR), nix::mount::MntFlags::MNT_DETACH);
}
