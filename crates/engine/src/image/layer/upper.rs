//! Packing a container's overlay upper directory into a canonical layer tar (`commit`).
//!
//! The upper dir is the container's: every name, mode, owner, set-id bit and symlink in it
//! was chosen by a process we do not trust, and the container may still be running and
//! changing it while we read. So the walk is the one `export` uses ([`Node`]): every entry
//! is reached from its parent's fd with `O_NOFOLLOW`, looked at with `fstat` and read
//! through that same fd; a symlink is recorded as a symlink (its target is data), a device
//! node or FIFO is recorded from its `fstat` and never opened. Nothing is created on the
//! host: what the container wrote only becomes bytes in the tar.
//!
//! overlayfs's own markers become OCI's: a whiteout (a 0:0 character device) becomes an
//! empty `.wh.NAME` entry, an opaque directory (`trusted.overlay.opaque=y`) gets a
//! `.wh..wh..opq` entry. A name the container made that starts with `.wh.` is refused: in
//! the layer it would read as a whiteout and delete a file of the image. Directories
//! renamed with overlayfs's `redirect_dir` and metadata-only copy-ups (`metacopy`) hold
//! only part of what the container sees; they are refused by name rather than recorded
//! wrong (both are off by default, and off on the engine's mounts).
//!
//! The output is in [`super::pack`]'s canonical form (sorted depth-first, GNU headers,
//! numeric owners, whole-second mtimes, `user.*` and `security.capability` xattrs), so the
//! same change gives the same diff_id.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tar::{EntryType, Header};

use super::pack::ExactReader;
use super::{append_layer_xattrs, OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};
use crate::copy::node::{names, Kind, Node};
use crate::error::{Context, Error, Result};
use crate::image::fsutil::HashingWriter;

/// Deeper trees are refused (one open fd per level).
const MAX_DEPTH: usize = 256;

const REDIRECT_XATTR: &CStr = c"trusted.overlay.redirect";
const METACOPY_XATTR: &CStr = c"trusted.overlay.metacopy";

/// One range of a user namespace's id map: `size` ids from `host` on the host are
/// `container` onwards inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdRange {
    pub(crate) container: u32,
    pub(crate) host: u32,
    pub(crate) size: u32,
}

/// How host ids in the upper dir become the layer's ids. Empty: the container had no user
/// namespace and ids are kept.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdMap(pub(crate) Vec<IdRange>);

impl IdMap {
    /// The container's id for a host id; `None` when the id is not mapped (nothing in the
    /// container can have made such a file).
    pub(crate) fn to_container(&self, host: u32) -> Option<u32> {
        if self.0.is_empty() {
            return Some(host);
        }
        self.0.iter().find_map(|r| {
            let off = host.checked_sub(r.host)?;
            (off < r.size).then(|| r.container.saturating_add(off))
        })
    }
}

/// What the packer leaves out and how it maps owners.
#[derive(Debug, Default)]
pub(crate) struct UpperOptions {
    /// Relative paths (`etc/hosts`) left out with all under them: mount points the engine
    /// or the runtime made, which belong to the container, not to its image.
    pub(crate) exclude: HashSet<Vec<u8>>,
    pub(crate) uids: IdMap,
    pub(crate) gids: IdMap,
}

/// The OCI whiteout entry for an overlay whiteout at `rel` (`a/b` -> `a/.wh.b`).
pub(crate) fn whiteout_path(rel: &[u8]) -> Vec<u8> {
    let cut = rel.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    [&rel[..cut], WHITEOUT_PREFIX, &rel[cut..]].concat()
}

/// The opaque marker entry of directory `rel` (empty: the layer root).
pub(crate) fn opaque_path(rel: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        OPAQUE_MARKER.to_vec()
    } else {
        [rel, b"/", OPAQUE_MARKER].concat()
    }
}

/// Writes the layer tar of the upper dir `upper` to `out` (then fsynced): (sha256 hex,
/// size).
pub(crate) fn pack_upper(upper: &Path, opts: &UpperOptions, out: File) -> Result<(String, u64)> {
    let root = crate::copy::open_dir_nofollow(upper)?;
    let writer = HashingWriter::new(BufWriter::with_capacity(1 << 16, out));
    let mut p = UpperPacker {
        tar: tar::Builder::new(writer),
        links: HashMap::new(),
        opts,
    };
    p.run(root, upper)?;
    let what = || format!("writing the layer tar of {}", upper.display());
    let writer = p.tar.into_inner().ctx(what)?;
    let (buf, hex, len) = writer.finish();
    let file = buf.into_inner().map_err(|e| e.into_error()).ctx(what)?;
    file.sync_all().ctx(what)?;
    Ok((hex, len))
}

