//! One OCI mount, from its option list to a mount made onto an fd resolved inside the
//! rootfs. Everything goes through the new mount API (`fsopen`/`open_tree` build a
//! detached mount, `mount_setattr` sets its flags, `move_mount` attaches it to the
//! target fd), so no path is looked up twice and no symlink can redirect a mount.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::mount::MsFlags;
use oci_spec::runtime::Mount;

use super::resolve;
use crate::cgroups::MountSource;
use crate::error::{Error, Result};
use crate::sys::{self, FsContext};

/// What an OCI mount's `options` ask for, sorted by mechanism.
#[derive(Debug, Default, PartialEq)]
pub struct MountOptions {
    pub bind: bool,
    pub recursive_bind: bool,
    /// Mount attributes for the mount itself.
    pub set: u64,
    pub clear: u64,
    /// Attributes for the mount and every mount below it (`rro`, `rnosuid`...).
    pub rset: u64,
    pub rclear: u64,
    pub propagation: Option<(MsFlags, bool)>,
    /// Filesystem parameters (`mode=755`, `size=64k`, flags like `newinstance`).
    pub fs_params: Vec<(String, Option<String>)>,
    pub tmpcopyup: bool,
}

/// `rslave` -> (MS_SLAVE, recursive), `private` -> (MS_PRIVATE, not recursive).
fn propagation_option(opt: &str) -> Option<(MsFlags, bool)> {
    let (name, recursive) = match opt.strip_prefix('r') {
        Some(rest) => (rest, true),
        _ => (opt, false),
    };
    super::propagation_flag(name).map(|f| (f, recursive))
}

impl MountOptions {
    pub fn parse(options: &[String]) -> std::result::Result<MountOptions, String> {
        use sys::*;
        let mut o = MountOptions::default();
        for opt in options {
            let (set, clear, recursive): (u64, u64, bool) = match opt.as_str() {
                "bind" => {
                    o.bind = true;
                    continue;
                }
                "rbind" => {
                    o.bind = true;
                    o.recursive_bind = true;
                    continue;
                }
                "ro" => (MOUNT_ATTR_RDONLY, 0, false),
                "rw" => (0, MOUNT_ATTR_RDONLY, false),
                "nosuid" => (MOUNT_ATTR_NOSUID, 0, false),
                "suid" => (0, MOUNT_ATTR_NOSUID, false),
                "nodev" => (MOUNT_ATTR_NODEV, 0, false),
                "dev" => (0, MOUNT_ATTR_NODEV, false),
                "noexec" => (MOUNT_ATTR_NOEXEC, 0, false),
                "exec" => (0, MOUNT_ATTR_NOEXEC, false),
                "nodiratime" => (MOUNT_ATTR_NODIRATIME, 0, false),
                "diratime" => (0, MOUNT_ATTR_NODIRATIME, false),
                "nosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0, false),
                "symfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW, false),
                "noatime" => (MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME, false),
                // "Not relatime" clears relatime, which is the atime field's zero value:
                // the mount keeps its atime mode (a new mount's is relatime). Setting
                // strictatime instead, as a bit-flip reading would, changes behaviour.
                "norelatime" | "rnorelatime" => continue,
                "relatime" | "atime" | "nostrictatime" => {
                    (MOUNT_ATTR_RELATIME, MOUNT_ATTR__ATIME, false)
                }
                "strictatime" => (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME, false),
                "rro" => (MOUNT_ATTR_RDONLY, 0, true),
                "rrw" => (0, MOUNT_ATTR_RDONLY, true),
                "rnosuid" => (MOUNT_ATTR_NOSUID, 0, true),
                "rsuid" => (0, MOUNT_ATTR_NOSUID, true),
                "rnodev" => (MOUNT_ATTR_NODEV, 0, true),
                "rdev" => (0, MOUNT_ATTR_NODEV, true),
                "rnoexec" => (MOUNT_ATTR_NOEXEC, 0, true),
                "rexec" => (0, MOUNT_ATTR_NOEXEC, true),
                "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0, true),
                "rdiratime" => (0, MOUNT_ATTR_NODIRATIME, true),
                "rnoatime" => (MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME, true),
                "rrelatime" | "ratime" | "rnostrictatime" => {
                    (MOUNT_ATTR_RELATIME, MOUNT_ATTR__ATIME, true)
                }
                "rstrictatime" => (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME, true),
                "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0, true),
                "rsymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW, true),
                p if propagation_option(p).is_some() => {
                    o.propagation = propagation_option(p);
                    continue;
                }
                "defaults" | "async" | "loud" | "nomand" | "noiversion" => continue,
                "tmpcopyup" => {
                    o.tmpcopyup = true;
                    continue;
                }
                "idmap" | "ridmap" => {
                    return Err(format!(
                        "option {opt:?} (id-mapped mounts) is not supported"
                    ))
                }
                other => {
                    match other.split_once('=') {
                        Some((k, v)) => o.fs_params.push((k.to_string(), Some(v.to_string()))),
                        None => o.fs_params.push((other.to_string(), None)),
                    }
                    continue;
                }
            };
            if recursive {
                o.rset = (o.rset & !clear) | set;
                o.rclear = (o.rclear & !set) | clear;
            } else {
                o.set = (o.set & !clear) | set;
                o.clear = (o.clear & !set) | clear;
            }
        }
        Ok(o)
    }
}

