//! Layer tarballs, both ways.
//!
//! [`unpack`] walks the tar entries itself (never `tar::Entry::unpack_in`): every path is
//! split into components, absolute paths and `..` are refused, and every entry is created
//! relative to a file descriptor of its parent directory, reached from the layer root one
//! component at a time with `O_NOFOLLOW | O_DIRECTORY` — so a symlink in the layer (or
//! anything but a real directory) can never be walked through, and nothing is written
//! outside the layer. OCI whiteouts become overlayfs whiteouts: `.wh.NAME` a 0:0 character
//! device `NAME`, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.
//!
//! [`pack`] writes the *canonical* tar of a directory tree: entries in sorted depth-first
//! order, GNU headers with numeric ids only (no user or group names), second-resolution
//! mtimes, hard links by (dev, inode), overlay whiteouts turned back into `.wh.` entries,
//! and only the xattrs a layer carries (`user.*`, `security.capability`). The same tree
//! always gives the same bytes, so a directory and any tar (plain, gzip, zstd) of it give
//! the same digest; and `unpack` applies exactly what `pack` records, so packing an
//! unpacked layer reproduces it.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::{self, File, Metadata};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::fsutil::{cstring, path_cstring, HashingWriter};
use crate::error::{Context, Error, Result};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

/// The xattrs a layer carries; everything else (security.selinux, ACLs, trusted.*) is
/// host-specific and dropped.
fn layer_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.") || name == b"security.capability"
}

// ---------------------------------------------------------------------------------------
// Opening a source archive
// ---------------------------------------------------------------------------------------

/// The compression of a tar file, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Opens a tar, tar.gz or tar.zst file (detected by magic bytes, not by name) as a stream
/// of uncompressed tar.
pub(crate) fn open_archive(path: &Path) -> Result<(Box<dyn Read>, Compression)> {
    let mut file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
        }
    }
    file.seek(SeekFrom::Start(0))
        .ctx(|| format!("reading {}", path.display()))?;
    decoder(file, &head[..n], path)
}

/// Wraps `input` (positioned at its start; `head` is a copy of its first up to 512 bytes)
/// in the decompressor its magic bytes name. `source` names the archive in errors.
pub(crate) fn decoder<R: Read + 'static>(
    input: R,
    head: &[u8],
    source: &Path,
) -> Result<(Box<dyn Read>, Compression)> {
    let bad = |why: &str| Error::invalid("source", format!("{}: {why}", source.display()));
    let kind = if head.is_empty() {
        return Err(bad("is an empty file, not a tar archive"));
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(bad(
            "is xz-compressed; only plain, gzip and zstd tar archives are supported",
        ));
    } else if head.starts_with(b"BZh") {
        return Err(bad(
            "is bzip2-compressed; only plain, gzip and zstd tar archives are supported",
        ));
    } else if looks_like_tar(head) {
        Compression::None
    } else {
        return Err(bad("is not a tar archive (plain, gzip or zstd)"));
    };
    let reader: Box<dyn Read> = match kind {
        Compression::None => Box::new(BufReader::with_capacity(1 << 16, input)),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(input))),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(input)
                .ctx(|| format!("starting zstd decoder for {}", source.display()))?,
        ),
    };
    Ok((reader, kind))
}

fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    if &head[257..262] == b"ustar" || head.iter().all(|&b| b == 0) {
        return true;
    }
    // A v7 header has no magic: trust a valid checksum.
    let stored = head[148..156]
        .iter()
        .skip_while(|&&b| b == b' ' || b == 0)
        .take_while(|&&b| (b'0'..=b'7').contains(&b))
        .fold(0u32, |a, &b| a * 8 + u32::from(b - b'0'));
    let sum: u32 = head
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(b)
            }
        })
        .sum();
    stored == sum
}

// ---------------------------------------------------------------------------------------
// Unpacking
// ---------------------------------------------------------------------------------------

