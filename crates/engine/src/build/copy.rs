//! COPY's writing side: the selected sources into a (not running) container's mounted
//! rootfs, which then becomes the step's layer through `commit`.
//!
//! The destination is resolved with `openat2(RESOLVE_IN_ROOT)` from the rootfs's fd (an
//! image's symlinks, `/bin` -> `usr/bin` for one, are followed as the image means them and
//! never out of it), missing directories are made one component at a time, and every
//! entry is written with `*at` calls on directory fds: files with `O_CREAT | O_EXCL |
//! O_NOFOLLOW` after removing what was there, directories entered with `O_NOFOLLOW`. Owners
//! are `--chown`'s (root by default), modes the source's or `--chmod`'s, mtimes kept.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{fchownat, Gid, Uid, UnlinkatFlags};

use super::context::{Selected, SourceTree};
use crate::copy::node::{Kind, Node};
use crate::error::{Context, Error, Result};

/// Who owns what a COPY writes, and the mode `--chmod` forces.
#[derive(Debug, Clone, Copy)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub chmod: Option<u32>,
}

/// Copies `sources` to `dest` (absolute, in the container) inside the rootfs at `rootfs`.
pub fn copy_sources(
    tree: &SourceTree,
    sources: &[&Selected],
    rootfs: &Path,
    dest: &str,
    attrs: Attrs,
) -> Result<()> {
    let root = crate::copy::open_dir_nofollow(rootfs)?;
    let to_dir = dest.ends_with('/') || sources.len() > 1;
    if sources.len() > 1 && !dest.ends_with('/') {
        return Err(Error::invalid(
            "COPY",
            format!(
                "{dest}: with more than one source the destination must be a directory ending in /"
            ),
        ));
    }
    for sel in sources {
        let (dir, name) = if sel.node.kind() == Kind::Dir {
            (ensure_dir(root.as_fd(), dest, attrs)?, None)
        } else if to_dir || is_dir(root.as_fd(), dest) {
            (
                ensure_dir(root.as_fd(), dest, attrs)?,
                Some(sel.name.clone()),
            )
        } else {
            let p = Path::new(dest);
            let parent = p.parent().map(|p| p.to_string_lossy().into_owned());
            let name = p
                .file_name()
                .ok_or_else(|| Error::invalid("COPY", format!("{dest}: no file name")))?;
            (
                ensure_dir(root.as_fd(), parent.as_deref().unwrap_or("/"), attrs)?,
                Some(name.to_os_string()),
            )
        };
        // The open directories from the destination down to the entry being written.
        let mut stack: Vec<(String, OwnedFd)> = vec![(String::new(), dir)];
        tree.walk(sel, &mut |e| {
            if e.rel.is_empty() {
                return match &name {
                    Some(n) => {
                        let top = &stack[0].1;
                        write_entry(top.as_fd(), n, e.node, attrs, dest).map(|_| ())
                    }
                    // A directory source: its content goes into the destination.
                    None => Ok(()),
                };
            }
            let (parent, base) = e.rel.rsplit_once('/').unwrap_or(("", e.rel));
            while stack.len() > 1 && stack.last().is_some_and(|(r, _)| r != parent) {
                stack.pop();
            }
            let Some((_, dir)) = stack.last() else {
                return Ok(());
            };
            let shown = format!("{}/{}", dest.trim_end_matches('/'), e.rel);
            if let Some(fd) = write_entry(dir.as_fd(), OsStr::new(base), e.node, attrs, &shown)? {
                stack.push((e.rel.to_string(), fd));
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// True when the first bytes of a file are a tar archive, gzip'd or zstd'd (what ADD
/// unpacks instead of copying).
pub fn is_archive(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || crate::image::layer::looks_like_tar(head)
}

/// The first bytes of a selected regular file.
pub fn head_of(sel: &Selected) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(512);
    sel.node
        .open_file()
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .ctx(|| format!("reading {}", sel.rel))?;
    Ok(head)
}

/// ADD of a local archive: unpacked into the directory `dest` of the rootfs (made if
/// missing), with the layer unpacker's checks (no entry outside `dest`, no link out).
/// The rootfs is a created container's that nothing runs in, so the directory's path,
/// once resolved in the rootfs, stays what it was.
pub fn unpack_archive(sel: &Selected, rootfs: &Path, dest: &str, attrs: Attrs) -> Result<()> {
    let root = crate::copy::open_dir_nofollow(rootfs)?;
    let dir = ensure_dir(root.as_fd(), dest, attrs)?;
    let fd_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir));
    let host = std::fs::read_link(&fd_path).ctx(|| format!("resolving {dest}"))?;
    if !host.starts_with(rootfs) {
        return Err(Error::invalid(
            "ADD",
            format!("{dest}: resolves outside the image's rootfs"),
        ));
    }
    let head = head_of(sel)?;
    let file = sel
        .node
        .open_file()
        .ctx(|| format!("opening {}", sel.rel))?;
    let source = Path::new(&sel.rel);
    let (reader, _) = crate::image::layer::decoder(file, &head, source)?;
    crate::image::layer::unpack(reader, &host, source).map(|_| ())
}

/// Makes directory `path` (and its missing parents, root's, 0755) in the rootfs at
/// `rootfs`; false when it was there already.
pub fn make_dir(rootfs: &Path, path: &str) -> Result<bool> {
    let root = crate::copy::open_dir_nofollow(rootfs)?;
    if is_dir(root.as_fd(), path) {
        return Ok(false);
    }
    let attrs = Attrs {
        uid: 0,
        gid: 0,
        chmod: None,
    };
    ensure_dir(root.as_fd(), path, attrs).map(|_| true)
}

fn is_dir(root: BorrowedFd<'_>, path: &str) -> bool {
    open_in_root(root, path).is_ok()
}

fn open_in_root(root: BorrowedFd<'_>, path: &str) -> std::io::Result<OwnedFd> {
    crate::copy::in_root(root, Path::new(path), libc::O_DIRECTORY | libc::O_RDONLY)
}

/// The directory `path` in the rootfs, made (0755, `attrs`' owner) where missing.
fn ensure_dir(root: BorrowedFd<'_>, path: &str, attrs: Attrs) -> Result<OwnedFd> {
    let mut prefix = String::new();
    let mut cur = open_in_root(root, "/").ctx(|| "opening the rootfs")?;
    for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        prefix.push('/');
        prefix.push_str(comp);
        cur = match open_in_root(root, &prefix) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                match nix::sys::stat::mkdirat(cur.as_fd(), comp, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e).ctx(|| format!("creating {prefix}")),
                }
                let fd = open_in_root(root, &prefix).ctx(|| format!("opening {prefix}"))?;
                nix::unistd::fchown(
                    &fd,
                    Some(Uid::from_raw(attrs.uid)),
                    Some(Gid::from_raw(attrs.gid)),
                )
                .ctx(|| format!("chown {prefix}"))?;
                fd
            }
            Err(e) => {
                return Err(e).ctx(|| format!("{prefix} in the image (it must be a directory)"))
            }
        };
    }
    Ok(cur)
}