struct Level {
    fd: OwnedFd,
    todo: std::vec::IntoIter<std::ffi::OsString>,
    rel: Vec<u8>,
}

struct UpperPacker<'a, W: Write> {
    tar: tar::Builder<W>,
    /// (dev, inode) of files with several links -> the tar path of the first one.
    links: HashMap<(u64, u64), Vec<u8>>,
    opts: &'a UpperOptions,
}

impl<W: Write> UpperPacker<'_, W> {
    fn run(&mut self, root: OwnedFd, upper: &Path) -> Result<()> {
        let shown = |rel: &[u8]| upper.join(OsStr::from_bytes(rel));
        if xattr(root.as_fd(), OVERLAY_OPAQUE_XATTR)
            .ctx(|| format!("reading {}", upper.display()))?
            .is_some_and(|v| v == b"y")
        {
            self.marker(opaque_path(b""), upper)?;
        }
        let todo = names(root.as_fd()).ctx(|| format!("reading {}", upper.display()))?;
        let mut stack = vec![Level {
            fd: root,
            todo: todo.into_iter(),
            rel: Vec::new(),
        }];
        loop {
            let depth = stack.len();
            let Some(top) = stack.last_mut() else {
                return Ok(());
            };
            let Some(name) = top.todo.next() else {
                stack.pop();
                continue;
            };
            let rel = if top.rel.is_empty() {
                name.as_bytes().to_vec()
            } else {
                [&top.rel, b"/".as_slice(), name.as_bytes()].concat()
            };
            if self.opts.exclude.contains(&rel) {
                continue;
            }
            let path = shown(&rel);
            // Gone since the listing: a running container removed it.
            let Some(node) =
                Node::at(top.fd.as_fd(), &name).ctx(|| format!("opening {}", path.display()))?
            else {
                continue;
            };
            if name.as_bytes().starts_with(WHITEOUT_PREFIX) {
                return Err(Error::invalid(
                    "container",
                    format!(
                        "{}: names starting with \".wh.\" are reserved for layer whiteouts \
                         (rename or remove it in the container before committing)",
                        path.display()
                    ),
                ));
            }
            if let Some(level) = self.entry(node, rel, &path, depth)? {
                stack.push(level);
            }
        }
    }

    /// Appends one entry; a directory is returned open, for its entries to follow.
    fn entry(
        &mut self,
        node: Node,
        rel: Vec<u8>,
        path: &Path,
        depth: usize,
    ) -> Result<Option<Level>> {
        let st = node.st;
        let e = |e| pack_io(path, e);
        match node.kind() {
            Kind::Dir => {
                if depth >= MAX_DEPTH {
                    return Err(Error::invalid(
                        "container",
                        format!(
                            "{} is more than {MAX_DEPTH} directories deep",
                            path.display()
                        ),
                    ));
                }
                let fd = node.into_dir().map_err(e)?;
                refuse_partial(fd.as_fd(), path)?;
                self.xattrs(fd.as_fd(), path)?;
                let mut h = self.header(EntryType::Directory, &st, path)?;
                let dir = [rel.as_slice(), b"/"].concat();
                self.append(&mut h, &dir, io::empty(), path)?;
                if xattr(fd.as_fd(), OVERLAY_OPAQUE_XATTR)
                    .map_err(e)?
                    .is_some_and(|v| v == b"y")
                {
                    self.marker(opaque_path(&rel), path)?;
                }
                let todo = names(fd.as_fd()).map_err(e)?;
                return Ok(Some(Level {
                    fd,
                    todo: todo.into_iter(),
                    rel,
                }));
            }
            Kind::File => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key).cloned() {
                        let mut h = self.header(EntryType::Link, &st, path)?;
                        self.tar
                            .append_link(&mut h, as_path(&rel), as_path(&first))
                            .map_err(e)?;
                        return Ok(None);
                    }
                    self.links.insert(key, rel.clone());
                }
                let file = node.open_file().map_err(e)?;
                refuse_partial(file.as_fd(), path)?;
                self.xattrs(file.as_fd(), path)?;
                let len = u64::try_from(st.st_size).unwrap_or(0);
                let mut h = self.header(EntryType::Regular, &st, path)?;
                h.set_size(len);
                let data = ExactReader {
                    inner: file.take(len),
                    remaining: len,
                };
                self.append(&mut h, &rel, data, path)?;
            }
            Kind::Symlink => {
                let target = node.read_link().map_err(e)?;
                let mut h = self.header(EntryType::Symlink, &st, path)?;
                h.set_mode(0o777);
                self.tar
                    .append_link(&mut h, as_path(&rel), Path::new(&target))
                    .map_err(e)?;
            }
            Kind::CharDevice if st.st_rdev == 0 => {
                // An overlay whiteout: the container deleted a file of its image.
                self.marker(whiteout_path(&rel), path)?;
            }
            Kind::CharDevice | Kind::BlockDevice => {
                let kind = if node.kind() == Kind::CharDevice {
                    EntryType::Char
                } else {
                    EntryType::Block
                };
                let mut h = self.header(kind, &st, path)?;
                h.set_device_major(libc::major(st.st_rdev)).map_err(e)?;
                h.set_device_minor(libc::minor(st.st_rdev)).map_err(e)?;
                self.append(&mut h, &rel, io::empty(), path)?;
            }
            Kind::Fifo => {
                let mut h = self.header(EntryType::Fifo, &st, path)?;
                self.append(&mut h, &rel, io::empty(), path)?;
            }
            // Tar has no type for sockets; like tar, they are skipped.
            Kind::Socket => {}
        }
        Ok(None)
    }

    fn header(&self, kind: EntryType, st: &libc::stat, path: &Path) -> Result<Header> {
        let unmapped = |what: &str, id: u32| {
            Error::invalid(
                "container",
                format!(
                    "{}: owner {what} {id} on the host is not mapped into the container's user namespace",
                    path.display()
                ),
            )
        };
        let uid = self
            .opts
            .uids
            .to_container(st.st_uid)
            .ok_or_else(|| unmapped("uid", st.st_uid))?;
        let gid = self
            .opts
            .gids
            .to_container(st.st_gid)
            .ok_or_else(|| unmapped("gid", st.st_gid))?;
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h.set_size(0);
        Ok(h)
    }

    fn append(&mut self, h: &mut Header, rel: &[u8], data: impl Read, path: &Path) -> Result<()> {
        self.tar
            .append_data(h, as_path(rel), data)
            .map_err(|e| pack_io(path, e))
    }

    /// An empty marker entry (`.wh.NAME`, `.wh..wh..opq`) with fixed metadata, as `pack`
    /// writes them.
    fn marker(&mut self, rel: Vec<u8>, path: &Path) -> Result<()> {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        self.append(&mut h, &rel, io::empty(), path)
    }

    /// The layer xattrs of the open entry, as a PAX header before it.
    fn xattrs(&mut self, fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
        let names = list_xattrs(fd).map_err(|e| pack_io(path, e))?;
        append_layer_xattrs(&mut self.tar, &names, |n| n.to_bytes(), |n| xattr(fd, n))
            .map_err(|e| pack_io(path, e))
    }
}

