//! The container's root filesystem: mounts, devices, masked and read-only paths, and
//! the switch into it (pivot_root). Everything here runs in the container's init,
//! in its new mount namespace, before the user's program.

mod copyup;
pub mod devices;
pub mod mount;
pub mod resolve;
pub mod shared;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use nix::mount::{mount as mount2, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Spec;

use crate::cgroups::MountSource;
use crate::error::{Context, Error, Result};
use crate::sys;

/// The propagation flag for a `rootfsPropagation` (or mount option) name.
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    match name {
        "shared" => Some(MsFlags::MS_SHARED),
        "slave" => Some(MsFlags::MS_SLAVE),
        "private" => Some(MsFlags::MS_PRIVATE),
        "unbindable" => Some(MsFlags::MS_UNBINDABLE),
        _ => None,
    }
}

/// What the rootfs setup needs to know.
pub struct RootfsSetup<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub cgroup_sources: &'a [MountSource],
    pub userns: bool,
    /// The host's /dev/null, opened before anything in the container could interfere.
    pub host_null: BorrowedFd<'a>,
}

/// Host-side handles the init opens first, while nothing of the container exists.
pub fn open_host_null() -> Result<OwnedFd> {
    let f = mount::open_path(Path::new("/dev/null")).ctx(|| "opening the host's /dev/null")?;
    let meta = f.metadata().ctx(|| "checking /dev/null")?;
    use std::os::unix::fs::MetadataExt;
    if !meta.file_type().is_char_device() || meta.rdev() != nix::sys::stat::makedev(1, 3) {
        return Err(Error::Other(
            "the host's /dev/null is not the null device (1:3)".into(),
        ));
    }
    Ok(f.into())
}

/// Makes the host's mounts invisible to propagation and binds the rootfs onto itself.
/// Returns an `O_PATH` fd of the rootfs mount.
pub fn enter(setup: &RootfsSetup) -> Result<OwnedFd> {
    let prop = setup
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flag);
    // Host mounts must never see what we do here: slave (the default) or private.
    let initial = match prop {
        Some(p) if p == MsFlags::MS_PRIVATE || p == MsFlags::MS_UNBINDABLE => MsFlags::MS_PRIVATE,
        _ => MsFlags::MS_SLAVE,
    };
    mount2(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | initial,
        None::<&str>,
    )
    .ctx(|| "making / a slave mount")?;
    if setup.rootfs == Path::new("/") {
        // The host's own root (a host program under `minimal` isolation): already
        // where the process is, in its own (slave) mount namespace.
        return Ok(mount::open_path(Path::new("/")).ctx(|| "opening /")?.into());
    }
    mount2(
        Some(setup.rootfs),
        setup.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| format!("binding the rootfs {}", setup.rootfs.display()))?;
    mount2(
        None::<&str>,
        setup.rootfs,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .ctx(|| "making the rootfs private")?;
    let fd = mount::open_path(setup.rootfs)
        .ctx(|| format!("opening the rootfs {}", setup.rootfs.display()))?;
    if wants_suid_and_dev(setup.spec) {
        sys::mount_setattr(
            fd.as_fd(),
            false,
            0,
            sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
            0,
        )
        .ctx(|| format!("{ROOTFS_SUID_DEV_ANNOTATION}: clearing nosuid,nodev on the rootfs"))?;
    }
    Ok(fd.into())
}

/// An annotation (value `"true"`) for a rootfs whose host mount is `nosuid,nodev` so that
/// host users can never run what a container left in it, while the container's own view
/// keeps set-id programs and device nodes working as they would on a plain directory.
/// The clearing applies to the container's bind of the rootfs only, never to the host's
/// mount. In a user namespace the kernel locks those flags, and keeping them is right.
pub const ROOTFS_SUID_DEV_ANNOTATION: &str = "run.codex.rootfs.suid-dev";

