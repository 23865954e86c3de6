//! Named volumes: directories the engine owns under `volumes/<name>/_data`, recorded in
//! `registry.json` so that they outlive containers. A volume a container names is
//! created on the container's creation; an anonymous one (`-v /data`) gets a random
//! name, is marked `anonymous`, and goes with its container on `rm -v` or `--rm`
//! (Docker's rule: named volumes are removed only by `volume rm`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{valid_name, ContainerConfig, VolumeSource};
use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::registry::{ContainerRecord, Index, Registry};

/// One volume's record in `registry.json`'s `volumes` map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// Made for one container (`-v /path`); removed with it by `rm -v`.
    #[serde(default)]
    pub anonymous: bool,
}

/// A volume with where its data lives, as `volume ls` / `inspect` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeInfo {
    #[serde(flatten)]
    pub record: VolumeRecord,
    pub mountpoint: PathBuf,
    /// Names of the containers that mount it.
    pub used_by: Vec<String>,
}

pub fn volumes_dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

pub fn data_dir(root: &Path, name: &str) -> PathBuf {
    volumes_dir(root).join(name).join("_data")
}

fn check_name(name: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(Error::invalid(
            "volume",
            format!("{name:?}: use letters, digits, _ . - (first a letter or digit), up to 128"),
        ))
    }
}

/// Creates the volume if it does not exist; returns its record. Under the registry lock,
/// so a concurrent `volume rm` of the same name comes wholly before or after.
pub fn ensure(registry: &Registry, name: &str, anonymous: bool) -> Result<VolumeRecord> {
    registry.update(|idx| ensure_in(registry.root(), idx, name, anonymous))
}

/// [`ensure`] on an index the caller holds under the lock (a container's create): its
/// directory first, then the record, so a crash leaves at worst an unrecorded empty
/// directory that the next create adopts.
pub(crate) fn ensure_in(
    root: &Path,
    idx: &mut Index,
    name: &str,
    anonymous: bool,
) -> Result<VolumeRecord> {
    check_name(name)?;
    let dir = data_dir(root, name);
    crate::registry::ensure_shared_dir(&volumes_dir(root))?;
    sweep(root, idx)?;
    crate::registry::ensure_shared_dir(&volumes_dir(root).join(name))?;
    std::fs::create_dir_all(&dir).ctx(|| format!("creating volume {name} at {}", dir.display()))?;
    if let Some(v) = idx.volumes.get(name) {
        if let Ok(rec) = serde_json::from_value::<VolumeRecord>(v.clone()) {
            return Ok(rec);
        }
    }
    let rec = VolumeRecord {
        name: name.to_string(),
        created: codex_runtime::state::now_rfc3339(),
        anonymous,
    };
    idx.volumes.insert(
        name.to_string(),
        serde_json::to_value(&rec).map_err(|e| Error::invalid("volume", e.to_string()))?,
    );
    Ok(rec)
}

/// A new volume made for a `strict` container belongs to that container's root (the
/// host uid its user namespace maps 0 to), or the container could not write to it.
/// Only a new one: an existing volume keeps its owner (a volume first used by a
/// `standard` container stays the host root's, readable but not writable under
/// `strict`; docs/engine.md).
pub(crate) fn give_to_mapped_root(root: &Path, name: &str) -> Result<()> {
    let dir = data_dir(root, name);
    let id = crate::profile::STRICT_ID_BASE;
    std::os::unix::fs::lchown(&dir, Some(id), Some(id))
        .ctx(|| format!("giving volume {name} to the strict container's root"))
}

/// Every recorded volume.
pub fn list(registry: &Registry) -> Result<Vec<VolumeRecord>> {
    let idx = registry.index()?;
    idx.volumes
        .iter()
        .map(|(name, v)| {
            serde_json::from_value(v.clone()).map_err(|e| Error::Corrupt {
                path: registry.index_path(),
                reason: format!("volumes.{name}: {e}"),
            })
        })
        .collect()
}

/// Removes a volume's record and its data; refused while a container (running or not)
/// mounts it. The users are counted, the record removed and the data moved aside in one
/// hold of the registry lock: a container created meanwhile is either counted or comes
/// after (and then gets a new, empty volume), and never finds its data being deleted.
pub fn remove(registry: &Registry, name: &str) -> Result<()> {
    check_name(name)?;
    let root = registry.root().to_path_buf();
    let trash = volumes_dir(&root).join(format!(
        "{TRASH_PREFIX}{name}-{}",
        crate::registry::new_volume_name()?
    ));
    let mut claim = None;
    let moved = registry.update_then(
        |idx| {
            sweep(&root, idx)?;
            let users = users(registry, name)?;
            crate::testhook::pause("volume-rm");
            if !users.is_empty() {
                return Err(Error::InUse {
                    kind: "volume",
                    name: name.to_string(),
                    by: format!("container {}", users.join(", ")),
                });
            }
            if !idx.volumes.contains_key(name) {
                return Err(Error::NotFound {
                    kind: "volume",
                    name: name.to_string(),
                });
            }
            crate::testhook::die("volume-rm-counted");
            // Durable before the record goes: the sweep deletes an unrecorded volume
            // dir only with this mark, never one whose record was lost some other way.
            let vol = volumes_dir(&root).join(name);
            if vol.is_dir() {
                codex_sys::write_atomic(&vol.join(REMOVING_MARK), b"")
                    .ctx(|| format!("marking {} for removal", vol.display()))?;
            }
            crate::testhook::die("volume-rm-marked");
            idx.volumes.remove(name);
            Ok(())
        },
        |()| {
            crate::testhook::die("volume-rm-recorded");
            let dir = volumes_dir(&root).join(name);
            match std::fs::rename(&dir, &trash) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                r => r.ctx(|| format!("moving {} aside for removal", dir.display()))?,
            }
            // Held until the data is gone: a sweep (under the registry lock, like this
            // claim) tells a live removal from the leftovers of a killed one.
            claim = codex_sys::FileLock::try_exclusive_dir(&trash)
                .ctx(|| format!("locking {}", trash.display()))?;
            crate::testhook::die("volume-rm-moved");
            Ok(())
        },
    );
    if moved.is_err() {
        // The record stays: so does the volume, unmarked.
        let _ = std::fs::remove_file(volumes_dir(&root).join(name).join(REMOVING_MARK));
    }
    moved?;
    remove_trash(&trash)?;
    drop(claim);
    Ok(())
}