/// Unpacks the tar stream `reader` into `dest`, an existing empty directory. `source` names
/// the archive in errors. Returns the number of entries applied.
pub(crate) fn unpack<R: Read>(reader: R, dest: &Path, source: &Path) -> Result<u64> {
    let root = open_dir_path(dest).ctx(|| format!("opening {}", dest.display()))?;
    fchown(root.as_fd(), 0, 0)
        .and_then(|_| fchmod(root.as_fd(), 0o755))
        .ctx(|| format!("preparing {}", dest.display()))?;
    let mut u = Unpacker {
        root,
        source,
        dest,
        dirs: HashMap::new(),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| u.tar_error(e))?;
    let mut count = 0;
    for entry in entries {
        let mut entry = entry.map_err(|e| u.tar_error(e))?;
        u.apply(&mut entry)?;
        count += 1;
    }
    u.finish_dirs();
    // SAFETY: syncfs on a directory fd we own.
    if unsafe { libc::syncfs(u.root.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error()).ctx(|| format!("syncing {}", dest.display()));
    }
    Ok(count)
}

struct Unpacker<'a> {
    root: OwnedFd,
    source: &'a Path,
    /// Where the entries go, named in I/O errors: "writing" alone does not say which
    /// disk was full.
    dest: &'a Path,
    /// Directories whose mtime is set once every entry is in (creating children changes
    /// it): relative path -> mtime. Implicit parents get the epoch.
    dirs: HashMap<Vec<u8>, i64>,
}

