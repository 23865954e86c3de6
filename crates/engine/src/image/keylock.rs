//! Per-key locks of the store: `<store>/unpacking/<hex>`, one small file per layer
//! (diff_id) being unpacked, held with an exclusive `flock` by the load that unpacks it
//! until that load has committed it (or failed). A second load needing the same layer
//! waits on it, then finds the layer in the store and reuses it: a layer is unpacked
//! once even when two loads want it at the same moment. Not the store lock: the wait is
//! only for loads sharing a layer, and nothing is unpacked under the store lock. A lock
//! held by a process killed with kill -9 goes with its fds; `image prune` removes the
//! files nobody holds.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::ImageStore;
use crate::error::{Context, Result};

/// A held key lock; released when dropped.
pub(crate) struct KeyLock {
    _file: Flock<File>,
    /// Whether another process held it when we asked (we waited for it).
    pub waited: bool,
}

/// Opens `path` (created 0600 if missing, never through a symlink) and locks it
/// exclusively, waiting if needed. Reopened when, once the lock is ours, the name no
/// longer leads to the file we locked (a `prune` removed it while we waited): the lock
/// must be on the file the name leads to, or two holders could each lock their own.
/// Returns the lock, whether it waited, and the file locked before a reopen, if any.
pub(crate) fn lock_path(path: &Path) -> Result<(Flock<File>, bool, Option<Flock<File>>)> {
    let mut waited = false;
    let mut previous = None;
    loop {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)
            .ctx(|| format!("opening {}", path.display()))?;
        let locked = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                waited = true;
                Flock::lock(f, FlockArg::LockExclusive)
                    .map_err(|(_, e)| io::Error::from(e))
                    .ctx(|| format!("locking {}", path.display()))?
            }
            Err((_, e)) => {
                return Err(io::Error::from(e)).ctx(|| format!("locking {}", path.display()))
            }
        };
        let ours = locked
            .metadata()
            .ctx(|| format!("reading {}", path.display()))?;
        match fs::symlink_metadata(path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {
                return Ok((locked, waited, previous))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
        }
        previous = Some(locked);
    }
}

impl ImageStore {
    /// `<store>/unpacking/` (0700).
    fn unpacking_dir(&self) -> Result<PathBuf> {
        let d = self.dir.join("unpacking");
        match fs::create_dir(&d) {
            Ok(()) => fs::set_permissions(&d, fs::Permissions::from_mode(0o700))
                .ctx(|| format!("securing {}", d.display()))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).ctx(|| format!("creating {}", d.display())),
        }
        Ok(d)
    }

    /// The unpack lock of the layer `diff_hex` (a sha256 hex, checked by the caller).
    pub(super) fn lock_layer(&self, diff_hex: &str) -> Result<KeyLock> {
        let path = self.unpacking_dir()?.join(diff_hex);
        let (file, waited, _) = lock_path(&path)?;
        Ok(KeyLock {
            _file: file,
            waited,
        })
    }

    /// Removes the unpack locks nobody holds (`image prune`).
    pub(crate) fn prune_unpack_locks(&self) -> Result<()> {
        let d = self.dir.join("unpacking");
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).ctx(|| format!("reading {}", d.display())),
        };
        for e in entries.flatten() {
            let Ok(f) = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(e.path())
            else {
                continue;
            };
            if let Ok(_held) = Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                fs::remove_file(e.path()).ctx(|| format!("removing {}", e.path().display()))?;
            }
        }
        Ok(())
    }
}