/// Everything a mount needs besides the rootfs fd.
pub struct MountEnv<'a> {
    pub bundle: &'a Path,
    pub cgroup_sources: &'a [MountSource],
    pub userns: bool,
}

/// Mounts `m` (entry `index` of config.json's `mounts`) inside `root`.
pub fn mount_one(root: BorrowedFd, m: &Mount, index: usize, env: &MountEnv) -> Result<()> {
    let field = |what: &str| format!("mounts[{index}]{what}");
    let dest = m.destination();
    let fail = |what: &str, e: std::io::Error| {
        Error::config(
            field(""),
            format!(
                "mounting {} on {}: {what}: {e}",
                m.typ().as_deref().unwrap_or("bind"),
                dest.display()
            ),
        )
    };
    let opts = MountOptions::parse(m.options().as_deref().unwrap_or(&[]))
        .map_err(|e| Error::config(field(".options"), e))?;
    let typ = m.typ().as_deref().unwrap_or("");
    let is_bind = opts.bind || typ == "bind";

    let mnt = if is_bind {
        let src = m
            .source()
            .as_ref()
            .ok_or_else(|| Error::config(field(".source"), "a bind mount needs a source"))?;
        let src = if src.is_absolute() {
            src.clone()
        } else {
            env.bundle.join(src)
        };
        // O_PATH: opening a FIFO for reading waits for a writer, and opening a device
        // can act on it (a tape rewinds, a watchdog arms); cloning a mount needs neither.
        let src_fd = open_path(&src)
            .map_err(|e| Error::config(field(".source"), format!("{}: {e}", src.display())))?;
        let is_dir = src_fd.metadata().map(|m| m.is_dir()).unwrap_or(false);
        let tree = sys::clone_tree(src_fd.as_fd(), opts.recursive_bind)
            .map_err(|e| fail("cloning the source", e))?;
        let target = resolve::mount_target(root, dest, is_dir)
            .map_err(|e| fail("creating the target", e))?;
        attach(&tree, target.as_fd(), &opts).map_err(|e| fail("attaching", e))?;
        tree
    } else if typ == "cgroup" {
        return mount_cgroups(root, dest, &opts, env).map_err(|e| fail("cgroup hierarchy", e));
    } else {
        if typ.is_empty() {
            return Err(Error::config(
                field(".type"),
                "missing (and options have no bind)",
            ));
        }
        // A rootfs whose /proc or /sys is a symlink would get the kernel's interfaces
        // mounted wherever the image points (the class of CVE-2019-19921): refused.
        if matches!(typ, "proc" | "sysfs")
            && resolve::through_symlink(root, dest).map_err(|e| fail("resolving", e))?
        {
            return Err(Error::config(
                field(".destination"),
                format!(
                    "{} is reached through a symlink in the rootfs: {typ} is never mounted through one",
                    dest.display()
                ),
            ));
        }
        let target =
            resolve::mount_target(root, dest, true).map_err(|e| fail("creating the target", e))?;
        let mnt = match fs_mount(typ, m.source().as_deref(), &opts) {
            Ok(mnt) => mnt,
            // sysfs cannot be mounted in a user namespace that does not own the
            // network namespace: give the container a recursive bind of the host's.
            Err(e) if typ == "sysfs" && env.userns && e.raw_os_error() == Some(libc::EPERM) => {
                let host = open_path(Path::new("/sys")).map_err(|e| fail("opening /sys", e))?;
                sys::clone_tree(host.as_fd(), true).map_err(|e| fail("binding /sys", e))?
            }
            Err(e) => return Err(fail("creating", e)),
        };
        if opts.tmpcopyup {
            super::copyup::copy_up(target.as_fd(), mnt.as_fd())
                .map_err(|e| fail("tmpcopyup", e))?;
        }
        attach(&mnt, target.as_fd(), &opts).map_err(|e| fail("attaching", e))?;
        mnt
    };
    drop(mnt);
    Ok(())
}

pub fn open_path(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(p)
}

/// A new superblock of `fstype`, mounted detached with the options' attributes.
fn fs_mount(fstype: &str, source: Option<&Path>, opts: &MountOptions) -> std::io::Result<OwnedFd> {
    let ctx = FsContext::open(fstype)?;
    if let Some(src) = source.and_then(|s| s.to_str()) {
        // Some filesystems (proc, sysfs) take no source; ignore their refusal.
        let _ = ctx.set("source", Some(src));
    }
    if opts.set & sys::MOUNT_ATTR_RDONLY != 0 {
        ctx.set("ro", None)?;
    }
    for (k, v) in &opts.fs_params {
        if fstype == "devpts" && k == "newinstance" {
            continue; // every devpts from fsopen is a new instance
        }
        ctx.set(k, v.as_deref())?;
    }
    ctx.mount(opts.set | opts.rset)
}

