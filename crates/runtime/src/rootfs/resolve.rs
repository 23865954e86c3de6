//! Path resolution inside the container's root: every lookup goes through
//! `openat2(RESOLVE_IN_ROOT)`, so `..` and symlinks (absolute or relative) can never
//! lead out of the rootfs, and every mount is made onto the fd that was resolved.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::Mode;

use crate::sys::openat2;

const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// `path` (absolute or relative) as a path relative to the root; `..` is kept for
/// openat2, which clamps it at the root.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect()
}

/// Opens `path` inside `root`, following symlinks only within it.
pub fn open(root: BorrowedFd, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    openat2(root, &rel, flags, 0, IN_ROOT)
}

/// Whether reaching `path` inside `root` goes through a symlink (in any component).
/// A path that does not exist (yet) is not one.
pub fn through_symlink(root: BorrowedFd, path: &Path) -> io::Result<bool> {
    let rel = relative(path);
    if rel.as_os_str().is_empty() {
        return Ok(false);
    }
    match openat2(
        root,
        &rel,
        libc::O_PATH,
        0,
        IN_ROOT | libc::RESOLVE_NO_SYMLINKS,
    ) {
        Ok(_) => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens `path` inside `root` without following a symlink in its last component.
pub fn open_nofollow(root: BorrowedFd, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    open(root, path, flags | libc::O_NOFOLLOW)
}

/// Creates every missing directory of `path` inside `root` and returns an `O_PATH`
/// fd of the last one. A dangling symlink on the way is followed (inside the root)
/// and its target created, as runc does.
pub fn mkdir_all(root: BorrowedFd, path: &Path, mode: u32) -> io::Result<OwnedFd> {
    let mut todo = relative(path);
    for _ in 0..40 {
        let mut dir = open(root, Path::new("."), libc::O_PATH | libc::O_DIRECTORY)?;
        let mut sofar = PathBuf::new();
        let mut redirected = None;
        for comp in todo.components() {
            sofar.push(comp);
            dir = match open(root, &sofar, libc::O_PATH | libc::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    mkdir_at(dir.as_fd(), comp.as_os_str(), mode)?;
                    match open(root, &sofar, libc::O_PATH | libc::O_DIRECTORY) {
                        Ok(fd) => fd,
                        Err(e) => match dangling_target(root, &sofar)? {
                            Some(target) => {
                                let rest = todo.strip_prefix(&sofar).unwrap_or(Path::new(""));
                                redirected = Some(relative(&target.join(rest)));
                                break;
                            }
                            None => return Err(e),
                        },
                    }
                }
                Err(e) => return Err(e),
            };
        }
        match redirected {
            Some(next) => todo = next,
            None => return Ok(dir),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

/// Where a dangling symlink at `link` (inside the root) points, as a path inside
/// the root; `None` when `link` is not a symlink.
fn dangling_target(root: BorrowedFd, link: &Path) -> io::Result<Option<PathBuf>> {
    let parent = link.parent().unwrap_or(Path::new(""));
    let Some(name) = link.file_name() else {
        return Ok(None);
    };
    let dir = match open(root, parent, libc::O_PATH | libc::O_DIRECTORY) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    match nix::fcntl::readlinkat(dir.as_fd(), name) {
        Ok(target) => {
            let target = PathBuf::from(target);
            Ok(Some(if target.is_absolute() {
                target
            } else {
                parent.join(target)
            }))
        }
        Err(_) => Ok(None),
    }
}

fn mkdir_at(dir: BorrowedFd, name: &OsStr, mode: u32) -> io::Result<()> {
    match nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(mode)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Makes sure a mount target exists inside `root` (a directory, or an empty file when
/// the source is not a directory) and returns an `O_PATH` fd of it.
pub fn mount_target(root: BorrowedFd, path: &Path, want_dir: bool) -> io::Result<OwnedFd> {
    match open(root, path, libc::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
        Err(_) => {}
    }
    if want_dir {
        return mkdir_all(root, path, 0o755);
    }
    let mut rel = relative(path);
    for _ in 0..40 {
        match dangling_target(root, &rel)? {
            Some(target) => rel = relative(&target),
            None => break,
        }
    }
    let parent = rel.parent().unwrap_or(Path::new(""));
    let name = rel
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mount target has no name"))?;
    let dir = mkdir_all(root, parent, 0o755)?;
    // Re-open the parent as a real directory fd (O_PATH cannot create entries).
    let dirfd = openat2(
        dir.as_fd(),
        Path::new("."),
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
        0,
    )?;
    match nix::fcntl::openat(
        dirfd.as_fd(),
        name,
        nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_EXCL
            | nix::fcntl::OFlag::O_WRONLY
            | nix::fcntl::OFlag::O_CLOEXEC
            | nix::fcntl::OFlag::O_NOFOLLOW,
        Mode::from_bits_truncate(0o644),
    ) {
        Ok(_) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    open(root, &rel, libc::O_PATH)
}
