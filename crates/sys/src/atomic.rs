//! Atomic replacement of a file: temp file in the target's directory, fsync, rename,
//! fsync the directory.
//!
//! The temp file is created `O_CREAT|O_EXCL|O_NOFOLLOW` under a random name, so a
//! symlink or file someone placed in the directory (a container's, or another host user's
//! where the directory is shared) is never written through; its mode is set with
//! `fchmod` on the open fd, so the umask neither widens nor narrows it and the content is
//! never readable by more than the final mode allows, not even for an instant.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Marks temp files: `.<file>.tmp-<random>`. A reader that finds one under the writers'
/// lock knows it is a dead writer's.
pub const TMP_MARK: &str = ".tmp-";

/// Replaces `path` with `data`, mode 0600, durably.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    AtomicFile::new(path).write(data)
}

/// A configurable atomic write: [`AtomicFile::new`]`(path).mode(0o644).write(data)`.
#[derive(Debug, Clone)]
pub struct AtomicFile {
    path: PathBuf,
    mode: u32,
    durable: bool,
    sync_dir: bool,
    fresh: bool,
}

impl AtomicFile {
    /// Mode 0600 and durable (fsync file and directory) unless told otherwise.
    pub fn new(path: &Path) -> AtomicFile {
        AtomicFile {
            path: path.to_path_buf(),
            mode: 0o600,
            durable: true,
            sync_dir: true,
            fresh: false,
        }
    }

    /// The file's mode (permission bits only; set-id bits are refused by masking).
    pub fn mode(mut self, mode: u32) -> AtomicFile {
        self.mode = mode & 0o777;
        self
    }

    /// Skips both fsyncs: for a file whose loss in a host crash loses nothing (a record
    /// of a create in progress). Readers still never see a partial file.
    pub fn not_durable(mut self) -> AtomicFile {
        self.durable = false;
        self
    }

    /// Syncs the file's data but not its directory: for replacing a file that already
    /// exists, where a host crash before the rename reached the disk leaves the old,
    /// complete file (never a torn one), which the caller can live with. Saves the
    /// directory's fsync, a journal commit of its own on ext4.
    pub fn without_dir_sync(mut self) -> AtomicFile {
        self.sync_dir = false;
        self
    }

    /// Writes the file in place, made new (`O_CREAT|O_EXCL|O_NOFOLLOW`: an existing
    /// entry of any kind is refused, `EEXIST`), with no temp name and no rename: for a
    /// file in a directory that nobody reads before its writer commits it, such as a
    /// create's container directory before its record exists (a writer killed half-way
    /// leaves a directory the reconcile removes whole). Two directory changes less than
    /// a temp file's create and rename. A failed write removes what it made.
    pub fn fresh(mut self) -> AtomicFile {
        self.fresh = true;
        self
    }