/// Applies the option attributes to a detached mount and attaches it to `target`.
fn attach(mnt: &OwnedFd, target: BorrowedFd, opts: &MountOptions) -> std::io::Result<()> {
    if opts.set | opts.clear != 0 {
        sys::mount_setattr(mnt.as_fd(), false, opts.set, opts.clear, 0)?;
    }
    if opts.rset | opts.rclear != 0 {
        sys::mount_setattr(mnt.as_fd(), true, opts.rset, opts.rclear, 0)?;
    }
    sys::move_mount_to_fd(mnt.as_fd(), target)?;
    if let Some((flag, recursive)) = opts.propagation {
        sys::mount_setattr(mnt.as_fd(), recursive, 0, 0, flag.bits())?;
    }
    Ok(())
}

/// The OCI `cgroup` mount: the container's own cgroups at `dest`. On a pure v2 host
/// the container's cgroup directory itself; otherwise a tmpfs with one directory per
/// hierarchy, each a bind of the container's cgroup directory in that hierarchy.
fn mount_cgroups(
    root: BorrowedFd,
    dest: &Path,
    opts: &MountOptions,
    env: &MountEnv,
) -> std::io::Result<()> {
    let target = resolve::mount_target(root, dest, true)?;
    let sub_opts = MountOptions {
        set: opts.set | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC,
        clear: opts.clear,
        ..Default::default()
    };
    if let [only] = env.cgroup_sources {
        if only.dir.is_empty() {
            // A pure v2 host: the hierarchy itself goes at dest.
            let mnt = cgroup_mount(only)?;
            return attach(&mnt, target.as_fd(), &sub_opts);
        }
    }
    let ctx = FsContext::open("tmpfs")?;
    ctx.set("mode", Some("755"))?;
    let tmpfs =
        ctx.mount(sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC)?;
    sys::move_mount_to_fd(tmpfs.as_fd(), target.as_fd())?;
    let dir = crate::sys::openat2(tmpfs.as_fd(), Path::new("."), libc::O_DIRECTORY, 0, 0)?;
    for src in env.cgroup_sources {
        nix::sys::stat::mkdirat(
            dir.as_fd(),
            src.dir.as_str(),
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        )?;
        let sub = crate::sys::openat2(
            dir.as_fd(),
            Path::new(&src.dir),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        )?;
        let mnt = cgroup_mount(src)?;
        attach(&mnt, sub.as_fd(), &sub_opts)?;
    }
    if opts.set & sys::MOUNT_ATTR_RDONLY != 0 {
        sys::mount_setattr(tmpfs.as_fd(), false, sys::MOUNT_ATTR_RDONLY, 0, 0)?;
    }
    Ok(())
}

/// A bind of the container's own cgroup directory on the host. With a cgroup
/// namespace this shows the same tree a fresh cgroupfs mount would, and it needs
/// nothing of the namespace, so the rootfs can be built while the runtime is still
/// placing the process in its cgroups.
fn cgroup_mount(src: &MountSource) -> std::io::Result<OwnedFd> {
    let fd = open_path(&src.host_path)?;
    sys::clone_tree(fd.as_fd(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(opts: &[&str]) -> MountOptions {
        MountOptions::parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_data_and_propagation_are_sorted_apart() {
        let o = parse(&[
            "nosuid",
            "noexec",
            "mode=755",
            "size=65536k",
            "newinstance",
            "rslave",
        ]);
        assert_eq!(o.set, sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC);
        assert_eq!(
            o.fs_params,
            vec![
                ("mode".into(), Some("755".into())),
                ("size".into(), Some("65536k".into())),
                ("newinstance".into(), None)
            ]
        );
        assert_eq!(o.propagation, Some((MsFlags::MS_SLAVE, true)));
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let o = parse(&["ro", "rw"]);
        assert_eq!(o.set & sys::MOUNT_ATTR_RDONLY, 0);
        assert_ne!(o.clear & sys::MOUNT_ATTR_RDONLY, 0);
    }

    #[test]
    fn recursive_attributes_are_kept_apart() {
        let o = parse(&["rbind", "rro", "rnosuid", "private"]);
        assert!(o.bind && o.recursive_bind);
        assert_eq!(o.rset, sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID);
        assert_eq!(o.set, 0);
        assert_eq!(o.propagation, Some((MsFlags::MS_PRIVATE, false)));
    }

    #[test]
    fn idmap_is_refused() {
        assert!(MountOptions::parse(&["idmap".to_string()]).is_err());
    }
}
