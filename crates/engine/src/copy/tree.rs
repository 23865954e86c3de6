//! Copies a tree from one directory fd to another, for `cp` both ways.
//!
//! The source is walked with [`Node`]s (looked at and read through one fd each, symlinks
//! never followed). The destination is written only with `*at` calls on directory fds:
//! directories are entered with `O_NOFOLLOW | O_DIRECTORY`, files are created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` after removing what was there, so a symlink, FIFO or
//! device node at a destination name is replaced, never written through.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;

use super::node::{names, Kind, Node};
use crate::error::{Context, Error, Result};

/// Deeper trees are refused: each level holds two directory fds (the walk is a loop, not
/// a recursion, so depth costs fds, not stack).
pub(super) const MAX_DEPTH: usize = 256;

/// How the copy treats modes: `cp` out masks them to `0o777` (no set-id or sticky file
/// made on the host from container content); `cp` in keeps the host file's own bits.
#[derive(Clone, Copy)]
pub(super) struct Copier {
    pub(super) mode_mask: u32,
}

/// A directory being copied: its entries not yet copied, and the mode it gets once they
/// are (owner-only until then: a 0555 directory could not be filled, and nobody else
/// should see a half-made copy). `src_path` and `dst_path` name it in messages
/// (`/data` in the container, `/tmp/out/data` on the host).
struct Level {
    src: OwnedFd,
    dst: OwnedFd,
    todo: std::vec::IntoIter<OsString>,
    mode: u32,
    src_path: PathBuf,
    dst_path: PathBuf,
}

impl Copier {
    /// Copies `node` (called `src` in messages) to `name` in `dst_dir` (called `dst`).
    pub(super) fn run(
        self,
        node: Node,
        src: &Path,
        dst_dir: BorrowedFd<'_>,
        name: &OsStr,
        dst: &Path,
    ) -> Result<()> {
        let mut stack: Vec<Level> = Vec::new();
        if let Some(level) = self.entry(node, src, dst_dir, name, dst, 0)? {
            stack.push(level);
        }
        loop {
            let depth = stack.len();
            let Some(top) = stack.last_mut() else {
                return Ok(());
            };
            let Some(child) = top.todo.next() else {
                if let Some(done) = stack.pop() {
                    chmod(&done.dst, done.mode, &done.dst_path)?;
                }
                continue;
            };
            let (src_path, dst_path) = (top.src_path.join(&child), top.dst_path.join(&child));
            // Gone since the listing: a live container removed it.
            let Some(node) = Node::at(top.src.as_fd(), &child)
                .ctx(|| format!("opening {}", src_path.display()))?
            else {
                continue;
            };
            let dst_dir = top.dst.as_fd();
            if let Some(level) = self.entry(node, &src_path, dst_dir, &child, &dst_path, depth)? {
                stack.push(level);
            }
        }
    }

    /// Copies a file or symlink; for a directory, makes it and returns it to be filled.
    fn entry(
        self,
        node: Node,
        src: &Path,
        dst_dir: BorrowedFd<'_>,
        name: &OsStr,
        dst: &Path,
        depth: usize,
    ) -> Result<Option<Level>> {
        match node.kind() {
            Kind::Dir => self.dir(node, src, dst_dir, name, dst, depth).map(Some),
            Kind::File => self.file(&node, src, dst_dir, name, dst).map(|()| None),
            Kind::Symlink => {
                let target = node
                    .read_link()
                    .ctx(|| format!("reading the symlink {}", src.display()))?;
                replace_slot(dst_dir, name, dst, |slot| {
                    nix::unistd::symlinkat(target.as_os_str(), dst_dir, slot)
                })?;
                Ok(None)
            }
            other => Err(Error::invalid(
                "source",
                format!(
                    "{} is {}: cp copies only regular files, directories and symlinks",
                    src.display(),
                    other.describe()
                ),
            )),
        }
    }

    fn dir(
        self,
        node: Node,
        src: &Path,
        dst_dir: BorrowedFd<'_>,
        name: &OsStr,
        dst: &Path,
        depth: usize,
    ) -> Result<Level> {
        if depth >= MAX_DEPTH {
            return Err(Error::invalid(
                "source",
                format!(
                    "{} is more than {MAX_DEPTH} directories deep",
                    src.display()
                ),
            ));
        }
        let mode = node.mode() & self.mode_mask;
        let src_fd = node
            .into_dir()
            .ctx(|| format!("opening {}", src.display()))?;
        match nix::sys::stat::mkdirat(dst_dir, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e).ctx(|| format!("creating {}", dst.display())),
        }
        // An existing symlink (or anything but a directory) at the name is refused here.
        let dst_fd = openat(
            dst_dir,
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening the directory {}", dst.display()))?;
        let todo = names(src_fd.as_fd()).ctx(|| format!("reading {}", src.display()))?;
        Ok(Level {
            src: src_fd,
            dst: dst_fd,
            todo: todo.into_iter(),
            mode,
            src_path: src.to_path_buf(),
            dst_path: dst.to_path_buf(),
        })
    }

    fn file(
        self,
        node: &Node,
        src: &Path,
        dst_dir: BorrowedFd<'_>,
        name: &OsStr,
        dst: &Path,
    ) -> Result<()> {
        let mut from = node
            .open_file()
            .ctx(|| format!("opening {}", src.display()))?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let out = replace_slot(dst_dir, name, dst, |slot| {
            openat(dst_dir, slot, flags, Mode::from_bits_truncate(0o600))
        })?;
        let mut out = File::from(out);
        std::io::copy(&mut from, &mut out)
            .ctx(|| format!("copying {} to {}", src.display(), dst.display()))?;
        chmod(&out, node.mode() & self.mode_mask, dst)
    }
}

fn chmod(fd: &impl AsFd, mode: u32, shown: &Path) -> Result<()> {
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(mode))
        .ctx(|| format!("setting the mode of {}", shown.display()))
}

/// Creates a non-directory entry at `name` with `create`, removing whatever non-directory
/// is there first. A name that keeps coming back (the container recreating it) is an
/// error after a few tries, not a loop.
fn replace_slot<T>(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
    mut create: impl FnMut(&OsStr) -> nix::Result<T>,
) -> Result<T> {
    for _ in 0..4 {
        match create(name) {
            Err(Errno::EEXIST) => {}
            res => return res.ctx(|| format!("creating {}", shown.display())),
        }
        match nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e).ctx(|| format!("replacing {}", shown.display())),
        }
    }
    Err(Errno::EEXIST).ctx(|| format!("creating {}: it keeps being recreated", shown.display()))
}