/// Refuses an entry overlayfs keeps only in part in the upper dir.
pub(super) fn refuse_partial(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    for (x, what) in [
        (
            REDIRECT_XATTR,
            "a directory renamed with overlayfs redirect_dir",
        ),
        (
            METACOPY_XATTR,
            "a metadata-only copy-up (overlayfs metacopy)",
        ),
    ] {
        if xattr(fd, x).map_err(|e| pack_io(path, e))?.is_some() {
            return Err(Error::invalid(
                "container",
                format!(
                    "{} is {what}: its content is not all in the upper dir; commit needs \
                     overlay mounts without redirect_dir and metacopy",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

fn as_path(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

fn pack_io(path: &Path, e: io::Error) -> Error {
    Error::Io {
        context: format!("packing {}", path.display()),
        cause: e,
    }
}

fn list_xattrs(fd: BorrowedFd<'_>) -> io::Result<Vec<std::ffi::CString>> {
    let names = super::sys::xattr_names(|buf| {
        // SAFETY: flistxattr writes at most buf.len() bytes into buf; fd is open.
        unsafe { libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
    })?;
    Ok(names
        .into_iter()
        .filter_map(|n| std::ffi::CString::new(n).ok())
        .collect())
}

pub(super) fn xattr(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: fgetxattr writes at most buf.len() bytes into buf.
        let r = unsafe {
            libc::fgetxattr(
                fd.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENODATA | libc::ENOTSUP) => return Ok(None),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
#[path = "upper_tests.rs"]
mod tests;
