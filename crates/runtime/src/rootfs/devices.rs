//! Device nodes in the container's /dev: the default set every container gets, the
//! spec's `linux.devices`, and the standard symlinks.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::resolve;
use crate::error::{Context, Error, Result};
use crate::sys;

/// A device node the container gets even when the spec does not list it.
#[derive(Debug, Clone, Copy)]
pub struct DefaultDevice {
    pub path: &'static str,
    pub major: u64,
    pub minor: u64,
}

pub const DEFAULT_DEVICES: &[DefaultDevice] = &[
    DefaultDevice {
        path: "/dev/null",
        major: 1,
        minor: 3,
    },
    DefaultDevice {
        path: "/dev/zero",
        major: 1,
        minor: 5,
    },
    DefaultDevice {
        path: "/dev/full",
        major: 1,
        minor: 7,
    },
    DefaultDevice {
        path: "/dev/random",
        major: 1,
        minor: 8,
    },
    DefaultDevice {
        path: "/dev/urandom",
        major: 1,
        minor: 9,
    },
    DefaultDevice {
        path: "/dev/tty",
        major: 5,
        minor: 0,
    },
];

const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// Creates the default devices (skipping any the spec lists itself), the spec's
/// devices, the /dev symlinks and /dev/shm.
pub fn create_all(
    root: BorrowedFd,
    spec_devices: &[LinuxDevice],
    mounted: &[&Path],
    bind_from_host: bool,
) -> Result<()> {
    for d in DEFAULT_DEVICES {
        // The spec's own device (or a mount the config put there) wins.
        if spec_devices.iter().any(|s| s.path() == Path::new(d.path))
            || mounted.contains(&Path::new(d.path))
        {
            continue;
        }
        let node = Node {
            path: Path::new(d.path),
            kind: SFlag::S_IFCHR,
            major: d.major,
            minor: d.minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        };
        node.create(root, bind_from_host)
            .ctx(|| format!("creating default device {}", d.path))?;
    }
    for (i, d) in spec_devices.iter().enumerate() {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(Error::config(
                    format!("linux.devices[{i}].type"),
                    "\"a\" is only valid in device cgroup rules",
                ))
            }
        };
        let node = Node {
            path: d.path(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        node.create(root, bind_from_host).map_err(|e| {
            Error::config(
                format!("linux.devices[{i}]"),
                format!("{}: {e}", d.path().display()),
            )
        })?;
    }
    let dev = resolve::mkdir_all(root, Path::new("/dev"), 0o755).ctx(|| "creating /dev")?;
    let dev = sys::openat2(dev.as_fd(), Path::new("."), libc::O_DIRECTORY, 0, 0)
        .ctx(|| "opening /dev")?;
    for (name, target) in DEV_LINKS {
        match nix::unistd::symlinkat(*target, dev.as_fd(), *name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e).ctx(|| format!("creating /dev/{name}")),
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = nix::unistd::symlinkat("/proc/kcore", dev.as_fd(), "core");
    }
    match nix::sys::stat::mkdirat(dev.as_fd(), "shm", Mode::from_bits_truncate(0o1777)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(e).ctx(|| "creating /dev/shm"),
    }
    Ok(())
}

struct Node<'a> {
    path: &'a Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

impl Node<'_> {
    /// mknod inside the root, replacing whatever the image had there; under a user
    /// namespace (where mknod is not allowed) a bind mount of the host's node.
    fn create(&self, root: BorrowedFd, bind_from_host: bool) -> std::io::Result<()> {
        let parent = self.path.parent().unwrap_or(Path::new("/"));
        let name = self.path.file_name().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "device path has no name")
        })?;
        let dir = resolve::mkdir_all(root, parent, 0o755)?;
        let dir = sys::openat2(dir.as_fd(), Path::new("."), libc::O_DIRECTORY, 0, 0)?;
        if bind_from_host {
            let host = super::mount::open_path(self.path)?;
            let target = resolve::mount_target(root, self.path, false)?;
            let tree = sys::clone_tree(host.as_fd(), false)?;
            return sys::move_mount_to_fd(tree.as_fd(), target.as_fd());
        }
        match nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let perm = Mode::from_bits_truncate(self.mode & 0o7777);
        // mknod honours the umask: clear it for the call so the node gets exactly the
        // spec's mode. A chmod afterwards would be a second lookup of the name, which
        // follows a symlink swapped in meanwhile (to a host file, through a rootfs that
        // another container shares).
        let umask = nix::sys::stat::umask(Mode::empty());
        let made = mknodat(
            dir.as_fd(),
            name,
            self.kind,
            perm,
            makedev(self.major, self.minor),
        );
        nix::sys::stat::umask(umask);
        made?;
        nix::unistd::fchownat(
            dir.as_fd(),
            name,
            Some(self.uid.into()),
            Some(self.gid.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }
}
