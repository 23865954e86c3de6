//! The few system calls the shim needs, over `libc`.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub use codex_sys::pidfd_open;

/// How a child ended: the exit code (128+N for signal N) and the signal.
pub type ExitStatus = (i32, Option<i32>);

/// Reaps `pid` if it has ended (`None` while it runs).
pub fn try_wait(pid: i32) -> io::Result<Option<ExitStatus>> {
    wait_pid(pid, libc::WNOHANG)
}

/// Waits for `pid` to end and reaps it.
pub fn wait(pid: i32) -> io::Result<ExitStatus> {
    loop {
        if let Some(s) = wait_pid(pid, 0)? {
            return Ok(s);
        }
    }
}

fn wait_pid(pid: i32, flags: i32) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer for the call.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        if ret < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if ret == 0 {
            return Ok(None);
        }
        if libc::WIFEXITED(status) {
            return Ok(Some((libc::WEXITSTATUS(status), None)));
        }
        if libc::WIFSIGNALED(status) {
            let s = libc::WTERMSIG(status);
            return Ok(Some((128 + s, Some(s))));
        }
        // Stopped or continued (not asked for): it still runs.
        return Ok(None);
    }
}

/// Makes this process the reaper of its orphaned descendants (`on`), or stops it.
pub fn set_child_subreaper(on: bool) -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_CHILD_SUBREAPER,
            libc::c_ulong::from(on),
            0,
            0,
            0,
        )
    };
    check(libc::c_long::from(ret)).map(|_| ())
}

/// Gives the free memory at the top and in the middle of the heap back to the
/// kernel (glibc keeps what a burst of work freed; a long-lived, mostly idle
/// process should not).
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// CLOCK_MONOTONIC, the clock of `std::time::Instant`; it counts on across an exec.
pub fn monotonic() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out pointer; CLOCK_MONOTONIC cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Waits until one of `fds` is ready or `timeout` passes (`None`: no limit); fills
/// in their `revents`. An interrupted wait is not an error.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<()> {
    let ms = match timeout {
        None => -1,
        // Round up so that a wait for a deadline does not wake just before it.
        Some(t) => i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
    };
    // SAFETY: fds is a valid array of fds.len() pollfd structs.
    let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if ret < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Sets or clears FD_CLOEXEC.
pub fn set_cloexec(fd: BorrowedFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a valid fd with integer arguments.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, new) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Marks every fd from `first` up close-on-exec (Linux 5.11; older kernels leave
/// them as they are, which `Err` says).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: plain integer arguments.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    check(ret).map(|_| ())
}

/// Closes every fd from `first` up (Linux 5.9).
pub fn close_from(first: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments; the fds closed are owned by nothing else in a
    // process that has just started.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) };
    check(ret).map(|_| ())
}

/// Takes ownership of an fd handed over across an exec, after checking it is open.
///
/// # Safety
/// Nothing else in this process may own or use `fd`.
pub unsafe fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the flags of a (possibly invalid) fd.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open and, by the caller's promise, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `name` (one path component) in the directory `dir`, read-only.
pub fn open_in(dir: BorrowedFd, name: &OsStr) -> io::Result<OwnedFd> {
    if name.as_bytes().contains(&b'/') || name.is_empty() || name == ".." || name == "." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        ));
    }
    let c = cstring(name)?;
    // SAFETY: c outlives the call; dir is a valid fd.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "argument contains NUL"))
}

/// The arguments and this process's environment as C strings for an exec.
fn exec_vectors(argv: &[OsString]) -> io::Result<(Vec<CString>, Vec<CString>)> {
    let args = argv
        .iter()
        .map(|a| cstring(a))
        .collect::<io::Result<Vec<_>>>()?;
    let env = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    Ok((args, env))
}

fn pointers(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Executes the program open at `file` with `argv` and this process's environment.
/// Returns only on failure.
pub fn fexecve(file: BorrowedFd, argv: &[OsString]) -> io::Error {
    let (args, env) = match exec_vectors(argv) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let (a, e) = (pointers(&args), pointers(&env));
    // SAFETY: a and e are null-terminated arrays of pointers to C strings that
    // outlive the call (args and env); file is a valid fd.
    unsafe { libc::fexecve(file.as_raw_fd(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}