/// The metadata of one entry that the layer keeps.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Unpacker<'_> {
    fn tar_error(&self, e: io::Error) -> Error {
        Error::Io {
            context: format!("reading tar archive {}", self.source.display()),
            cause: e,
        }
    }

    fn invalid(&self, entry: &[u8], why: impl std::fmt::Display) -> Error {
        Error::invalid(
            "source",
            format!(
                "{}: tar entry {:?}: {why}",
                self.source.display(),
                String::from_utf8_lossy(entry)
            ),
        )
    }

    fn io(&self, entry: &[u8], what: &str, e: io::Error) -> Error {
        let entry = String::from_utf8_lossy(entry);
        Error::Io {
            context: format!(
                "{}: tar entry {entry:?}: {what} {}/{}",
                self.source.display(),
                self.dest.display(),
                entry.trim_start_matches("./").trim_start_matches('/')
            ),
            cause: e,
        }
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let path = entry.path_bytes().into_owned();
        let mut kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        // Old (v7) archives mark directories with a trailing slash on a regular entry.
        if kind == EntryType::Regular && path.ends_with(b"/") {
            kind = EntryType::Directory;
        }
        let comps = split_path(&path).map_err(|why| self.invalid(&path, why))?;
        let meta = self.meta(entry, &path)?;
        let Some((name, parent_comps)) = comps.split_last() else {
            // The root itself: its attributes are the layer's, not the archive's.
            return if kind == EntryType::Directory {
                Ok(())
            } else {
                Err(self.invalid(&path, "the layer root must be a directory"))
            };
        };
        if name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(&path, parent_comps, name);
        }
        let parent = self.walk(&path, parent_comps, true)?;
        let cname = cstring(name).map_err(|_| self.invalid(&path, "NUL byte in name"))?;
        let p = parent.as_fd();
        match kind {
            EntryType::Directory => {
                let kept =
                    clear_slot(p, &cname, true).map_err(|e| self.io(&path, "replacing", e))?;
                if !kept {
                    mkdirat(p, &cname, 0o700).map_err(|e| self.io(&path, "mkdir", e))?;
                }
                let fd = openat_dir(p, &cname).map_err(|e| self.io(&path, "opening", e))?;
                apply_fd(fd.as_fd(), &meta).map_err(|e| self.io(&path, "setting metadata", e))?;
                self.dirs.insert(comps.join(&b'/'), meta.mtime);
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                clear_slot(p, &cname, false).map_err(|e| self.io(&path, "replacing", e))?;
                let mut file = create_file(p, &cname).map_err(|e| self.io(&path, "create", e))?;
                let want = entry.size();
                let got = io::copy(entry, &mut file).map_err(|e| self.io(&path, "writing", e))?;
                if got != want {
                    return Err(self.invalid(
                        &path,
                        format!("archive is truncated ({got} of {want} bytes)"),
                    ));
                }
                let fd = OwnedFd::from(file);
                apply_fd(fd.as_fd(), &meta)
                    .and_then(|_| set_times_fd(fd.as_fd(), meta.mtime))
                    .map_err(|e| self.io(&path, "setting metadata", e))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| self.invalid(&path, "symlink without a target"))?;
                let target = cstring(&target).map_err(|_| self.invalid(&path, "NUL in target"))?;
                clear_slot(p, &cname, false).map_err(|e| self.io(&path, "replacing", e))?;
                symlinkat(&target, p, &cname).map_err(|e| self.io(&path, "symlink", e))?;
                apply_at(p, &cname, &meta, true).map_err(|e| self.io(&path, "metadata", e))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.invalid(&path, "hard link without a target"))?
                    .into_owned();
                self.hardlink(&path, &comps, p, &cname, &target)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let fmt = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                if fmt == libc::S_IFCHR && major == 0 && minor == 0 {
                    return Err(self.invalid(
                        &path,
                        "a 0:0 character device is an overlay whiteout; layers spell it .wh.NAME",
                    ));
                }
                clear_slot(p, &cname, false).map_err(|e| self.io(&path, "replacing", e))?;
                mknodat(p, &cname, fmt, libc::makedev(major, minor))
                    .map_err(|e| self.io(&path, "mknod", e))?;
                apply_at(p, &cname, &meta, false).map_err(|e| self.io(&path, "metadata", e))?;
            }
            other => {
                return Err(self.invalid(&path, format!("unsupported entry type {other:?}")));
            }
        }
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, path: &[u8]) -> Result<Meta> {
        let h = entry.header();
        let bad = |what: &str, e: io::Error| self.invalid(path, format!("bad {what} field: {e}"));
        let mode = h.mode().map_err(|e| bad("mode", e))? & 0o7777;
        let id = |v: u64, what: &str| {
            u32::try_from(v)
                .ok()
                .filter(|&v| v != u32::MAX)
                .ok_or_else(|| self.invalid(path, format!("{what} {v} is out of range")))
        };
        let uid = id(h.uid().map_err(|e| bad("uid", e))?, "uid")?;
        let gid = id(h.gid().map_err(|e| bad("gid", e))?, "gid")?;
        let mut mtime = i64::try_from(h.mtime().map_err(|e| bad("mtime", e))?).unwrap_or(0);
        let mut xattrs = Vec::new();
        if let Some(pax) = entry
            .pax_extensions()
            .map_err(|e| self.io(path, "reading pax", e))?
        {
            for ext in pax {
                let ext = ext.map_err(|e| self.io(path, "reading pax", e))?;
                let key = ext.key_bytes();
                if key == b"mtime" {
                    // "SECONDS[.FRACTION]": the layer keeps whole seconds.
                    let v = String::from_utf8_lossy(ext.value_bytes());
                    let secs = v.split('.').next().unwrap_or("");
                    mtime = secs
                        .parse()
                        .map_err(|_| self.invalid(path, "bad pax mtime"))?;
                } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if layer_xattr(name) {
                        let name =
                            cstring(name).map_err(|_| self.invalid(path, "NUL in xattr name"))?;
                        xattrs.push((name, ext.value_bytes().to_vec()));
                    }
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    /// Opens the directory `comps` (relative to the layer root) without following any
    /// symlink; with `create`, missing directories are made (0755, root, epoch mtime).
    fn walk(&mut self, entry: &[u8], comps: &[&[u8]], create: bool) -> Result<OwnedFd> {
        let mut cur = openat_dir(self.root.as_fd(), c".")
            .map_err(|e| self.io(entry, "opening layer root", e))?;
        for (i, comp) in comps.iter().enumerate() {
            let name = cstring(comp).map_err(|_| self.invalid(entry, "NUL byte in name"))?;
            let here = || String::from_utf8_lossy(&comps[..=i].join(&b'/')).into_owned();
            let next = match openat_dir(cur.as_fd(), &name) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    mkdirat(cur.as_fd(), &name, 0o755)
                        .map_err(|e| self.io(entry, "creating parent directory", e))?;
                    let fd = openat_dir(cur.as_fd(), &name)
                        .map_err(|e| self.io(entry, "opening parent directory", e))?;
                    fchmod(fd.as_fd(), 0o755)
                        .map_err(|e| self.io(entry, "creating parent directory", e))?;
                    self.dirs.entry(comps[..=i].join(&b'/')).or_insert(0);
                    fd
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    return Err(self.invalid(entry, format!("{:?} does not exist", here())));
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                    let is_link = lstatat(cur.as_fd(), &name)
                        .ok()
                        .flatten()
                        .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
                    return Err(self.invalid(
                        entry,
                        if is_link {
                            format!(
                                "{:?} is a symlink; refusing to follow it (it could lead out of \
                                 the layer)",
                                here()
                            )
                        } else {
                            format!("{:?} is not a directory", here())
                        },
                    ));
                }
                Err(e) => return Err(self.io(entry, "opening parent directory", e)),
            };
            cur = next;
        }
        Ok(cur)
    }

    fn whiteout(&mut self, path: &[u8], parent_comps: &[&[u8]], name: &[u8]) -> Result<()> {
        let parent = self.walk(path, parent_comps, true)?;
        let p = parent.as_fd();
        if name == OPAQUE_MARKER {
            return fsetxattr(p, OVERLAY_OPAQUE_XATTR, b"y")
                .map_err(|e| self.io(path, "setting trusted.overlay.opaque (needs root)", e));
        }
        if name.starts_with(b".wh..wh.") {
            // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless here.
            return Ok(());
        }
        let target = &name[WHITEOUT_PREFIX.len()..];
        if target.is_empty() || target == b"." || target == b".." {
            return Err(self.invalid(path, "whiteout without a valid name"));
        }
        let cname = cstring(target).map_err(|_| self.invalid(path, "NUL byte in name"))?;
        clear_slot(p, &cname, false).map_err(|e| self.io(path, "replacing", e))?;
        mknodat(p, &cname, libc::S_IFCHR, libc::makedev(0, 0))
            .map_err(|e| self.io(path, "creating whiteout device (needs root)", e))?;
        let meta = Meta {
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
        };
        apply_at(p, &cname, &meta, false).map_err(|e| self.io(path, "whiteout metadata", e))
    }

    fn hardlink(
        &mut self,
        path: &[u8],
        comps: &[&[u8]],
        parent: BorrowedFd<'_>,
        name: &CStr,
        target: &[u8],
    ) -> Result<()> {
        let shown = String::from_utf8_lossy(target).into_owned();
        let tcomps = split_path(target)
            .map_err(|why| self.invalid(path, format!("hard link target {shown:?}: {why}")))?;
        if tcomps == comps {
            return Ok(());
        }
        let Some((tname, tparent)) = tcomps.split_last() else {
            return Err(self.invalid(path, "hard link to the layer root"));
        };
        let tdir = self.walk(path, tparent, false)?;
        let tcname = cstring(tname).map_err(|_| self.invalid(path, "NUL byte in name"))?;
        match lstatat(tdir.as_fd(), &tcname).map_err(|e| self.io(path, "link target", e))? {
            None => {
                return Err(self.invalid(
                    path,
                    format!("hard link target {shown:?} is not in this layer (yet)"),
                ))
            }
            Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                return Err(self.invalid(path, format!("hard link target {shown:?} is a dir")));
            }
            Some(_) => {}
        }
        clear_slot(parent, name, false).map_err(|e| self.io(path, "replacing", e))?;
        linkat(tdir.as_fd(), &tcname, parent, name).map_err(|e| self.io(path, "link", e))
    }

    /// Sets the recorded directory mtimes, now that nothing more is created in them.
    fn finish_dirs(&mut self) {
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, mtime) in dirs {
            let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
            // A directory that a later entry replaced is skipped.
            if let Ok(fd) = self.walk(&rel, &comps, false) {
                let _ = set_times_fd(fd.as_fd(), mtime);
            }
        }
    }
}

