//! `cp` and `export` as engine calls: the container's merged rootfs, mounted for the
//! call when the container does not run, under the rootfs lock.

use std::path::Path;

use super::volumes::Place;
use crate::config::ContainerConfig;
use crate::engine::{Engine, ROOTFS_DIR};
use crate::error::{Context, Error, Result};
use crate::registry::ContainerStatus;

/// Which way `cp` goes.
#[derive(Clone, Copy)]
pub enum CopyDirection<'a> {
    /// From the container's path to a host path.
    Out { from: &'a Path, to: &'a Path },
    /// From a host path to the container's path.
    In { from: &'a Path, to: &'a Path },
}

impl Engine {
    /// `cp` into or out of a container's root filesystem (mounted for the copy when
    /// the container is not running), or of one of its volumes when the path is inside
    /// one (see `copy::volumes`). Paths inside the container never resolve out of it,
    /// nor out of the volume they are in.
    pub fn copy(&self, reference: &str, direction: CopyDirection) -> Result<()> {
        let rec = self.get(reference)?;
        let cfg: ContainerConfig = serde_json::from_value(rec.config.clone()).unwrap_or_default();
        let inside = match direction {
            CopyDirection::Out { from, .. } => from,
            CopyDirection::In { to, .. } => to,
        };
        let root = self.root().to_path_buf();
        let place = super::volumes::place(&cfg, inside, &|n| crate::volume::data_dir(&root, n))?;
        if let Place::Volume {
            root,
            rest,
            readonly,
        } = place
        {
            let rest = Path::new("/").join(rest);
            return match direction {
                CopyDirection::Out { to, .. } => super::copy_out(&root, &rest, to),
                CopyDirection::In { .. } if readonly => Err(Error::invalid(
                    "path",
                    format!("{} is in a read-only volume", inside.display()),
                )),
                CopyDirection::In { from, .. } => super::copy_in(&root, from, &rest),
            };
        }
        self.with_rootfs(&rec.id, |root| match direction {
            CopyDirection::Out { from, to } => super::copy_out(root, from, to),
            CopyDirection::In { from, to } => super::copy_in(root, from, to),
        })
    }

    /// Runs `f` on the container's merged rootfs: the live one while it runs, else
    /// mounted for the call and unmounted after. Minimal containers have none.
    pub(crate) fn with_rootfs<T>(
        &self,
        reference: &str,
        f: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<T> {
        let rec = self.get(reference)?;
        let dir = self.container_dir(&rec.id)?;
        if !dir.join("lowers").exists() {
            return Err(Error::invalid(
                "container",
                format!(
                    "{} uses the host's filesystem (minimal isolation): work on the host",
                    rec.name
                ),
            ));
        }
        // Under the rootfs lock the state cannot change between the look and the work:
        // a start waits to mount, a supervisor waits to unmount.
        // (`registry.get`, not `get`: a refresh could unmount, which takes the lock.)
        let _lock = crate::supervisor::lock_rootfs(&dir)?;
        let rec = self.registry().get(&rec.id)?;
        let running = matches!(
            rec.status,
            ContainerStatus::Running | ContainerStatus::Paused
        );
        if running {
            // Mounted in its supervisor's mount namespace only (supervisor/mountns.rs).
            let live = self.live_rootfs(&rec, &dir)?;
            return f(&live.path());
        }
        crate::supervisor::mount_rootfs_locked(&dir)?;
        let res = f(&dir.join(ROOTFS_DIR));
        crate::supervisor::unmount_rootfs_locked(&dir);
        res
    }

    /// A running container's merged rootfs, held open from its supervisor's mount
    /// namespace.
    pub(crate) fn live_rootfs(
        &self,
        rec: &crate::registry::ContainerRecord,
        dir: &Path,
    ) -> Result<crate::supervisor::LiveRootfs> {
        let supervisor = rec.live_supervisor().ok_or_else(|| {
            Error::invalid(
                "container",
                format!(
                    "{}: its supervisor is gone; its rootfs is no longer mounted",
                    rec.name
                ),
            )
        })?;
        crate::supervisor::LiveRootfs::open(supervisor, dir, &rec.name)
    }

    /// The container's state as JSON (`export`), or with `rootfs_tar` a tar of its
    /// filesystem written to `out`.
    pub fn export(
        &self,
        reference: &str,
        rootfs_tar: bool,
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        let rec = self.get(reference)?;
        if !rootfs_tar {
            let v = self.inspect(&rec.id)?;
            let text = serde_json::to_vec_pretty(&v)
                .map_err(|e| Error::invalid("record", e.to_string()))?;
            return out.write_all(&text).ctx(|| "writing the export");
        }
        self.with_rootfs(&rec.id, |root| super::export_rootfs(root, out))
    }
}
