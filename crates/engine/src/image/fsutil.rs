//! Small filesystem helpers for the image store: atomic writes, the store lock, private
//! work directories that a crashed import leaves recognisably stale, and a hashing writer.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::error::{Context, Result};

/// A name no other process or thread of this host picks at the same time.
pub(crate) fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// fsyncs a directory so that renames and creations inside it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing directory {}", dir.display()))
}

/// Replaces `path` with `data`: readers see the old or the new file, never a mix
/// (codex_sys::atomic; 0600: the store is root's alone).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    codex_sys::write_atomic(path, data).ctx(|| format!("writing {}", path.display()))
}

/// `flock(2)` on a file, released when dropped (the fd is closed).
#[derive(Debug)]
pub(crate) struct FileLock {
    _lock: codex_sys::FileLock,
}

impl FileLock {
    /// Blocks until the exclusive lock on `path` (created if missing) is held.
    pub(crate) fn exclusive(path: &Path) -> Result<Self> {
        codex_sys::FileLock::exclusive(path)
            .map(|l| FileLock { _lock: l })
            .ctx(|| format!("locking {}", path.display()))
    }

    /// The exclusive lock if nobody holds it now; `None` if someone does or the file is gone.
    pub(crate) fn try_exclusive(path: &Path) -> Option<Self> {
        codex_sys::FileLock::try_exclusive(path)
            .ok()
            .flatten()
            .map(|l| FileLock { _lock: l })
    }
}

/// A private directory under `<root>/images/tmp/` for one operation, holding its own lock
/// file so that garbage collection can tell a live work dir from a crashed one. Removed
/// (with everything still in it) when dropped.
#[derive(Debug)]
pub(crate) struct WorkDir {
    path: PathBuf,
    _lock: FileLock,
}

/// Work dirs younger than this are never collected, whatever their lock says: it closes
/// the window between creating a work dir and locking it.
pub(crate) const WORK_DIR_GRACE: Duration = Duration::from_secs(60);

pub(crate) const WORK_DIR_LOCK: &str = "lock";

impl WorkDir {
    /// Made under a hidden name and renamed once its lock is held, so that a work dir
    /// under its real name is locked from birth: the next import can collect a crashed
    /// one at once instead of after [`WORK_DIR_GRACE`].
    pub(crate) fn create(tmp_root: &Path, prefix: &str) -> Result<Self> {
        let name = unique_name(prefix);
        let birth = tmp_root.join(format!(".{name}"));
        let path = tmp_root.join(name);
        fs::create_dir(&birth).ctx(|| format!("creating work directory {}", birth.display()))?;
        let locked = FileLock::exclusive(&birth.join(WORK_DIR_LOCK)).and_then(|lock| {
            fs::rename(&birth, &path)
                .ctx(|| format!("naming work directory {}", path.display()))
                .map(|_| lock)
        });
        match locked {
            Ok(lock) => Ok(WorkDir { path, _lock: lock }),
            Err(e) => {
                let _ = fs::remove_dir_all(&birth);
                Err(e)
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// True when a work dir under tmp/ belongs to nobody any more (its owner crashed, or it is
/// the leftover of an interrupted garbage collection).
pub(crate) fn work_dir_is_stale(path: &Path) -> bool {
    let old = || {
        fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age >= WORK_DIR_GRACE)
    };
    // Only a dir still being born (hidden name) may be unlocked while its owner lives.
    let born = path
        .file_name()
        .is_some_and(|n| !n.as_encoded_bytes().starts_with(b"."));
    if !born && !old() {
        return false;
    }
    let lock = path.join(WORK_DIR_LOCK);
    if fs::symlink_metadata(&lock).is_err() {
        return true;
    }
    FileLock::try_exclusive(&lock).is_some()
}

/// A writer that hashes (sha256) and counts what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The inner writer, the hex digest and the byte count.
    pub(crate) fn finish(self) -> (W, String, u64) {
        (self.inner, hex(&self.hasher.finalize()), self.len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub(crate) fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in name"))
}

pub(crate) fn path_cstring(path: &Path) -> io::Result<CString> {
    cstring(path.as_os_str().as_bytes())
}
