//! The container's overlay rootfs on the host: mounted (nosuid,nodev) by the supervisor
//! before the runtime's create, unmounted at the end, and held under a lock so that a
//! `cp` or `export` of a stopped container and a start take turns.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::ROOTFS_DIR;
use crate::error::{Context, Error, Result};

/// Holds the container's rootfs lock: mounting and unmounting its rootfs, and a `cp`
/// or `export` working on it, happen one at a time (a `start` racing a copy out of a
/// stopped container would otherwise have its fresh mount undone by the copy's
/// unmount). The lock is on the container's directory itself: no lock file to make
/// (on this VM's ext4, every inode a `run --rm` makes and deletes slows the next
/// creates, see docs/benchmarks.md). Released when dropped.
pub fn lock_rootfs(dir: &Path) -> Result<codex_sys::FileLock> {
    codex_sys::FileLock::exclusive_dir(dir).ctx(|| format!("locking {}", dir.display()))
}

/// Where overlayfs marks an upper dir last mounted `volatile`: it refuses to mount that
/// upper again while the mark is there.
const VOLATILE_MARK: &str = "work/work/incompat";

/// Mounts the overlay rootfs of a container whose directory has a layer list. A
/// `volatile` one (an ephemeral container's: `ContainerRecord::ephemeral`) skips every
/// sync of its upper dir: the fsyncs of the container's programs, and the sync of the
/// whole upper filesystem at its unmount (0.5 ms of each `run --rm` here, 0.1 ms
/// volatile); a host crash may lose what it wrote, which goes with it anyway.
pub fn mount_rootfs(dir: &Path, volatile: bool) -> Result<()> {
    let _lock = lock_rootfs(dir)?;
    mount_overlay(dir, volatile)
}

/// [`mount_rootfs`] (not volatile) for a caller that holds [`lock_rootfs`].
pub fn mount_rootfs_locked(dir: &Path) -> Result<()> {
    mount_overlay(dir, false)
}

fn mount_overlay(dir: &Path, volatile: bool) -> Result<()> {
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
    // The mark of this container's last volatile mount, on this boot (after a reboot
    // an ephemeral container is removed, never mounted again): the upper dir is what
    // the page cache says, whole.
    let mark = dir.join(VOLATILE_MARK);
    if mark.symlink_metadata().is_ok() {
        std::fs::remove_dir_all(&mark).ctx(|| format!("removing {}", mark.display()))?;
    }
    // nosuid,nodev: nothing a container or an image put in it runs set-id or opens a
    // device through the host's mount (the container's bind clears them again, see
    // ROOTFS_SUID_DEV_ANNOTATION).
    let mount = |data: &str| {
        nix::mount::mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(data),
        )
    };
    let mounted = match volatile {
        // A kernel before 5.10 has no `volatile`: the plain mount.
        true => mount(&format!("{data},volatile")).or_else(|_| mount(&data)),
        false => mount(&data),
    };
    mounted.map_err(|e| Error::Io {
        context: format!("mounting the rootfs overlay on {}", target.display()),
        cause: e.into(),
    })
}

/// Whether this supervisor mounted its container's rootfs ahead ([`premount`]) and no
/// start has taken that mount yet.
static PREMOUNTED: AtomicBool = AtomicBool::new(false);

/// Mounts the rootfs of a container still being created, whose directory already holds
/// its layer list and upper and work dirs (its starter says so on the id pipe): the
/// mount then overlaps the rest of the create (the spec, the bundle, the record) instead
/// of following it. In the supervisor's own mount namespace, so a create that fails
/// after this leaves no mount behind: the supervisor exits when the pipe ends, and its
/// namespace with it (and the directory's removal detaches it first). True if mounted.
pub(super) fn premount(dir: &Path, volatile: bool) -> bool {
    let mounted = mount_rootfs(dir, volatile).is_ok();
    PREMOUNTED.store(mounted, Ordering::SeqCst);
    mounted
}

/// Whether the rootfs is there from [`premount`], for the first start only: a later
/// start (a restart) mounts it again. Take it in the process that decides, before a
/// fork: the child's copy of the flag is not the parent's.
pub(super) fn take_premounted() -> bool {
    PREMOUNTED.swap(false, Ordering::SeqCst)
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
