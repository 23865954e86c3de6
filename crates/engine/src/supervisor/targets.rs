//! Mount targets of a `strict` container, made on the host side before the runtime
//! mounts. Under `strict` the container's root is an unprivileged host uid in a user
//! namespace, and the image's directories belong to the host's root: the runtime,
//! mounting as that user, cannot create a missing target such as `/data` of `-v
//! data:/data` (EACCES). The supervisor, the host's root, makes them in the mounted
//! overlay (so in the container's upper layer, never in the image), resolving every
//! path inside the rootfs: a symlink in the image cannot send the directory outside.

use std::os::fd::AsFd;
use std::path::Path;

use crate::config::{ContainerConfig, Isolation, VolumeSource};
use crate::error::{Context, Result};

pub(super) fn prepare(rootfs: &Path, cfg: &ContainerConfig) -> Result<()> {
    if cfg.isolation != Isolation::Strict || cfg.volumes.is_empty() {
        return Ok(());
    }
    let root = std::fs::File::open(rootfs).ctx(|| format!("opening {}", rootfs.display()))?;
    for v in &cfg.volumes {
        let dest = Path::new(&v.destination);
        let is_file = matches!(&v.source, VolumeSource::Bind { path } if path.is_file());
        if !is_file {
            codex_runtime::rootfs::resolve::mkdir_all(root.as_fd(), dest, 0o755)
                .ctx(|| format!("creating the mount point {}", v.destination))?;
            continue;
        }
        let parent = dest.parent().unwrap_or(Path::new("/"));
        let dir = codex_runtime::rootfs::resolve::mkdir_all(root.as_fd(), parent, 0o755)
            .ctx(|| format!("creating the mount point {}", v.destination))?;
        let Some(name) = dest.file_name() else {
            continue;
        };
        // An existing file (or anything else) is the runtime's to check.
        let created = codex_runtime::sys::openat2(
            dir.as_fd(),
            Path::new(name),
            libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        );
        match created {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EISDIR | libc::ELOOP | libc::EEXIST)
                ) => {}
            Err(e) => return Err(e).ctx(|| format!("creating the mount point {}", v.destination)),
        }
    }
    Ok(())
}