    /// Writes `data` to a temp file beside the target and renames it into place (or,
    /// [`AtomicFile::fresh`], to the target itself).
    pub fn write(&self, data: &[u8]) -> io::Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if self.fresh {
            let written = self.write_tmp(&self.path, data).and_then(|()| {
                if self.durable && self.sync_dir {
                    File::open(dir)?.sync_all()?;
                }
                Ok(())
            });
            if let Err(e) = written {
                // Not a file someone else made: O_EXCL refused that one.
                if e.kind() != io::ErrorKind::AlreadyExists {
                    let _ = std::fs::remove_file(&self.path);
                }
                return Err(e);
            }
            return Ok(());
        }
        let name = self.path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} names no file", self.path.display()),
            )
        })?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(TMP_MARK);
        tmp_name.push(random_hex()?);
        let tmp = dir.join(tmp_name);
        let result = self.write_tmp(&tmp, data).and_then(|()| {
            if self.durable {
                std::fs::rename(&tmp, &self.path)?;
                if self.sync_dir {
                    File::open(dir)?.sync_all()?;
                }
            } else {
                replace_unsynced(&tmp, &self.path)?;
            }
            Ok(())
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn write_tmp(&self, tmp: &Path, data: &[u8]) -> io::Result<()> {
        let c = CString::new(tmp.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: a NUL-terminated path and plain flags; the kernel returns a new fd.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the fd was just returned by open and nothing else owns it.
        let mut f = unsafe { File::from_raw_fd(fd) };
        // SAFETY: fchmod on the fd we own.
        if unsafe { libc::fchmod(f.as_raw_fd(), self.mode) } != 0 {
            return Err(io::Error::last_os_error());
        }
        f.write_all(data)?;
        if self.durable {
            f.sync_all()?;
        }
        Ok(())
    }
}

/// Puts `tmp` in place of `path` without making ext4 write `tmp`'s data now. A rename
/// over an existing file does (its `auto_da_alloc` flush, meant for writers that never
/// fsync): a writeback started on the caller's time, about a tenth of a millisecond of
/// CPU each, for a file whose durability nobody asked for. Exchanging the two names
/// instead (`RENAME_EXCHANGE`, just as atomic for a reader of `path`) and unlinking the
/// old file, now under the temp name, skips it. No `path` yet, or a filesystem without
/// the exchange: a plain rename.
fn replace_unsynced(tmp: &Path, path: &Path) -> io::Result<()> {
    let (from, to) = (cstring(tmp)?, cstring(path)?);
    // SAFETY: two NUL-terminated paths relative to the cwd; no memory is handed over.
    let exchanged = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if exchanged == 0 {
        // The old content, now under the temp name (a crash here leaves a temp file,
        // which readers never see and the writers' reconcile removes).
        return std::fs::remove_file(tmp);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOENT | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
            std::fs::rename(tmp, path)
        }
        _ => Err(err),
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// 16 random hex characters from the kernel's CSPRNG: a temp name nobody can predict
/// (a planted name would only make the `O_EXCL` create fail, but an unpredictable one
/// does not even fail).
fn random_hex() -> io::Result<OsString> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: writes at most the remaining length into the buffer we own.
        let n = unsafe {
            libc::getrandom(
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
                0 as libc::c_uint,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += n as usize;
    }
    let hex: Vec<u8> = buf
        .iter()
        .flat_map(|b| {
            let d = |n: u8| b"0123456789abcdef"[usize::from(n)];
            [d(b >> 4), d(b & 15)]
        })
        .collect();
    Ok(OsString::from_vec(hex))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// A fresh write makes the file itself (its mode, its content, nothing else in the
    /// directory, durable or not) and refuses any entry already at the path, a file or a
    /// symlink, leaving it and what it leads to as they were.
    #[test]
    fn a_fresh_write_makes_only_the_file_and_refuses_an_existing_entry() {
        let d = tempfile::tempdir().unwrap();
        for durable in [true, false] {
            let p = d.path().join(format!("hosts-{durable}"));
            let file = AtomicFile::new(&p).mode(0o644).fresh();
            let file = if durable { file } else { file.not_durable() };
            file.write(b"127.0.0.1 localhost\n").unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), b"127.0.0.1 localhost\n");
            assert_eq!(mode(&p), 0o644);
            let again = AtomicFile::new(&p).fresh().write(b"other").unwrap_err();
            assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
            assert_eq!(std::fs::read(&p).unwrap(), b"127.0.0.1 localhost\n");
        }
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            2,
            "a temp file was left"
        );
        let target = d.path().join("target");
        std::fs::write(&target, b"kept").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = AtomicFile::new(&link)
            .fresh()
            .write(b"through")
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&target).unwrap(), b"kept");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn default_mode_is_0600_whatever_the_umask() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        // SAFETY: umask only changes this process's file-creation mask.
        let old = unsafe { libc::umask(0) };
        let r = write_atomic(&p, b"{}");
        // SAFETY: as above, restoring it.
        unsafe { libc::umask(old) };
        r.unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
    }

    #[test]
    fn a_replacement_without_the_directory_sync_still_replaces_whole_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write_atomic(&p, b"old").unwrap();
        AtomicFile::new(&p)
            .without_dir_sync()
            .write(b"new")
            .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "a temp file was left"
        );
    }

    /// An unsynced replacement swaps the names and unlinks the old file: the target holds
    /// the new content (the same inode as the temp file it was written to), whole, and
    /// nothing else is left; a first write (no target yet) and a symlink at the target
    /// (replaced, not followed) work as a rename does.
    #[test]
    fn an_unsynced_replacement_exchanges_and_leaves_only_the_new_file() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        AtomicFile::new(&p).not_durable().write(b"first").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        let before = std::fs::metadata(&p).unwrap().ino();
        AtomicFile::new(&p).not_durable().write(b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_ne!(
            std::fs::metadata(&p).unwrap().ino(),
            before,
            "written in place"
        );
        assert_eq!(mode(&p), 0o600);
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "left: {names:?}");

        let victim = d.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        AtomicFile::new(&link).not_durable().write(b"mine").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 3);
    }

    #[test]
    fn explicit_mode_is_exact_and_setid_bits_are_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        AtomicFile::new(&p).mode(0o4755).write(b"x").unwrap();
        assert_eq!(mode(&p), 0o755);
        AtomicFile::new(&p).mode(0o644).write(b"y").unwrap();
        assert_eq!(mode(&p), 0o644);
        assert_eq!(std::fs::read(&p).unwrap(), b"y");
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let p = d.path().join("pid");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        write_atomic(&p, b"42").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&p).unwrap(), b"42");
    }

    #[test]
    fn no_temp_file_is_left_behind_on_success_or_failure() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"1").unwrap();
        // The target is a non-empty directory: rename fails, the temp file goes.
        let blocked = d.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), b"").unwrap();
        assert!(write_atomic(&blocked, b"2").is_err());
        let names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains(TMP_MARK)),
            "left: {names:?}"
        );
    }

    #[test]
    fn temp_names_are_unpredictable() {
        let a = random_hex().unwrap();
        let b = random_hex().unwrap();
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }
}
