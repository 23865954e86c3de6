//! Thin syscall wrappers (relative to directory fds, never following symlinks).

use std::ffi::{CStr, OsStr};
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::unpack::Meta;
use crate::image::fsutil::path_cstring;

/// The names of extended attributes, as `list` (an `flistxattr` or `llistxattr` call into
/// the buffer it is given, returning the kernel's count) reports them: the buffer grows
/// until they fit; a filesystem without xattrs has none.
pub(super) fn xattr_names(mut list: impl FnMut(&mut [u8]) -> isize) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 1024];
    loop {
        let n = list(&mut buf);
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
        .map(<[u8]>::to_vec)
        .collect())
}

pub(super) fn cvt(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(super) fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
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

pub(super) fn openat_dir(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
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

pub(super) fn create_file(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<File> {
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

pub(super) fn lstatat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<libc::stat>> {
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
pub(super) fn clear_slot(dir: BorrowedFd<'_>, name: &CStr, keep_dir: bool) -> io::Result<bool> {
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

pub(super) fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: mkdirat with a valid dir fd and C string.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })
}

pub(super) fn mknodat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    fmt: libc::mode_t,
    dev: libc::dev_t,
) -> io::Result<()> {
    // SAFETY: mknodat with a valid dir fd and C string.
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), fmt, dev) })
}

pub(super) fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: symlinkat with valid C strings and dir fd.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
}

pub(super) fn linkat(
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

pub(super) fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: fchown on a valid fd.
    cvt(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })
}

pub(super) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: fchmod on a valid fd.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })
}

pub(super) fn fsetxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
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

pub(super) fn times(mtime: i64) -> [libc::timespec; 2] {
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    [t, t]
}

pub(super) fn set_times_fd(fd: BorrowedFd<'_>, mtime: i64) -> io::Result<()> {
    let ts = times(mtime);
    // SAFETY: futimens with a valid fd and two timespecs.
    cvt(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) })
}

/// Owner, then mode (chown clears set-id bits), then xattrs, on an open file or directory.
pub(super) fn apply_fd(fd: BorrowedFd<'_>, meta: &Meta) -> io::Result<()> {
    fchown(fd, meta.uid, meta.gid)?;
    fchmod(fd, meta.mode)?;
    for (name, value) in &meta.xattrs {
        fsetxattr(fd, name, value)?;
    }
    Ok(())
}

/// Owner, mode (not for symlinks) and mtime of a symlink, device or fifo, by name.
pub(super) fn apply_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    meta: &Meta,
    symlink: bool,
) -> io::Result<()> {
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
