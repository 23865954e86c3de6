//! Host-side primitives shared by codex-runtime, codex-engine and codex-shim.
//!
//! - [`atomic`]: replace a file so readers see the old or the new content, never a mix,
//!   with an explicit mode (0600 unless told otherwise), a temp file that cannot be a
//!   symlink someone planted, and fsync of the file and its directory.
//! - [`lock`]: `flock(2)` held for a scope.
//! - [`nss`]: group and host name lookups through `getent`, never glibc's NSS in a static
//!   binary.
//! - [`placement`]: the `T` attribute that gives each store of a state root a place of
//!   its own on the filesystem.
//! - [`pidfd`]: pidfds, and a process identity (pid + start time) that a recycled pid
//!   cannot forge.
//! - [`release`]: a last close that waits on the kernel (an inotify instance's), made by
//!   a child so that a command about to end does not wait for it.
//! - [`testhook`]: the points where race and crash tests hold or kill a process
//!   (debug builds only).
//! - [`trace`]: the `CODEX_TRACE` timing lines of the start path.

// Every unsafe block says why it is sound; nothing outside tests panics on a value that
// can be absent at run time (make lint and CI enforce both).
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod atomic;
pub mod lock;
pub mod nss;
pub mod pidfd;
pub mod placement;
pub mod release;
pub mod testhook;
pub mod trace;

pub use atomic::{write_atomic, AtomicFile, TMP_MARK};
pub use lock::FileLock;
pub use pidfd::{pidfd_getfd, pidfd_open, pidfd_send_signal, read_proc_stat, ProcessId};

use std::io;

/// `Err(last_os_error)` for a negative syscall return.
pub(crate) fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