/// Splits an entry path into its components: `.` and empty components are dropped; an
/// absolute path or a `..` component is refused.
fn split_path(path: &[u8]) -> std::result::Result<Vec<&[u8]>, &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.starts_with(b"/") {
        return Err("absolute path; refusing to write outside the layer");
    }
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err("path has a \"..\" component; refusing to write outside the layer")
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Thin syscall wrappers (relative to directory fds, never following symlinks)
// ---------------------------------------------------------------------------------------

fn cvt(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    let p = path_cstring(path)?;
    // SAFETY: plain open(2) with a valid C string; the fd is owned below.
    let fd = unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn openat_dir(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: openat(2) with a valid dir fd and C string; the fd is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn create_file(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<File> {
    // SAFETY: openat(2) with a valid dir fd and C string; the fd is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn lstatat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<libc::stat>> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstatat writes a full stat into `st` on success.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOENT) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // SAFETY: fstatat succeeded, so `st` is initialised.
    Ok(Some(unsafe { st.assume_init() }))
}

/// Makes room for a new entry `name`: removes what is there, except a directory when
/// `keep_dir` (tar semantics: a later directory entry only updates the metadata).
/// Returns whether a directory was kept.
fn clear_slot(dir: BorrowedFd<'_>, name: &CStr, keep_dir: bool) -> io::Result<bool> {
    let Some(st) = lstatat(dir, name)? else {
        return Ok(false);
    };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        if keep_dir {
            return Ok(true);
        }
        // remove_dir_all never follows symlinks; /proc/self/fd/N pins the verified parent.
        let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
            .join(OsStr::from_bytes(name.to_bytes()));
        fs::remove_dir_all(path)?;
        return Ok(false);
    }
    // SAFETY: unlinkat with a valid dir fd and C string.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })?;
    Ok(false)
}

fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: mkdirat with a valid dir fd and C string.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })
}

