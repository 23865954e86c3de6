//! `cp` into and out of a container, and `export --rootfs`, on a tree that the
//! container's processes may be changing while it is read (the CVE-2018-15664 class:
//! Docker's `cp` followed a symlink swapped in between its check and its use).
//!
//! - A path the user names inside the container is resolved with
//!   `openat2(RESOLVE_IN_ROOT)` from an fd of the rootfs: symlinks on the way are followed
//!   as the container sees them, and never lead out of it.
//! - Below that, every entry is reached from its parent's fd with `O_NOFOLLOW` and looked
//!   at and read through that one fd ([`node`]); a symlink is copied as a symlink.
//! - Only regular files, directories and symlinks are copied by `cp`: a FIFO or device
//!   node is refused by name (opening one on the host could block, or touch a device).
//!   `cp` out masks modes to `0o777`: container content never becomes a set-id file on
//!   the host.
//! - The destination side is written with `*at` calls on directory fds, `O_NOFOLLOW` and
//!   `O_EXCL` ([`tree`]); `export --rootfs` writes a tar from the same walk ([`export`]).

pub mod api;
mod export;
pub(crate) mod node;
mod tree;
mod volumes;

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Context, Error, Result};

pub(crate) use export::export_rootfs;
use node::Node;
use tree::Copier;

/// `path` (as named inside the container) opened from the container's rootfs `root`.
pub(crate) fn in_root(root: BorrowedFd<'_>, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir))
        .collect();
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    codex_runtime::sys::openat2(
        root,
        &rel,
        flags,
        0,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map(OwnedFd::from)
        .ctx(|| format!("opening the directory {}", path.display()))
}

/// A directory of the engine's own (a container's upper dir), opened without following a
/// symlink at its last component.
pub(crate) fn open_dir_nofollow(path: &Path) -> Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map(OwnedFd::from)
        .ctx(|| format!("opening the directory {}", path.display()))
}

/// The name a copy of `src` gets inside an existing destination directory.
fn base_name(src: &Path) -> &OsStr {
    src.file_name().unwrap_or(OsStr::new("root"))
}

/// Copies `src` (inside the container whose rootfs is `root`) to `dst` on the host.
pub fn copy_out(root: &Path, src: &Path, dst: &Path) -> Result<()> {
    let rootfd = open_dir(root)?;
    // O_PATH: found and looked at without being opened (it may be a FIFO or a device).
    let fd = in_root(rootfd.as_fd(), src, libc::O_PATH)
        .ctx(|| format!("{} in the container", src.display()))?;
    let node = Node::from_fd(fd).ctx(|| format!("{} in the container", src.display()))?;
    // Docker's rule: copying into an existing directory puts the source inside it.
    let (parent, name, shown) = if dst.is_dir() {
        (open_dir(dst)?, base_name(src), dst.join(base_name(src)))
    } else {
        let name = dst.file_name().ok_or_else(|| {
            Error::invalid("destination", format!("{} has no file name", dst.display()))
        })?;
        let parent = match dst.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        (open_dir(parent)?, name, dst.to_path_buf())
    };
    Copier { mode_mask: 0o777 }.run(node, src, parent.as_fd(), name, &shown)
}

/// Copies `src` on the host to `dst` inside the container whose rootfs is `root`.
pub fn copy_in(root: &Path, src: &Path, dst: &Path) -> Result<()> {
    // The user's own path: a symlink named as the source is copied as a symlink.
    let fd: OwnedFd = File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(src)
        .ctx(|| format!("opening {}", src.display()))?
        .into();
    let node = Node::from_fd(fd).ctx(|| format!("{}", src.display()))?;
    let rootfd = open_dir(root)?;
    let dir_flags = libc::O_DIRECTORY | libc::O_RDONLY;
    let in_container = |p: &Path| format!("{} in the container", p.display());
    // Into an existing directory: the source goes inside it.
    let (parent, name, shown) = match in_root(rootfd.as_fd(), dst, dir_flags) {
        Ok(d) => (d, base_name(src), dst.join(base_name(src))),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            let name = dst.file_name().ok_or_else(|| {
                Error::invalid("destination", format!("{} has no file name", dst.display()))
            })?;
            let p = dst.parent().unwrap_or(Path::new("/"));
            let parent = in_root(rootfd.as_fd(), p, dir_flags).ctx(|| in_container(p))?;
            (parent, name, dst.to_path_buf())
        }
        Err(e) => return Err(e).ctx(|| in_container(dst)),
    };
    Copier { mode_mask: 0o7777 }.run(node, src, parent.as_fd(), name, &shown)
}

#[cfg(test)]
mod tests;
