//! Unpacking a layer tar into a directory, entry by entry, relative to directory fds.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use tar::EntryType;

use super::sys::{
    apply_at, apply_fd, clear_slot, create_file, fchmod, fchown, fsetxattr, linkat, lstatat,
    mkdirat, mknodat, open_dir_path, openat_dir, set_times_fd, symlinkat,
};
use super::{layer_xattr, OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};
use crate::error::{Context, Error, Result};
use crate::image::fsutil::cstring;

/// Unpacks the tar stream `reader` into `dest`, an existing empty directory. `source` names
/// the archive in errors. Returns the number of entries applied.
pub(crate) fn unpack<R: Read>(reader: R, dest: &Path, source: &Path) -> Result<u64> {
    unpack_limited(reader, dest, source, u64::MAX)
}

/// [`unpack`], refusing an archive whose files hold more than `max_bytes` in all (a
/// sparse entry counts at its full size: it is written out in full).
pub(crate) fn unpack_limited<R: Read>(
    reader: R,
    dest: &Path,
    source: &Path,
    max_bytes: u64,
) -> Result<u64> {
    let root = open_dir_path(dest).ctx(|| format!("opening {}", dest.display()))?;
    fchown(root.as_fd(), 0, 0)
        .and_then(|_| fchmod(root.as_fd(), 0o755))
        .ctx(|| format!("preparing {}", dest.display()))?;
    let mut u = Unpacker {
        root,
        source,
        dest,
        dirs: HashMap::new(),
        budget: max_bytes,
        max_bytes,
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
    /// Bytes of file content still allowed, of `max_bytes`.
    budget: u64,
    max_bytes: u64,
}

/// The metadata of one entry that the layer keeps.
pub(super) struct Meta {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: i64,
    pub(super) xattrs: Vec<(CString, Vec<u8>)>,
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
                let mut bounded = (&mut *entry).take(self.budget.saturating_add(1));
                let got =
                    io::copy(&mut bounded, &mut file).map_err(|e| self.io(&path, "writing", e))?;
                if got > self.budget {
                    return Err(self.invalid(
                        &path,
                        format!(
                            "the archive unpacks to more than {} bytes (the size limit)",
                            self.max_bytes
                        ),
                    ));
                }
                self.budget -= got;
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
}