fn wants_suid_and_dev(spec: &Spec) -> bool {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(ROOTFS_SUID_DEV_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The spec's mounts, then devices.
pub fn populate(setup: &RootfsSetup, root: BorrowedFd) -> Result<()> {
    let env = mount::MountEnv {
        bundle: setup.bundle,
        cgroup_sources: setup.cgroup_sources,
        userns: setup.userns,
    };
    for (i, m) in setup.spec.mounts().iter().flatten().enumerate() {
        mount::mount_one(root, m, i, &env)?;
    }
    let devices = setup
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    if setup.rootfs == Path::new("/") {
        // The host's own root: its /dev is the host's, with every default node already
        // there. Creating them would unlink and re-make the host's /dev/null and the
        // rest, leaving a window where a host program's `> /dev/null` makes a regular
        // file, and failing with EEXIST when two such containers start together.
        if !devices.is_empty() {
            return Err(Error::config(
                "linux.devices",
                "not allowed with root.path \"/\": the nodes would replace the host's own",
            ));
        }
        return Ok(());
    }
    let mounted: Vec<&Path> = setup
        .spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().as_path())
        .collect();
    devices::create_all(root, &devices, &mounted, setup.userns)
}

/// `maskedPaths` and `readonlyPaths` (`root.readonly` is [`seal`]).
pub fn confine(setup: &RootfsSetup, root: BorrowedFd) -> Result<()> {
    let linux = setup.spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask(root, Path::new(p), setup.host_null).ctx(|| format!("masking {p}"))?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        make_readonly(root, Path::new(p)).ctx(|| format!("making {p} read-only"))?;
    }
    Ok(())
}

/// `root.readonly`: after the `createContainer` hooks, which may write into the rootfs
/// (runc's order: the root is made read-only as the last step before the switch).
pub fn seal(spec: &Spec, root: BorrowedFd) -> Result<()> {
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        sys::mount_setattr(root, false, sys::MOUNT_ATTR_RDONLY, 0, 0)
            .ctx(|| "making the rootfs read-only")?;
    }
    Ok(())
}

fn open_existing(root: BorrowedFd, p: &Path) -> std::io::Result<Option<OwnedFd>> {
    match resolve::open(root, p, libc::O_PATH) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Hides a path: an empty read-only tmpfs over a directory, the host's null device
/// over anything else. The null device is the host's own fd, never the container's
/// /dev/null, which the image could have replaced with a symlink.
fn mask(root: BorrowedFd, p: &Path, host_null: BorrowedFd) -> std::io::Result<()> {
    let Some(target) = open_existing(root, p)? else {
        return Ok(());
    };
    let is_dir = std::fs::File::from(target.try_clone()?)
        .metadata()?
        .is_dir();
    let mnt = if is_dir {
        let ctx = sys::FsContext::open("tmpfs")?;
        ctx.set("size", Some("0"))?;
        ctx.set("ro", None)?;
        ctx.mount(
            sys::MOUNT_ATTR_RDONLY
                | sys::MOUNT_ATTR_NOSUID
                | sys::MOUNT_ATTR_NODEV
                | sys::MOUNT_ATTR_NOEXEC,
        )?
    } else {
        sys::clone_tree(host_null, false)?
    };
    sys::move_mount_to_fd(mnt.as_fd(), target.as_fd())
}

fn make_readonly(root: BorrowedFd, p: &Path) -> std::io::Result<()> {
    let Some(target) = open_existing(root, p)? else {
        return Ok(());
    };
    let tree = sys::clone_tree(target.as_fd(), true)?;
    let attrs = sys::MOUNT_ATTR_RDONLY
        | sys::MOUNT_ATTR_NOSUID
        | sys::MOUNT_ATTR_NODEV
        | sys::MOUNT_ATTR_NOEXEC;
    sys::mount_setattr(tree.as_fd(), true, attrs, 0, 0)?;
    sys::move_mount_to_fd(tree.as_fd(), target.as_fd())
}

/// Switches the process into the rootfs and drops the host's tree.
pub fn switch_root(root: BorrowedFd, no_pivot: bool, spec: &Spec, host_root: bool) -> Result<()> {
    nix::unistd::fchdir(root).ctx(|| "entering the rootfs")?;
    if host_root {
        // Nothing to switch to: the rootfs is the host's `/`.
    } else if no_pivot {
        mount2(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .ctx(|| "moving the rootfs to /")?;
        nix::unistd::chroot(".").ctx(|| "chroot into the rootfs")?;
    } else {
        nix::unistd::pivot_root(".", ".").ctx(|| "pivot_root into the rootfs")?;
        // The old root now sits on top of the new one: detach it (it is a slave, so
        // the host does not see this).
        umount2(".", MntFlags::MNT_DETACH).ctx(|| "detaching the old root")?;
    }
    nix::unistd::chdir("/").ctx(|| "chdir /")?;
    if let Some(p) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
    {
        if let Some(flag) = propagation_flag(p) {
            mount2(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | flag,
                None::<&str>,
            )
            .ctx(|| format!("setting rootfsPropagation {p}"))?;
        }
    }
    Ok(())
}
