//! `cp` into and out of a container. Every path inside the container is resolved with
//! `openat2(RESOLVE_IN_ROOT)` from an fd of its rootfs, and the tree below it is walked
//! fd by fd with `O_NOFOLLOW`: a symlink in the container is copied as a symlink and
//! never followed out of the rootfs.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};

use crate::error::{Context, Error, Result};

fn in_root(root: BorrowedFd, path: &Path, flags: i32) -> Result<OwnedFd> {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, std::path::Component::RootDir))
        .collect();
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    codex_runtime::sys::openat2(
        root,
        &rel,
        flags,
        0o644,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
    .ctx(|| format!("{} in the container", path.display()))
}

/// Copies `src` (inside the container whose rootfs is `root`) to `dst` on the host.
pub fn copy_out(root: &Path, src: &Path, dst: &Path) -> Result<()> {
    let rootfd: OwnedFd = File::open(root)
        .ctx(|| format!("opening {}", root.display()))?
        .into();
    let fd = in_root(rootfd.as_fd(), src, libc::O_PATH)?;
    let st = nix::sys::stat::fstat(&fd).ctx(|| format!("{}", src.display()))?;
    // Docker's rule: copying into an existing directory puts the source inside it.
    let dst = if dst.is_dir() {
        dst.join(src.file_name().unwrap_or(OsStr::new("root")))
    } else {
        dst.to_path_buf()
    };
    let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
    if kind == SFlag::S_IFDIR {
        let dir = in_root(rootfd.as_fd(), src, libc::O_DIRECTORY | libc::O_RDONLY)?;
        copy_dir_out(dir.as_fd(), &dst)
    } else if kind == SFlag::S_IFREG {
        let f = in_root(rootfd.as_fd(), src, libc::O_RDONLY)?;
        write_host_file(File::from(f), &dst, st.st_mode & 0o7777)
    } else {
        Err(Error::invalid(
            "source",
            format!("{} is not a file or directory", src.display()),
        ))
    }
}

fn write_host_file(mut from: File, dst: &Path, mode: u32) -> Result<()> {
    let mut out = File::create(dst).ctx(|| format!("creating {}", dst.display()))?;
    std::io::copy(&mut from, &mut out).ctx(|| format!("copying to {}", dst.display()))?;
    out.flush().ctx(|| format!("writing {}", dst.display()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode))
        .ctx(|| format!("chmod {}", dst.display()))
}

fn copy_dir_out(dir: BorrowedFd, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst).ctx(|| format!("creating {}", dst.display()))?;
    let mut d = nix::dir::Dir::from_fd(nix::unistd::dup(dir).ctx(|| "dup")?)
        .ctx(|| "reading a directory")?;
    let names: Vec<Vec<u8>> = d
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    for name in names {
        let name = OsStr::from_bytes(&name);
        let target = dst.join(name);
        let st = fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .ctx(|| format!("stat {}", name.to_string_lossy()))?;
        let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
        if kind == SFlag::S_IFDIR {
            let sub = openat(
                dir,
                name,
                OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| format!("opening {}", name.to_string_lossy()))?;
            copy_dir_out(sub.as_fd(), &target)?;
        } else if kind == SFlag::S_IFREG {
            let f = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| format!("opening {}", name.to_string_lossy()))?;
            write_host_file(File::from(f), &target, st.st_mode & 0o7777)?;
        } else if kind == SFlag::S_IFLNK {
            let link = nix::fcntl::readlinkat(dir, name).ctx(|| "readlink")?;
            let _ = std::fs::remove_file(&target);
            std::os::unix::fs::symlink(link, &target)
                .ctx(|| format!("creating {}", target.display()))?;
        }
    }
    Ok(())
}

/// Copies `src` on the host to `dst` inside the container whose rootfs is `root`.
pub fn copy_in(root: &Path, src: &Path, dst: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(src).ctx(|| format!("{}", src.display()))?;
    let rootfd: OwnedFd = File::open(root)
        .ctx(|| format!("opening {}", root.display()))?
        .into();
    // Into an existing directory: the source goes inside it.
    let (parent, name) = match in_root(rootfd.as_fd(), dst, libc::O_DIRECTORY | libc::O_RDONLY) {
        Ok(d) => (
            d,
            src.file_name().unwrap_or(OsStr::new("root")).to_os_string(),
        ),
        Err(_) => {
            let p = dst.parent().unwrap_or(Path::new("/"));
            let n = dst.file_name().ok_or_else(|| {
                Error::invalid("destination", format!("{} has no name", dst.display()))
            })?;
            (
                in_root(rootfd.as_fd(), p, libc::O_DIRECTORY | libc::O_RDONLY)?,
                n.to_os_string(),
            )
        }
    };
    copy_entry_in(src, &meta, parent.as_fd(), &name)
}

fn copy_entry_in(
    src: &Path,
    meta: &std::fs::Metadata,
    dir: BorrowedFd,
    name: &OsStr,
) -> Result<()> {
    let mode = Mode::from_bits_truncate(meta.mode() & 0o7777);
    if meta.is_dir() {
        match nix::sys::stat::mkdirat(dir, name, mode) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e).ctx(|| format!("creating {}", name.to_string_lossy())),
        }
        let sub = openat(
            dir,
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| {
            format!(
                "{} is not a directory in the container",
                name.to_string_lossy()
            )
        })?;
        for e in std::fs::read_dir(src).ctx(|| format!("reading {}", src.display()))? {
            let e = e.ctx(|| format!("reading {}", src.display()))?;
            let m =
                std::fs::symlink_metadata(e.path()).ctx(|| format!("{}", e.path().display()))?;
            copy_entry_in(&e.path(), &m, sub.as_fd(), &e.file_name())?;
        }
        Ok(())
    } else if meta.file_type().is_symlink() {
        let link = std::fs::read_link(src).ctx(|| format!("readlink {}", src.display()))?;
        let _ = nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        nix::unistd::symlinkat(link.as_path(), dir, name)
            .ctx(|| format!("creating {}", name.to_string_lossy()))
    } else if meta.is_file() {
        // O_NOFOLLOW: an existing symlink at the destination is refused, not followed.
        let out = openat(
            dir,
            name,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_TRUNC
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC,
            mode,
        )
        .ctx(|| format!("creating {} in the container", name.to_string_lossy()))?;
        let mut out = File::from(out);
        let mut from = File::open(src).ctx(|| format!("opening {}", src.display()))?;
        std::io::copy(&mut from, &mut out).ctx(|| format!("copying {}", src.display()))?;
        out.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .ctx(|| "chmod")
    } else {
        Err(Error::invalid(
            "source",
            format!("{} is not a file, directory or symlink", src.display()),
        ))
    }
}
