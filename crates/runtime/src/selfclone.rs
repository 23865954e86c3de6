//! Protection of the runtime binary (the CVE-2019-5736 class).
//!
//! The container's init is a fork of the runtime, so until it execs the user's program
//! its `/proc/PID/exe` is the runtime binary, and a program that execs
//! `/proc/self/exe` would run the runtime binary inside the container. If that were
//! the host's file, a process in the container could reopen it for writing once it is
//! no longer running and replace the host's runtime. So commands that make container
//! processes first re-execute themselves from a sealed, read-only memfd copy: every
//! `/proc/PID/exe` a container can reach is that copy, which cannot be written.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::error::{Context, Result};

const SEALS: i32 = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
const MFD_EXEC: u32 = 0x10;

/// True when the running binary is already a sealed copy.
pub fn running_sealed() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    // SAFETY: F_GET_SEALS on a valid fd; regular files answer EINVAL.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_WRITE != 0
}

/// Re-executes the current process from a sealed memfd copy of its binary, with the
/// same arguments and environment. Returns only if it already runs from one.
pub fn ensure_sealed_self() -> Result<()> {
    if running_sealed() {
        return Ok(());
    }
    let mut exe = File::open("/proc/self/exe").ctx(|| "opening the runtime binary")?;
    let name = c"codex-oci";
    // SAFETY: name is a valid C string; the flags are plain integers.
    let mut fd = unsafe {
        libc::memfd_create(
            name.as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING | MFD_EXEC,
        )
    };
    if fd < 0 {
        // Kernels before 6.3 do not know MFD_EXEC (and make memfds executable anyway).
        // SAFETY: as above.
        fd = unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "memfd_create for the runtime binary");
    }
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    let mut copy = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    std::io::copy(&mut exe, &mut copy).ctx(|| "copying the runtime binary")?;
    // SAFETY: F_ADD_SEALS on a valid memfd.
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "sealing the runtime binary copy");
    }
    let args: Vec<std::ffi::CString> = std::env::args_os()
        .filter_map(|a| std::ffi::CString::new(a.as_bytes()).ok())
        .collect();
    let env: Vec<std::ffi::CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            std::ffi::CString::new(kv).ok()
        })
        .collect();
    let err = nix::unistd::fexecve(&copy, &args, &env).unwrap_err();
    Err(std::io::Error::from(err)).ctx(|| "re-executing from the sealed copy")
}