fn mknodat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    fmt: libc::mode_t,
    dev: libc::dev_t,
) -> io::Result<()> {
    // SAFETY: mknodat with a valid dir fd and C string.
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), fmt, dev) })
}

fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: symlinkat with valid C strings and dir fd.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
}

fn linkat(
    odir: BorrowedFd<'_>,
    oname: &CStr,
    ndir: BorrowedFd<'_>,
    nname: &CStr,
) -> io::Result<()> {
    // SAFETY: linkat without AT_SYMLINK_FOLLOW: links the entry itself, never a target.
    cvt(unsafe {
        libc::linkat(
            odir.as_raw_fd(),
            oname.as_ptr(),
            ndir.as_raw_fd(),
            nname.as_ptr(),
            0,
        )
    })
}

fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: fchown on a valid fd.
    cvt(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })
}

fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: fchmod on a valid fd.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })
}

fn fsetxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: fsetxattr with a valid fd, C string and buffer.
    cvt(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

fn times(mtime: i64) -> [libc::timespec; 2] {
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    [t, t]
}

fn set_times_fd(fd: BorrowedFd<'_>, mtime: i64) -> io::Result<()> {
    let ts = times(mtime);
    // SAFETY: futimens with a valid fd and two timespecs.
    cvt(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) })
}

/// Owner, then mode (chown clears set-id bits), then xattrs, on an open file or directory.
fn apply_fd(fd: BorrowedFd<'_>, meta: &Meta) -> io::Result<()> {
    fchown(fd, meta.uid, meta.gid)?;
    fchmod(fd, meta.mode)?;
    for (name, value) in &meta.xattrs {
        fsetxattr(fd, name, value)?;
    }
    Ok(())
}

