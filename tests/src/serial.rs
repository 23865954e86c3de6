//! Tests that measure a share of the machine (CPU time a busy loop gets) must not measure
//! each other: [`serial`] makes them take turns, across test threads and test binaries,
//! with an flock on a file under `target/codex-tests/`.

use std::fs::{self, File};
use std::os::unix::io::AsRawFd;

use crate::workspace_dir;

/// Held while a share-measuring test runs; dropping it lets the next one in.
pub struct Serial {
    _lock: File,
}

/// Waits until no other test holding `serial(name)` runs, then holds it.
pub fn serial(name: &str) -> Serial {
    let dir = workspace_dir().join("target/codex-tests");
    fs::create_dir_all(&dir).expect("create target/codex-tests");
    let lock = File::create(dir.join(format!("serial-{name}.lock"))).expect("serial lock file");
    // SAFETY: flock on an fd we own; released when `lock` is closed.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {name}: {}", std::io::Error::last_os_error());
    Serial { _lock: lock }
}
