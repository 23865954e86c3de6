//! `tmpcopyup`: what is under a mount target is copied into the new tmpfs before it is
//! attached. The source is the image's (and may be shared with a running container
//! that can swap names under it), the copier is host root in the host's mount
//! namespace: so every name is opened beneath its parent's fd with O_NOFOLLOW and no
//! symlink resolution, and type, mode and owner come from an fstat of the fd that is
//! copied. A name swapped for a symlink mid-copy is copied as a symlink or skipped,
//! never followed to a host file.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};

use crate::sys::openat2;

/// Deeper trees are refused rather than recursed into without bound.
const MAX_DEPTH: usize = 128;

const BENEATH: u64 =
    libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;

/// Copies the directory `target` (an `O_PATH` fd) into the detached mount `mnt`.
pub fn copy_up(target: BorrowedFd, mnt: BorrowedFd) -> io::Result<()> {
    let src = openat2(
        target,
        Path::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
        0,
    )?;
    let dst = openat2(
        mnt,
        Path::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
        0,
    )?;
    copy_dir(src, dst.as_fd(), 0)
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn copy_dir(src: OwnedFd, dst: BorrowedFd, depth: usize) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "more than {MAX_DEPTH} nested directories"
        )));
    }
    let dup = src.try_clone()?;
    let mut dir = nix::dir::Dir::from_fd(dup)?;
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let name = Path::new(std::ffi::OsStr::from_bytes(name.to_bytes()));
        copy_entry(src.as_fd(), dst, name, depth)?;
    }
    Ok(())
}

fn copy_entry(src: BorrowedFd, dst: BorrowedFd, name: &Path, depth: usize) -> io::Result<()> {
    let st = match fstatat(src, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(nix::errno::Errno::ENOENT) => return Ok(()), // gone since the listing
        Err(e) => return Err(e.into()),
    };
    match kind(&st) {
        SFlag::S_IFLNK => {
            let target = match nix::fcntl::readlinkat(src, name) {
                Ok(t) => t,
                // No longer a symlink (EINVAL) or gone: skipped.
                Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            nix::unistd::symlinkat(target.as_os_str(), dst, name)?;
            nix::unistd::fchownat(
                dst,
                name,
                Some(st.st_uid.into()),
                Some(st.st_gid.into()),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        SFlag::S_IFDIR => {
            let from = match openat2(
                src,
                name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
                BENEATH,
            ) {
                Ok(f) => f,
                // Swapped for a symlink or a file since the fstatat: skipped.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                    return Ok(())
                }
                Err(e) => return Err(e),
            };
            let st = fstat(&from)?;
            mkdirat(dst, name, Mode::from_bits_truncate(0o700))?;
            let to = openat2(
                dst,
                name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
                BENEATH,
            )?;
            copy_dir(from, to.as_fd(), depth + 1)?;
            set_owner_and_mode(to.as_fd(), &st)?;
        }
        SFlag::S_IFREG => {
            // O_NONBLOCK: if the name became a FIFO since the fstatat, opening it must
            // not wait for a writer; the fstat below then skips it.
            let from = match openat2(
                src,
                name,
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
                0,
                BENEATH,
            ) {
                Ok(f) => f,
                // Swapped for a symlink since the fstatat: not followed, not copied.
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(()),
                Err(e) => return Err(e),
            };
            let st = fstat(&from)?;
            if kind(&st) != SFlag::S_IFREG {
                return Ok(());
            }
            let to = openat2(
                dst,
                name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
                BENEATH,
            )?;
            let (mut from, mut to) = (File::from(from), File::from(to));
            io::copy(&mut from, &mut to)?;
            set_owner_and_mode(to.as_fd(), &st)?;
        }
        // Devices, FIFOs and sockets are not copied (as before).
        _ => {}
    }
    Ok(())
}

/// Owner first: a chown clears setuid and setgid, which the mode then restores.
fn set_owner_and_mode(fd: BorrowedFd, st: &FileStat) -> io::Result<()> {
    nix::unistd::fchown(fd, Some(st.st_uid.into()), Some(st.st_gid.into()))?;
    fchmod(fd, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
    Ok(())
}