/// Owner, mode (not for symlinks) and mtime of a symlink, device or fifo, by name.
fn apply_at(dir: BorrowedFd<'_>, name: &CStr, meta: &Meta, symlink: bool) -> io::Result<()> {
    let d = dir.as_raw_fd();
    // SAFETY: *at calls with a valid dir fd and C string; AT_SYMLINK_NOFOLLOW acts on the
    // entry itself.
    unsafe {
        cvt(libc::fchownat(
            d,
            name.as_ptr(),
            meta.uid,
            meta.gid,
            libc::AT_SYMLINK_NOFOLLOW,
        ))?;
        if !symlink {
            // The entry was just created by mknod in a verified parent: not a symlink.
            cvt(libc::fchmodat(d, name.as_ptr(), meta.mode, 0))?;
        }
        let ts = times(meta.mtime);
        cvt(libc::utimensat(
            d,
            name.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Packing (the canonical tar)
// ---------------------------------------------------------------------------------------

/// Writes the canonical tar of the tree under `root` to `out` (which is then fsynced).
/// Returns the sha256 hex of the tar and its size.
pub(crate) fn pack(root: &Path, out: File) -> Result<(String, u64)> {
    let writer = HashingWriter::new(BufWriter::with_capacity(1 << 16, out));
    let mut p = Packer {
        builder: tar::Builder::new(writer),
        links: HashMap::new(),
        root,
    };
    p.run()?;
    let what = || format!("writing the layer tar of {}", root.display());
    let writer = p.builder.into_inner().ctx(what)?;
    let (buf, hex, len) = writer.finish();
    let file = buf.into_inner().map_err(|e| e.into_error()).ctx(what)?;
    file.sync_all().ctx(what)?;
    Ok((hex, len))
}

struct Packer<'a, W: Write> {
    builder: tar::Builder<W>,
    /// (dev, inode) of files with several links -> the path of the first one.
    links: HashMap<(u64, u64), Vec<u8>>,
    root: &'a Path,
}

impl<W: Write> Packer<'_, W> {
    fn run(&mut self) -> Result<()> {
        let root = self.root.to_path_buf();
        if is_opaque(&root) {
            self.marker(OPAQUE_MARKER.to_vec(), &root)?;
        }
        // Depth-first, children in byte order; the root itself is not an entry.
        let mut stack: Vec<(Vec<u8>, PathBuf)> = Vec::new();
        self.push_children(&mut stack, &[], &root)?;
        while let Some((rel, abs)) = stack.pop() {
            let md = fs::symlink_metadata(&abs).map_err(|e| pack_io(&abs, e))?;
            if self.entry(&rel, &abs, &md)? {
                self.push_children(&mut stack, &rel, &abs)?;
            }
        }
        Ok(())
    }

    fn push_children(
        &self,
        stack: &mut Vec<(Vec<u8>, PathBuf)>,
        rel: &[u8],
        abs: &Path,
    ) -> Result<()> {
        let mut names = Vec::new();
        for e in fs::read_dir(abs).map_err(|e| pack_io(abs, e))? {
            names.push(e.map_err(|e| pack_io(abs, e))?.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names.into_iter().rev() {
            let mut r = rel.to_vec();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(name.as_bytes());
            stack.push((r, abs.join(&name)));
        }
        Ok(())
    }

    /// Appends one entry; true when it is a directory whose children follow.
    fn entry(&mut self, rel: &[u8], abs: &Path, md: &Metadata) -> Result<bool> {
        let name = rel.rsplit(|&b| b == b'/').next().unwrap_or(rel);
        if name.starts_with(WHITEOUT_PREFIX) {
            return Err(Error::invalid(
                "source",
                format!(
                    "{}: names starting with \".wh.\" are reserved for layer whiteouts",
                    abs.display()
                ),
            ));
        }
        let ft = md.file_type();
        let relp = Path::new(OsStr::from_bytes(rel));
        let e = |e| pack_io(abs, e);
        if ft.is_dir() {
            self.xattrs(abs)?;
            let mut h = header(EntryType::Directory, md);
            let mut dir = rel.to_vec();
            dir.push(b'/');
            self.builder
                .append_data(&mut h, Path::new(OsStr::from_bytes(&dir)), io::empty())
                .map_err(e)?;
            if is_opaque(abs) {
                let mut m = dir;
                m.extend_from_slice(OPAQUE_MARKER);
                self.marker(m, abs)?;
            }
            return Ok(true);
        }
        if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                    let first = first.clone();
                    let mut h = header(EntryType::Link, md);
                    self.builder
                        .append_link(&mut h, relp, Path::new(OsStr::from_bytes(&first)))
                        .map_err(e)?;
                    return Ok(false);
                }
                self.links.insert((md.dev(), md.ino()), rel.to_vec());
            }
            self.xattrs(abs)?;
            let file = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(abs)
                .map_err(e)?;
            let mut h = header(EntryType::Regular, md);
            h.set_size(md.len());
            let data = ExactReader {
                inner: file.take(md.len()),
                remaining: md.len(),
            };
            self.builder.append_data(&mut h, relp, data).map_err(e)?;
            return Ok(false);
        }
        if ft.is_symlink() {
            let target = fs::read_link(abs).map_err(e)?;
            let mut h = header(EntryType::Symlink, md);
            h.set_mode(0o777);
            self.builder.append_link(&mut h, relp, &target).map_err(e)?;
            return Ok(false);
        }
        if ft.is_char_device() || ft.is_block_device() {
            let rdev = md.rdev();
            let (major, minor) = (libc::major(rdev), libc::minor(rdev));
            if ft.is_char_device() && major == 0 && minor == 0 {
                // An overlay whiteout: back to its OCI spelling.
                let mut m = rel[..rel.len() - name.len()].to_vec();
                m.extend_from_slice(WHITEOUT_PREFIX);
                m.extend_from_slice(name);
                return self.marker(m, abs).map(|_| false);
            }
            let kind = if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            };
            let mut h = header(kind, md);
            h.set_device_major(major).map_err(e)?;
            h.set_device_minor(minor).map_err(e)?;
            self.builder
                .append_data(&mut h, relp, io::empty())
                .map_err(e)?;
            return Ok(false);
        }
        if ft.is_fifo() {
            let mut h = header(EntryType::Fifo, md);
            self.builder
                .append_data(&mut h, relp, io::empty())
                .map_err(e)?;
            return Ok(false);
        }
        // Sockets cannot be archived (tar has no type for them); like tar, skip them.
        Ok(false)
    }

    /// An empty marker entry (`.wh.NAME`, `.wh..wh..opq`) with fixed metadata.
    fn marker(&mut self, rel: Vec<u8>, abs: &Path) -> Result<()> {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        self.builder
            .append_data(&mut h, Path::new(OsStr::from_bytes(&rel)), io::empty())
            .map_err(|e| pack_io(abs, e))
    }

    /// The layer xattrs of `abs`, as a PAX header before its entry.
    fn xattrs(&mut self, abs: &Path) -> Result<()> {
        let list = list_xattrs(abs).map_err(|e| pack_io(abs, e))?;
        let mut records: Vec<(String, Vec<u8>)> = Vec::new();
        for name in list {
            if !layer_xattr(name.as_bytes()) {
                continue;
            }
            let Some(value) = get_xattr(abs, &name).map_err(|e| pack_io(abs, e))? else {
                continue;
            };
            let Some(key) = name.to_str() else { continue };
            records.push((format!("SCHILY.xattr.{key}"), value));
        }
        if records.is_empty() {
            return Ok(());
        }
        records.sort();
        self.builder
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(|e| pack_io(abs, e))
    }
}

