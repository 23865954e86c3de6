//! `flock(2)` held for a scope: the lock goes with the fd when the value is dropped (or
//! the process dies, which is what makes it safe against kill -9).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An exclusive `flock` on a file, released when dropped.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Blocks until the exclusive lock on `path` is held. The lock file is created 0600
    /// if missing and never opened through a symlink.
    pub fn exclusive(path: &Path) -> io::Result<FileLock> {
        let file = open(path, true)?;
        flock(&file, libc::LOCK_EX)?;
        Ok(FileLock { file })
    }

    /// The exclusive lock if nobody holds it now; `Ok(None)` if someone does. Does not
    /// create the file: `NotFound` when it is missing.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<FileLock>> {
        let file = open(path, false)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(FileLock { file })),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The exclusive lock on a directory itself, if nobody holds it now (`Ok(None)` if
    /// someone does). A directory that is being deleted can carry its owner's lock to the
    /// very end: the directory is the last thing removed. Never through a symlink.
    pub fn try_exclusive_dir(path: &Path) -> io::Result<Option<FileLock>> {
        let file = open_dir(path)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(FileLock { file })),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The exclusive lock on a directory itself, waiting for it: no lock file to make
    /// (an inode less to create and delete). The lock follows the directory through a
    /// rename. Never through a symlink.
    pub fn exclusive_dir(path: &Path) -> io::Result<FileLock> {
        let file = open_dir(path)?;
        flock(&file, libc::LOCK_EX)?;
        Ok(FileLock { file })
    }

    /// The locked file (to read or write a lock file that also carries data).
    pub fn file(&self) -> &File {
        &self.file
    }
}

fn open_dir(path: &Path) -> io::Result<File> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated path and plain flags; the kernel returns a new fd.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd was just returned by open and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn open(path: &Path, create: bool) -> io::Result<File> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut flags = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    if create {
        flags |= libc::O_CREAT;
    }
    // SAFETY: a NUL-terminated path and plain flags; the kernel returns a new fd.
    let fd = unsafe { libc::open(c.as_ptr(), flags, 0o600 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd was just returned by open and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_lock_is_not_taken_twice_and_is_released_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let held = FileLock::try_exclusive_dir(d.path()).unwrap().unwrap();
        assert!(FileLock::try_exclusive_dir(d.path()).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_exclusive_dir(d.path()).unwrap().is_some());
    }

    #[test]
    fn a_held_lock_is_not_taken_twice_and_is_released_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let held = FileLock::exclusive(&p).unwrap();
        assert!(FileLock::try_exclusive(&p).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_exclusive(&p).unwrap().is_some());
    }

    #[test]
    fn a_symlinked_lock_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("elsewhere");
        std::fs::write(&target, b"").unwrap();
        let p = d.path().join("lock");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert!(FileLock::exclusive(&p).is_err());
    }

    #[test]
    fn try_on_a_missing_file_says_not_found() {
        let d = tempfile::tempdir().unwrap();
        let e = FileLock::try_exclusive(&d.path().join("none")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
