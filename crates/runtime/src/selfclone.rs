//! Protection of the runtime binary (the CVE-2019-5736 class).
//!
//! The container's init is a fork of the runtime, so until it execs the user's program
//! its `/proc/PID/exe` is the runtime binary, and a program that execs
//! `/proc/self/exe` would run the runtime binary inside the container. If that were
//! the host's file, a process in the container could reopen it for writing once it is
//! no longer running and replace the host's runtime. So commands that make container
//! processes first re-execute themselves from a read-only view of the binary: every
//! `/proc/PID/exe` a container can reach is then a file that cannot be written.
//!
//! The view is a detached, lower-only overlayfs over the binary's directory (no copy),
//! or a sealed memfd copy where overlayfs is unavailable (a copy of the whole binary,
//! a few ms). A binary that already sits on a read-only mount is left alone.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Context, Error, Result};
use crate::sys::{self, FsContext};

const SEALS: i32 = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
const MFD_EXEC: u32 = 0x10;

/// True when the running binary cannot be written through `/proc/self/exe`: it is a
/// sealed memfd, or it sits on a read-only mount.
pub fn running_protected() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    // SAFETY: F_GET_SEALS on a valid fd; regular files answer EINVAL.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & libc::F_SEAL_WRITE != 0 {
        return true;
    }
    nix::sys::statvfs::fstatvfs(&exe)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// The device and inode of the file `path` names (a `/proc/PID/exe` link followed).
pub fn file_id(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Re-executes the current process from a read-only view of its binary, with the same
/// arguments and environment. Returns only if it already runs from one.
pub fn ensure_protected_self() -> Result<()> {
    if running_protected() {
        return Ok(());
    }
    let exe = std::fs::read_link("/proc/self/exe").ctx(|| "reading /proc/self/exe")?;
    let view = match overlay_view(&exe) {
        Ok(f) => f,
        Err(_) => sealed_copy()?,
    };
    reexec(&view)
}

/// `exe` opened through a detached overlayfs whose only layers are its own directory
/// and an empty tmpfs: the same file, on a read-only superblock. A process executed
/// from it is already protected ([`running_protected`]) and does not re-execute
/// itself: a starter that makes the view saves its child that exec.
pub fn overlay_view(exe: &Path) -> Result<File> {
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(Error::Other("the runtime binary has no directory".into()));
    };
    let empty = FsContext::open("tmpfs").ctx(|| "tmpfs for the binary view")?;
    empty.set("size", Some("4k")).ctx(|| "tmpfs size")?;
    let empty = empty.mount(0).ctx(|| "mounting the empty layer")?;
    let lower = format!("{}:/proc/self/fd/{}", dir.display(), empty.as_raw_fd());
    if lower.contains(',') {
        return Err(Error::Other("the binary's path contains a comma".into()));
    }
    let ovl = FsContext::open("overlay").ctx(|| "overlayfs for the binary view")?;
    ovl.set("lowerdir", Some(&lower))
        .ctx(|| "overlay lowerdir")?;
    let mnt = ovl
        .mount(sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOSUID)
        .ctx(|| "mounting the binary view")?;
    let fd = sys::openat2(
        mnt.as_fd(),
        Path::new(name),
        libc::O_RDONLY,
        0,
        libc::RESOLVE_BENEATH,
    )
    .ctx(|| "opening the binary through the view")?;
    Ok(File::from(fd))
}

/// A sealed (unwritable, unresizable) memfd copy of the binary.
fn sealed_copy() -> Result<File> {
    let mut exe = File::open("/proc/self/exe").ctx(|| "opening the runtime binary")?;
    let mut copy = File::from(executable_memfd(c"codex-oci")?);
    std::io::copy(&mut exe, &mut copy).ctx(|| "copying the runtime binary")?;
    seal(&copy)?;
    Ok(copy)
}

/// A sealed, executable memfd holding `bytes` (the exec trampoline).
pub(crate) fn sealed_memfd(name: &std::ffi::CStr, bytes: &[u8]) -> Result<OwnedFd> {
    let mut file = File::from(executable_memfd(name)?);
    std::io::Write::write_all(&mut file, bytes).ctx(|| format!("writing {name:?}"))?;
    seal(&file)?;
    Ok(file.into())
}

fn executable_memfd(name: &std::ffi::CStr) -> Result<OwnedFd> {
    // SAFETY: name is a valid C string; the flags are plain integers.
    let mut fd = unsafe {
        libc::memfd_create(
            name.as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING | MFD_EXEC,
        )
    };
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // Kernels before 6.3 do not know MFD_EXEC (and make memfds executable anyway).
        // SAFETY: as above.
        fd = unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("memfd_create for {name:?}"));
    }
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn seal(file: &File) -> Result<()> {
    // SAFETY: F_ADD_SEALS on a valid memfd.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "sealing a memfd");
    }
    Ok(())
}

fn reexec(view: &File) -> Result<()> {
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
    let Err(err) = nix::unistd::fexecve(view, &args, &env);
    Err(std::io::Error::from(err)).ctx(|| "re-executing from the read-only view")
}