fn pack_io(path: &Path, e: io::Error) -> Error {
    Error::Io {
        context: format!("packing {}", path.display()),
        cause: e,
    }
}

fn header(kind: EntryType, md: &Metadata) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(u64::from(md.uid()));
    h.set_gid(u64::from(md.gid()));
    h.set_mtime(u64::try_from(md.mtime()).unwrap_or(0));
    h.set_size(0);
    h
}

/// Reads exactly `remaining` bytes or fails: a file that shrinks while it is archived
/// must not produce a corrupt tar (the header already promised its size). Shared with
/// `export` (copy/export.rs).
pub(crate) struct ExactReader<R> {
    pub(crate) inner: R,
    pub(crate) remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being archived",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn is_opaque(path: &Path) -> bool {
    get_xattr(path, OsStr::from_bytes(OVERLAY_OPAQUE_XATTR.to_bytes()))
        .ok()
        .flatten()
        .is_some_and(|v| v == b"y")
}

fn list_xattrs(path: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    let p = path_cstring(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: llistxattr writes at most buf.len() bytes into buf.
        let n = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    }
    Ok(buf
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| OsStr::from_bytes(n).to_os_string())
        .collect())
}

fn get_xattr(path: &Path, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let p = path_cstring(path)?;
    let n = cstring(name.as_bytes())?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: lgetxattr writes at most buf.len() bytes into buf.
        let r =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
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
mod tests {
    use super::*;

    #[test]
    fn split_path_refuses_escapes() {
        assert_eq!(
            split_path(b"./a//b/./c/").unwrap(),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert_eq!(split_path(b"./").unwrap(), Vec::<&[u8]>::new());
        assert!(split_path(b"/abs").is_err());
        assert!(split_path(b"../x").is_err());
        assert!(split_path(b"a/../../x").is_err());
        assert!(split_path(b"a/..").is_err());
        assert!(split_path(b"").is_err());
    }

    #[test]
    fn tar_detection() {
        let mut h = Header::new_gnu();
        h.set_path("a").unwrap();
        h.set_size(0);
        h.set_cksum();
        assert!(looks_like_tar(h.as_bytes()));
        let mut v7 = Header::new_old();
        v7.set_path("a").unwrap();
        v7.set_size(0);
        v7.set_cksum();
        assert!(looks_like_tar(v7.as_bytes()));
        assert!(!looks_like_tar(&[b'x'; 512]));
        assert!(!looks_like_tar(b"short"));
    }
}
