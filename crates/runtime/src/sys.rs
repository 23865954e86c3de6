//! Thin wrappers over the syscalls that `nix` does not cover (openat2, the new mount
//! API, raw clone). Each returns an `io::Result` and owns the fds it creates.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

pub const OPEN_TREE_CLONE: libc::c_uint = 1;
pub const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
pub const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
pub const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;
const AT_RECURSIVE: libc::c_uint = 0x8000;

fn cstr(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `openat2(2)`: opens `path` relative to `dir` with the given resolve flags.
pub fn openat2(
    dir: BorrowedFd,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    let mut how: libc::open_how = unsafe {
        // SAFETY: open_how is a plain C struct for which all-zero is a valid value.
        std::mem::zeroed()
    };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    // O_TMPFILE includes the O_DIRECTORY bit: test it whole, or a directory open
    // would carry a mode and be refused.
    let creates = flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE;
    how.mode = if creates { mode as u64 } else { 0 };
    how.resolve = resolve;
    loop {
        // SAFETY: c and how outlive the call; the kernel copies them.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        match check(ret) {
            // SAFETY: the kernel returned a new fd that nothing else owns.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `open_tree(2)` with `OPEN_TREE_CLONE`: a detached copy of the mount at `fd`.
pub fn clone_tree(fd: BorrowedFd, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: the empty C string literal is static.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    // SAFETY: the kernel returned a new fd that nothing else owns.
    check(ret).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `move_mount(2)` of a detached tree onto the object `target` refers to.
pub fn move_mount_to_fd(tree: BorrowedFd, target: BorrowedFd) -> io::Result<()> {
    // SAFETY: plain fd arguments and static empty strings.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    check(ret).map(|_| ())
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(2)` on the mount at `fd` (and below it when `recursive`).
pub fn mount_setattr(
    fd: BorrowedFd,
    recursive: bool,
    set: u64,
    clear: u64,
    propagation: u64,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: attr lives across the call; size matches the struct passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret).map(|_| ())
}

pub use codex_sys::{pidfd_open, pidfd_send_signal};

/// Closes every fd from `first` upward except those in `keep` (the channel that
/// reports an exec failure, itself close-on-exec, and the exec trampoline's memfd). No runtime fd may survive into the container: not
/// even as a cwd target through /proc/self/fd (the CVE-2024-21626 class).
pub fn close_fds_except(first: u32, keep: &[RawFd]) -> io::Result<()> {
    let close = |a: u32, b: u32| {
        // SAFETY: closing fds the caller no longer uses; nothing refers to them after.
        let r = unsafe { libc::close_range(a, b, 0) };
        check(r as libc::c_long).map(|_| ())
    };
    let mut kept: Vec<u32> = keep
        .iter()
        .filter_map(|&k| u32::try_from(k).ok())
        .filter(|&k| k >= first)
        .collect();
    kept.sort_unstable();
    kept.dedup();
    let mut from = first;
    for k in kept {
        if k > from {
            close(from, k - 1)?;
        }
        from = k.saturating_add(1);
        if k == u32::MAX {
            return Ok(());
        }
    }
    close(from, u32::MAX)
}

/// Marks every fd from `first` upward close-on-exec.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range only changes fd flags.
    let ret = unsafe { libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    check(ret as libc::c_long).map(|_| ())
}

/// A fork that may add clone flags (e.g. `CLONE_PARENT`). Returns 0 in the child.
///
/// # Safety
/// The caller must be single-threaded, as with `fork(2)`.
pub unsafe fn fork_with_flags(flags: libc::c_int) -> io::Result<libc::pid_t> {
    // SAFETY: a raw clone without CLONE_VM and with a null stack behaves like fork;
    // the caller guarantees there are no other threads.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    check(ret).map(|p| p as libc::pid_t)
}

/// `fork_with_flags` whose child starts in the cgroup `cgroup` (a directory fd of a
/// cgroup v2 hierarchy): `clone3` with `CLONE_INTO_CGROUP`, Linux 5.7+.
///
/// # Safety
/// The caller must be single-threaded, as with `fork(2)`.
pub unsafe fn clone_into_cgroup(
    flags: libc::c_int,
    cgroup: std::os::fd::BorrowedFd,
) -> io::Result<libc::pid_t> {
    /// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        // The namespace flags are non-negative c_int bits.
        flags: flags as u32 as u64 | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: std::os::fd::AsRawFd::as_raw_fd(&cgroup) as u64,
    };
    // SAFETY: clone3 reads `args` (its size given); no stack and no CLONE_VM make it a
    // fork, and the caller guarantees there are no other threads.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    check(ret).map(|p| p as libc::pid_t)
}

/// An error of [`clone_into_cgroup`] that means "this kernel cannot", after which a
/// plain fork and a `cgroup.procs` write do the same.
pub fn clone3_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::E2BIG))
}

/// The kernel's start time of a process (field 22 of /proc/PID/stat), which tells a
/// live process from a recycled pid. `None` when the process is gone.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = String::from_utf8(codex_sys::read_proc_stat(pid).ok()?).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The one-letter state of a process (`R`, `S`, `Z`...), `None` when it is gone.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = String::from_utf8(codex_sys::read_proc_stat(pid).ok()?).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

/// A filesystem context from `fsopen(2)`: configure it, then `mount` it detached.
pub struct FsContext {
    fd: OwnedFd,
    fstype: String,
}

impl FsContext {
    pub fn open(fstype: &str) -> io::Result<FsContext> {
        let c = CString::new(fstype)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "fs type contains NUL"))?;
        // SAFETY: c outlives the call.
        let ret = unsafe { libc::syscall(libc::SYS_fsopen, c.as_ptr(), FSOPEN_CLOEXEC) };
        let fd = check(ret)?;
        Ok(FsContext {
            // SAFETY: the kernel returned a new fd that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
            fstype: fstype.to_string(),
        })
    }

    fn config(&self, cmd: libc::c_uint, key: Option<&str>, value: Option<&str>) -> io::Result<()> {
        let bad = |_| io::Error::new(io::ErrorKind::InvalidInput, "option contains NUL");
        let key = key.map(CString::new).transpose().map_err(bad)?;
        let value = value.map(CString::new).transpose().map_err(bad)?;
        let kp = key.as_ref().map_or(std::ptr::null(), |k| k.as_ptr());
        let vp = value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
        // SAFETY: key and value outlive the call; null is allowed where unused.
        let ret = unsafe { libc::syscall(libc::SYS_fsconfig, self.fd.as_raw_fd(), cmd, kp, vp, 0) };
        check(ret).map(|_| ()).map_err(|e| self.explain(e))
    }

    /// Sets `key=value`, or the flag `key` when `value` is `None`.
    pub fn set(&self, key: &str, value: Option<&str>) -> io::Result<()> {
        match value {
            Some(v) => self.config(FSCONFIG_SET_STRING, Some(key), Some(v)),
            None => self.config(FSCONFIG_SET_FLAG, Some(key), None),
        }
    }

    /// Creates the superblock and returns a detached mount of it with `attrs`.
    pub fn mount(&self, attrs: u64) -> io::Result<OwnedFd> {
        self.config(FSCONFIG_CMD_CREATE, None, None)?;
        // SAFETY: plain fd and integer arguments.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.fd.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attrs,
            )
        };
        // SAFETY: the kernel returned a new fd that nothing else owns.
        check(ret).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }

    /// Adds the kernel's own message (read from the context fd) to an error.
    fn explain(&self, e: io::Error) -> io::Error {
        let mut buf = [0u8; 256];
        let mut msgs = Vec::new();
        loop {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            msgs.push(
                String::from_utf8_lossy(&buf[..n as usize])
                    .trim()
                    .to_string(),
            );
        }
        if msgs.is_empty() {
            e
        } else {
            io::Error::new(
                e.kind(),
                format!("{e} ({} says: {})", self.fstype, msgs.join("; ")),
            )
        }
    }
}

/// `prctl(PR_SET_DUMPABLE)`. It cannot fail for 0 or 1.
pub fn set_dumpable(on: bool) {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on), 0, 0, 0) };
}

/// Brings the calling process's `lo` up, as runc and crun do in a new network namespace:
/// without it a service cannot reach itself on 127.0.0.1. An ioctl, not netlink: one
/// socket and two calls, no netlink library in the runtime.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket with constant arguments; the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket just returned this fd and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags member of `req`, which we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the flags member of the union just above.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the name and flags of `req`, which we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
