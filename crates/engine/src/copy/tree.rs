//! Copies a tree from one directory fd to another, for `cp` both ways.
//!
//! The source is walked with [`Node`]s (looked at and read through one fd each, symlinks
//! never followed). The destination is written only with `*at` calls on directory fds:
//! directories are entered with `O_NOFOLLOW | O_DIRECTORY`, files are created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` after removing what was there, so a symlink, FIFO or
//! device node at a destination name is replaced, never written through.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;

use super::node::{names, Kind, Node};
use crate::error::{Context, Error, Result};

/// Deeper trees are refused: each level holds two directory fds.
pub(super) const MAX_DEPTH: usize = 256;

/// How the copy treats modes: `cp` out masks them to `0o777` (no set-id or sticky file
/// made on the host from container content); `cp` in keeps the host file's own bits.
#[derive(Clone, Copy)]
pub(super) struct Copier {
    pub(super) mode_mask: u32,
}

/// One side's name for an entry, for messages (`/data/fifo` in the container,
/// `/tmp/out/fifo` on the host).
struct Names<'a> {
    src: &'a Path,
    dst: &'a Path,
}

impl Copier {
    /// Copies `node` (called `src` in messages) to `name` in `dst_dir` (called `dst`).
    pub(super) fn run(
        self,
        node: &Node,
        src: &Path,
        dst_dir: BorrowedFd<'_>,
        name: &OsStr,
        dst: &Path,
    ) -> Result<()> {
        self.entry(node, &Names { src, dst }, dst_dir, name, 0)
    }

    fn entry(
        self,
        node: &Node,
        at: &Names<'_>,
        dst_dir: BorrowedFd<'_>,
        name: &OsStr,
        depth: usize,
    ) -> Result<()> {
        match node.kind() {
            Kind::Dir => self.dir(node, at, dst_dir, name, depth),
            Kind::File => self.file(node, at, dst_dir, name),
            Kind::Symlink => {
                let target = node
                    .read_link()
                    .ctx(|| format!("reading the symlink {}", at.src.display()))?;
                replace_slot(dst_dir, name, at.dst, |slot| {
                    nix::unistd::symlinkat(target.as_os_str(), dst_dir, slot)
                })
            }
            other => Err(Error::invalid(
                "source",
                format!(
                    "{} is {}: cp copies only regular files, directories and symlinks",
                    at.src.display(),
                    other.describe()
                ),
            )),
        }
    }

    fn dir(
        self,
        node: &Node,
        at: &Names<'_>,
        dst_dir: BorrowedFd<'_>,
        name: &OsStr,
        depth: usize,
    ) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(Error::invalid(
                "source",
                format!(
                    "{} is more than {MAX_DEPTH} directories deep",
                    at.src.display()
                ),
            ));
        }
        let src = node
            .open_dir()
            .ctx(|| format!("opening {}", at.src.display()))?;
        // Owner-only until its entries are in: a 0555 directory could not be filled, and
        // nobody else should see a half-made copy.
        match nix::sys::stat::mkdirat(dst_dir, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e).ctx(|| format!("creating {}", at.dst.display())),
        }
        // An existing symlink (or anything but a directory) at the name is refused here.
        let dst = openat(
            dst_dir,
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening the directory {}", at.dst.display()))?;
        let children = names(src.as_fd()).ctx(|| format!("reading {}", at.src.display()))?;
        for child in children {
            let (src_path, dst_path) = (at.src.join(&child), at.dst.join(&child));
            let Some(c) =
                Node::at(src.as_fd(), &child).ctx(|| format!("opening {}", src_path.display()))?
            else {
                continue;
            };
            let names = Names {
                src: &src_path,
                dst: &dst_path,
            };
            self.entry(&c, &names, dst.as_fd(), &child, depth + 1)?;
        }
        chmod(&dst, node.mode() & self.mode_mask, at.dst)
    }

    fn file(
        self,
        node: &Node,
        at: &Names<'_>,
        dst_dir: BorrowedFd<'_>,
        name: &OsStr,
    ) -> Result<()> {
        let mut from = node
            .open_file()
            .ctx(|| format!("opening {}", at.src.display()))?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let out = replace_slot(dst_dir, name, at.dst, |slot| {
            openat(dst_dir, slot, flags, Mode::from_bits_truncate(0o600))
        })?;
        let mut out = File::from(out);
        std::io::copy(&mut from, &mut out)
            .ctx(|| format!("copying {} to {}", at.src.display(), at.dst.display()))?;
        chmod(&out, node.mode() & self.mode_mask, at.dst)
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
