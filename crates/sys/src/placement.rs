//! Where a filesystem puts the directories a state root makes for its stores.
//!
//! ext4 places a new subdirectory in its parent's block group, and its files and
//! subdirectories follow it there. On a filesystem without a journal it also passes over
//! every inode freed in that group between one second and a few minutes ago before it
//! reuses one (so that a crash cannot mix a deleted file's inode with a new one): each
//! new inode costs a walk past all of them. An engine root made beside other work (in
//! `/tmp`, next to a tree just deleted) therefore makes each of a `run`'s two dozen
//! inodes behind someone else's deletions: 0.1 to 1 ms each, measured here.
//!
//! The `T` attribute (`FS_TOPDIR_FL`, `chattr +T`) tells ext2/3/4 that a directory's
//! children are the tops of unrelated trees: each is placed where the allocator spreads
//! such trees (a group with more free inodes and fewer directories than average), once,
//! when it is made. Marked on the engine's root, it gives `containers/`, `names/`,
//! `runtime/` and the layers a place of their own. Not on `containers/` itself: each
//! container's directory would then go to a group of its own, whose bitmaps are read
//! from the disk first (0.3-0.7 ms a `run`, measured; docs/benchmarks.md).
//!
//! Filesystems without the flag (tmpfs, xfs, btrfs, overlayfs) refuse it; that is not
//! an error, the hint just does not apply.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `FS_TOPDIR_FL` of `<linux/fs.h>` (not in the libc crate).
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Whether [`spread_children`] could mark the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// The directory carries the flag (set now or before).
    Marked,
    /// Its filesystem has no such flag.
    Unsupported,
}

/// Marks the directory open at `dir` so that the filesystem spreads its subdirectories
/// as the tops of unrelated trees (see the module doc). Idempotent: the flags are read
/// first and written only if the mark is missing.
pub fn spread_children(dir: BorrowedFd<'_>) -> io::Result<Spread> {
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int (the kernel's actual argument size,
    // whatever the ioctl number says) to the pointer, which points at ours.
    if unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return unsupported_or(io::Error::last_os_error());
    }
    if flags & FS_TOPDIR_FL != 0 {
        return Ok(Spread::Marked);
    }
    flags |= FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int from the pointer, which points at ours.
    if unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) } != 0 {
        return unsupported_or(io::Error::last_os_error());
    }
    Ok(Spread::Marked)
}

/// The errors by which a filesystem (or a stacking one above it) says it has no such
/// flag; anything else is the caller's to see.
fn unsupported_or(e: io::Error) -> io::Result<Spread> {
    match e.raw_os_error() {
        Some(libc::ENOTTY | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => {
            Ok(Spread::Unsupported)
        }
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    /// ext2/3/4's superblock magic (statfs), the filesystems that know the flag.
    const EXT_MAGIC: libc::c_long = 0xEF53;

    fn fs_magic(path: &Path) -> libc::c_long {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statfs fills the zeroed struct we own from a NUL-terminated path.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0);
        st.f_type as libc::c_long
    }

    /// [`spread_children`] of the directory at `path` (not followed if it is a symlink).
    fn spread_children_of(path: &Path) -> io::Result<Spread> {
        let dir = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        spread_children(dir.as_fd())
    }

    fn flags_of(path: &Path) -> libc::c_int {
        let dir = File::open(path).unwrap();
        let mut flags: libc::c_int = 0;
        // SAFETY: as in spread_children.
        let r = unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        flags
    }

    #[test]
    fn marks_a_directory_on_ext4_once_and_says_so_elsewhere() {
        let base = std::env::temp_dir().join(format!("codex-sys-spread-{}", std::process::id()));
        std::fs::create_dir(&base).unwrap();
        let result = spread_children_of(&base);
        let magic = fs_magic(&base);
        if magic == EXT_MAGIC {
            assert_eq!(result.unwrap(), Spread::Marked);
            assert_ne!(flags_of(&base) & FS_TOPDIR_FL, 0, "the T flag is set");
            let before = flags_of(&base);
            assert_eq!(spread_children_of(&base).unwrap(), Spread::Marked);
            assert_eq!(flags_of(&base), before, "a second call changes nothing");
        } else {
            eprintln!(
                "SKIPPED the flag check: {} is not ext2/3/4 (magic {magic:#x})",
                base.display()
            );
            assert!(
                result.is_ok(),
                "an unsupported filesystem is not an error: {result:?}"
            );
        }
        // A symlink is not followed: the call fails on it rather than marking its target.
        let link = base.with_extension("link");
        std::os::unix::fs::symlink(&base, &link).unwrap();
        assert!(spread_children_of(&link).is_err());
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir(&base).unwrap();
    }
}
