//! `system df`: what images, containers and volumes take on disk, and how much of it
//! nothing uses. Sizes are apparent sizes (file lengths), as Docker reports them;
//! an image's size is its layers', so images that share layers count them each.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::config::{ContainerConfig, VolumeSource};
use crate::engine::{is_live, Engine};
use crate::error::Result;

/// One line of `system df`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// `Images`, `Containers` or `Local Volumes`.
    pub kind: &'static str,
    pub total: usize,
    /// Used by a container (images, volumes) or running (containers).
    pub active: usize,
    pub size: u64,
    /// What removing every unused one would free.
    pub reclaimable: u64,
}

impl Engine {
    pub fn disk_usage(&self) -> Result<Vec<UsageRow>> {
        let recs = self.list()?;
        let configs: Vec<ContainerConfig> = recs
            .iter()
            .map(|r| serde_json::from_value(r.config.clone()).unwrap_or_default())
            .collect();
        let images = self.images()?.list()?;
        let used = |id: &str| configs.iter().any(|c| c.image.as_deref() == Some(id));
        let image_row = UsageRow {
            kind: "Images",
            total: images.len(),
            active: images.iter().filter(|i| used(&i.id)).count(),
            size: images.iter().map(|i| i.size).sum(),
            reclaimable: images.iter().filter(|i| !used(&i.id)).map(|i| i.size).sum(),
        };
        let mut containers = UsageRow {
            kind: "Containers",
            total: recs.len(),
            active: 0,
            size: 0,
            reclaimable: 0,
        };
        for r in &recs {
            let upper = self.container_dir(&r.id)?.join("upper");
            let size = apparent_size(&upper);
            containers.size += size;
            if is_live(r.status) {
                containers.active += 1;
            } else {
                containers.reclaimable += size;
            }
        }
        let mut volumes = UsageRow {
            kind: "Local Volumes",
            total: 0,
            active: 0,
            size: 0,
            reclaimable: 0,
        };
        for v in self.volumes()? {
            let size = apparent_size(&v.mountpoint);
            let mounted = configs.iter().any(|c| {
                c.volumes.iter().any(
                    |m| matches!(&m.source, VolumeSource::Named { name } if *name == v.record.name),
                )
            });
            volumes.total += 1;
            volumes.size += size;
            if mounted {
                volumes.active += 1;
            } else {
                volumes.reclaimable += size;
            }
        }
        Ok(vec![image_row, containers, volumes])
    }
}

/// The bytes of the regular files under `dir`, walked without following symlinks and
/// without crossing into other filesystems (a mount a container left).
pub fn apparent_size(dir: &Path) -> u64 {
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let dev = top.dev();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() && m.dev() == dev {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_file_lengths_and_symlinks_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::write(d.path().join("sub/b"), vec![0u8; 24]).unwrap();
        std::os::unix::fs::symlink("/usr", d.path().join("out")).unwrap();
        assert_eq!(apparent_size(d.path()), 1024);
        assert_eq!(apparent_size(&d.path().join("nothing")), 0);
    }
}
