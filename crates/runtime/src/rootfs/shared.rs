//! A container without a mount namespace of its own: it shares the runtime's mounts and
//! only changes its root directory (chroot, as runc does; there is nothing to pivot).
//! Whatever would mount something would mount it in the shared namespace, so every part
//! of the config that mounts is refused by name before anything is made.

use std::os::fd::BorrowedFd;

use oci_spec::runtime::Spec;

use crate::error::{Context, Error, Result};

/// Refuses the parts of `spec` that need a mount namespace of its own.
pub fn check(spec: &Spec) -> Result<()> {
    let needs = |field: &str| {
        Err(Error::config(
            field,
            "needs a mount namespace of its own (linux.namespaces has no \"mount\"): it would change the shared mounts",
        ))
    };
    if spec.mounts().as_ref().is_some_and(|m| !m.is_empty()) {
        return needs("mounts");
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        return needs("root.readonly");
    }
    if spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
    {
        return needs("process.terminal");
    }
    if let Some(l) = spec.linux() {
        if l.masked_paths().as_ref().is_some_and(|p| !p.is_empty()) {
            return needs("linux.maskedPaths");
        }
        if l.readonly_paths().as_ref().is_some_and(|p| !p.is_empty()) {
            return needs("linux.readonlyPaths");
        }
        if l.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return needs("linux.devices");
        }
        if l.rootfs_propagation().is_some() {
            return needs("linux.rootfsPropagation");
        }
    }
    Ok(())
}

/// Changes the root directory to `root` (unless it is the host's `/`). Never a
/// `pivot_root` or `MS_MOVE`: in the shared namespace those would move the host's root.
pub fn chroot_into(root: BorrowedFd, host_root: bool) -> Result<()> {
    nix::unistd::fchdir(root).ctx(|| "entering the rootfs")?;
    if !host_root {
        nix::unistd::chroot(".").ctx(|| "chroot into the rootfs")?;
    }
    nix::unistd::chdir("/").ctx(|| "chdir /")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> Spec {
        let mut base =
            serde_json::json!({"ociVersion": "1.2.0", "root": {"path": "rootfs"}, "mounts": []});
        if let (Some(b), Some(extra)) = (base.as_object_mut(), v.as_object()) {
            b.extend(extra.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn each_mounting_part_is_refused_by_name() {
        assert!(check(&spec(serde_json::json!({}))).is_ok());
        for (extra, field) in [
            (
                serde_json::json!({"mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]}),
                "mounts",
            ),
            (
                serde_json::json!({"root": {"path": "rootfs", "readonly": true}}),
                "root.readonly",
            ),
            (
                serde_json::json!({"linux": {"maskedPaths": ["/proc/kcore"]}}),
                "linux.maskedPaths",
            ),
            (
                serde_json::json!({"linux": {"readonlyPaths": ["/proc/sys"]}}),
                "linux.readonlyPaths",
            ),
            (
                serde_json::json!({"linux": {"rootfsPropagation": "private"}}),
                "linux.rootfsPropagation",
            ),
        ] {
            let err = check(&spec(extra)).unwrap_err().to_string();
            assert!(
                err.contains(field) && err.contains("mount namespace"),
                "{err}"
            );
        }
    }
}