/// Volume dirs being removed are renamed to this prefix first (`.removing-NAME-RANDOM`).
const TRASH_PREFIX: &str = ".removing-";

/// Beside `_data` in a volume dir whose record `volume rm` is about to drop.
const REMOVING_MARK: &str = ".removing";

fn remove_trash(trash: &Path) -> Result<()> {
    std::fs::remove_dir_all(trash).or_else(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(e).ctx(|| format!("removing {}", trash.display()))
        }
    })
}

/// Finishes what a killed `volume rm` left, under the registry lock (`idx` is the index
/// as the caller holds it): the data of a volume marked for removal whose record is gone
/// (rm died after dropping the record), and `.removing-*` dirs whose remover is gone (rm
/// died while deleting). Without it, a new volume of the same name adopted the old data.
pub(crate) fn sweep(root: &Path, idx: &Index) -> Result<()> {
    let dir = volumes_dir(root);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with(TRASH_PREFIX) {
            // A live remover holds the lock; a lock we get is a dead remover's.
            if let Ok(Some(_claim)) = codex_sys::FileLock::try_exclusive_dir(&path) {
                remove_trash(&path)?;
            }
        } else if valid_name(&name)
            && !idx.volumes.contains_key(&name)
            && path.join(REMOVING_MARK).exists()
        {
            // Marked and unrecorded: an rm died after dropping the record. (An unmarked
            // unrecorded dir, a killed create's, stays for the next create to adopt: it
            // is empty; and a registry.json lost or replaced must not cost any data.)
            remove_trash(&path)?;
        }
    }
    Ok(())
}

/// Names of the containers whose config mounts volume `name`.
pub fn users(registry: &Registry, name: &str) -> Result<Vec<String>> {
    Ok(users_in(&registry.list()?, name))
}

/// [`users`] among records already read.
pub fn users_in(recs: &[ContainerRecord], name: &str) -> Vec<String> {
    recs.iter()
        .filter(|r| {
            serde_json::from_value::<ContainerConfig>(r.config.clone())
                .map(|c| c.volumes.iter().any(|v| is_named(&v.source, name)))
                .unwrap_or(false)
        })
        .map(|r| r.name.clone())
        .collect()
}

fn is_named(source: &VolumeSource, name: &str) -> bool {
    matches!(source, VolumeSource::Named { name: n } if n == name)
}

/// Removes the anonymous volumes of a removed container's `config` that no other
/// container mounts (`rm -v`, `--rm`).
pub fn remove_anonymous(registry: &Registry, config: &ContainerConfig) -> Result<()> {
    for v in config.volumes.iter().filter(|v| v.anonymous) {
        if let VolumeSource::Named { name } = &v.source {
            match remove(registry, name) {
                Ok(()) | Err(Error::InUse { .. } | Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The volume half of the engine's API.
impl Engine {
    /// Creates a named volume (or returns the one of that name).
    pub fn create_volume(&self, name: &str) -> Result<VolumeRecord> {
        ensure(self.registry(), name, false)
    }

    /// Every volume, where its data is, and who mounts it.
    pub fn volumes(&self) -> Result<Vec<VolumeInfo>> {
        let recs = self.registry().list()?;
        Ok(list(self.registry())?
            .into_iter()
            .map(|record| VolumeInfo {
                mountpoint: data_dir(self.root(), &record.name),
                used_by: users_in(&recs, &record.name),
                record,
            })
            .collect())
    }

    pub fn inspect_volume(&self, name: &str) -> Result<VolumeInfo> {
        self.volumes()?
            .into_iter()
            .find(|v| v.record.name == name)
            .ok_or_else(|| Error::NotFound {
                kind: "volume",
                name: name.to_string(),
            })
    }

    /// Removes a volume and its data; refused while a container (running or not)
    /// mounts it.
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        remove(self.registry(), name)
    }

    /// Removes every volume no container mounts; returns their names.
    pub fn prune_volumes(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for v in self.volumes()? {
            if v.used_by.is_empty() {
                match remove(self.registry(), &v.record.name) {
                    Ok(()) => removed.push(v.record.name),
                    // Mounted by a container created since the listing.
                    Err(Error::InUse { .. } | Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }
}
