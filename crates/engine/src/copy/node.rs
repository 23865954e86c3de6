//! One entry of a tree being copied, held by an `O_PATH | O_NOFOLLOW` fd.
//!
//! The entry is looked at (`fstat`) and read through the same open file: a container that
//! swaps the name for a symlink, a FIFO or a device node after the look changes nothing
//! for the copy, which keeps the inode it looked at. An `O_PATH` open never opens the
//! file itself, so a device node (a watchdog, a disk) or a FIFO is never opened on the
//! host just to find out what it is; only regular files and directories are reopened for
//! reading, through `/proc/self/fd`, which reaches that same inode and no other.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

/// What an entry is, from the `fstat` of its fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

impl Kind {
    fn of(mode: u32) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            libc::S_IFSOCK => Kind::Socket,
            _ => Kind::File,
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Dir => "a directory",
            Kind::File => "a regular file",
            Kind::Symlink => "a symlink",
            Kind::Fifo => "a FIFO (named pipe)",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Socket => "a socket",
        }
    }
}

pub(crate) struct Node {
    fd: OwnedFd,
    pub(crate) st: libc::stat,
}

impl Node {
    /// `name` in `dir`, not following a symlink; `None` when it is gone (removed between
    /// the directory listing and now, as happens in a live container).
    pub(crate) fn at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Node>> {
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => Node::from_fd(fd).map(Some),
            Err(nix::errno::Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The entry behind an fd opened with `O_PATH` (or any other mode).
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Node> {
        let st = nix::sys::stat::fstat(&fd)?;
        Ok(Node { fd, st })
    }

    /// The `O_PATH` (or reopened) fd of the entry.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn kind(&self) -> Kind {
        Kind::of(self.st.st_mode)
    }

    /// Permission bits, set-id and sticky bits included.
    pub(crate) fn mode(&self) -> u32 {
        self.st.st_mode & 0o7777
    }

    /// The regular file this node is, opened for reading. `O_NONBLOCK`: a lease held by
    /// the container makes the open fail instead of stalling the copy.
    pub(crate) fn open_file(&self) -> io::Result<File> {
        debug_assert_eq!(self.kind(), Kind::File);
        self.reopen(libc::O_NONBLOCK | libc::O_NOCTTY)
    }

    /// The directory this node is, opened for listing and for `*at` calls (in place of
    /// the `O_PATH` fd, which is closed: a deep walk holds one fd per level, not two).
    pub(crate) fn into_dir(self) -> io::Result<OwnedFd> {
        debug_assert_eq!(self.kind(), Kind::Dir);
        self.reopen(libc::O_DIRECTORY).map(OwnedFd::from)
    }

    fn reopen(&self, flags: i32) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .custom_flags(flags | libc::O_CLOEXEC)
            .open(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// The target of the symlink this node is (the link itself, never followed).
    pub(crate) fn read_link(&self) -> io::Result<OsString> {
        Ok(nix::fcntl::readlinkat(self.fd.as_fd(), OsStr::new(""))?)
    }
}

/// The names in directory `dir` (not `.` and `..`), in byte order so that a walk is
/// deterministic.
pub(crate) fn names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut d = nix::dir::Dir::from_fd(nix::unistd::dup(dir)?)?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}
