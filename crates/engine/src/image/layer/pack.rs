//! Packing a directory tree into the canonical layer tar.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::{append_layer_xattrs, OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};
use crate::error::{Context, Error, Result};
use crate::image::fsutil::{cstring, path_cstring, HashingWriter};

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
        let names = list_xattrs(abs).map_err(|e| pack_io(abs, e))?;
        append_layer_xattrs(
            &mut self.builder,
            &names,
            |n| n.as_bytes(),
            |n| get_xattr(abs, n),
        )
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
    let names = super::sys::xattr_names(|buf| {
        // SAFETY: llistxattr writes at most buf.len() bytes into buf; p is a C string.
        unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
    })?;
    Ok(names
        .into_iter()
        .map(|n| OsStr::from_bytes(&n).to_os_string())
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