/// Writes one entry into `dir`; a directory is returned open for its entries.
fn write_entry(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    node: &Node,
    attrs: Attrs,
    shown: &str,
) -> Result<Option<OwnedFd>> {
    let (uid, gid) = (
        Some(Uid::from_raw(attrs.uid)),
        Some(Gid::from_raw(attrs.gid)),
    );
    let mode = Mode::from_bits_truncate(attrs.chmod.unwrap_or(node.mode()));
    match node.kind() {
        Kind::Dir => {
            match nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e).ctx(|| format!("creating {shown}")),
            }
            let fd = openat(
                dir,
                name,
                OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| format!("{shown} in the image is not a directory"))?;
            nix::unistd::fchown(&fd, uid, gid).ctx(|| format!("chown {shown}"))?;
            nix::sys::stat::fchmod(&fd, mode).ctx(|| format!("chmod {shown}"))?;
            Ok(Some(fd))
        }
        Kind::File => {
            clear_slot(dir, name, shown)?;
            let flags = OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC;
            let out = openat(dir, name, flags, Mode::from_bits_truncate(0o600))
                .ctx(|| format!("creating {shown}"))?;
            let mut out = File::from(out);
            let mut from = node
                .open_file()
                .ctx(|| format!("opening the source of {shown}"))?;
            std::io::copy(&mut from, &mut out).ctx(|| format!("copying to {shown}"))?;
            nix::unistd::fchown(&out, uid, gid).ctx(|| format!("chown {shown}"))?;
            nix::sys::stat::fchmod(&out, mode).ctx(|| format!("chmod {shown}"))?;
            let t = nix::sys::time::TimeSpec::new(node.st.st_mtime, node.st.st_mtime_nsec);
            nix::sys::stat::futimens(&out, &t, &t)
                .ctx(|| format!("setting the mtime of {shown}"))?;
            Ok(None)
        }
        Kind::Symlink => {
            clear_slot(dir, name, shown)?;
            let target = node
                .read_link()
                .ctx(|| format!("reading the link of {shown}"))?;
            nix::unistd::symlinkat(target.as_os_str(), dir, name)
                .ctx(|| format!("creating {shown}"))?;
            fchownat(
                dir,
                name,
                uid,
                gid,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .ctx(|| format!("chown {shown}"))?;
            Ok(None)
        }
        other => Err(Error::invalid(
            "COPY",
            format!(
                "{shown}: the source is {}; COPY copies files, directories and symlinks",
                other.describe()
            ),
        )),
    }
}

/// Removes a non-directory at `name` (a symlink there is replaced, never written through).
fn clear_slot(dir: BorrowedFd<'_>, name: &OsStr, shown: &str) -> Result<()> {
    match nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) => Err(Error::invalid(
            "COPY",
            format!("{shown}: a directory in the image is in the way of a file"),
        )),
        Err(e) => Err(e).ctx(|| format!("replacing {shown}")),
    }
}
