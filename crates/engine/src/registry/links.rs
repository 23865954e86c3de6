//! `<root>/names/`: the container names, one symlink per name whose target is the id
//! (`names/web -> 3f2a…`). Resolving a name is one `readlink`, checking a full id is one
//! record read and one `readlink`: both O(1) in the number of containers, where reading
//! the whole `registry.json` index grew with it (1.7× slower `inspect` among 1000).
//!
//! The links are the truth about which containers exist: a container is *committed* when
//! the link of its record's name points to its id. Creating the link (`symlink(2)`, which
//! fails with `EEXIST` on a taken name) is a create's commit point, unlinking it an rm's.
//! Every change happens under the registry lock, and the directory is fsynced after it.
//! Nothing here follows a link: the target is only read as a string and checked to be an
//! id before it becomes part of a path.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use crate::error::{Context, Error, Result};

use super::files::{self, sync_dir};
use super::index::Index;
use super::names::{is_full_id, validate_name};
use super::record::ContainerRecord;
use super::{Registry, INDEX_VERSION};

/// The directory of name links, in the root.
pub const NAMES_DIR: &str = "names";
/// Where a migration from a version 1 index builds the links before renaming them in.
const NAMES_NEW: &str = ".names.new";

impl Registry {
    /// `<root>/names`.
    pub fn names_dir(&self) -> PathBuf {
        self.root().join(NAMES_DIR)
    }

    /// The id the link of `name` points to; `None` if there is no such name. A name that
    /// could not be a container name never is one (and never becomes a path).
    pub(crate) fn link_of(&self, name: &str) -> Result<Option<String>> {
        if validate_name(name).is_err() {
            return Ok(None);
        }
        let path = self.names_dir().join(name);
        match fs::read_link(&path) {
            Ok(target) => match target.to_str() {
                Some(id) if is_full_id(id) => Ok(Some(id.to_string())),
                _ => Err(Error::Corrupt {
                    path,
                    reason: format!("points to {}, not a container id", target.display()),
                }),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx(|| format!("reading {}", path.display())),
        }
    }

    /// True if `record` is a committed container: its name's link points to its id.
    pub(crate) fn is_committed(&self, record: &ContainerRecord) -> Result<bool> {
        Ok(self.link_of(&record.name)?.as_deref() == Some(record.id.as_str()))
    }

    /// Links `name` to `id` (under the lock); `Ok(false)` if the name is taken. Not
    /// synced: call [`Registry::sync_names`] once the change is complete.
    pub(crate) fn add_link(&self, name: &str, id: &str) -> Result<bool> {
        validate_name(name)?;
        let path = self.names_dir().join(name);
        match symlink(id, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e).ctx(|| format!("creating {}", path.display())),
        }
    }

    /// Removes the link of `name` (under the lock); a missing one is fine.
    pub(crate) fn remove_link(&self, name: &str) -> Result<()> {
        let path = self.names_dir().join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                Err(e).ctx(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// Makes the link changes durable.
    pub(crate) fn sync_names(&self) -> Result<()> {
        let dir = self.names_dir();
        sync_dir(&dir).ctx(|| format!("syncing {}", dir.display()))
    }

    /// Every container name and the id its link points to: one listing of `names/` and
    /// one `readlink` per name, O(N) (for `ps`, `system check`, reconcile). An entry that
    /// is not a link to an id is left out (reconcile reports it).
    pub fn container_names(&self) -> Result<BTreeMap<String, String>> {
        let dir = self.names_dir();
        let entries = fs::read_dir(&dir).ctx(|| format!("reading {}", dir.display()))?;
        let mut out = BTreeMap::new();
        for entry in entries {
            let entry = entry.ctx(|| format!("reading {}", dir.display()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            // Removed since the listing: the container is gone.
            if let Ok(Some(id)) = self.link_of(&name) {
                out.insert(name, id);
            }
        }
        Ok(out)
    }

    /// The entries of `names/` that are not links to an id (for reconcile to report).
    pub(crate) fn stray_names(&self) -> Result<Vec<PathBuf>> {
        let dir = self.names_dir();
        let entries = fs::read_dir(&dir).ctx(|| format!("reading {}", dir.display()))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let ok = entry
                .file_name()
                .to_str()
                .is_some_and(|n| matches!(self.link_of(n), Ok(Some(_))));
            if !ok {
                out.push(entry.path());
            }
        }
        Ok(out)
    }

    /// Creates `names/` on a root that has none, under the lock: empty on a new root; from
    /// a version 1 index's `containers` map otherwise (built aside, synced, renamed in,
    /// and only then the map dropped from `registry.json`: a crash anywhere leaves either
    /// the old layout or the new one, and an index whose map is then ignored).
    pub(crate) fn ensure_names(&self) -> Result<()> {
        let dir = self.names_dir();
        if dir.is_dir() {
            return Ok(());
        }
        let staging = self.root().join(NAMES_NEW);
        files::remove_tree(&staging)?;
        files::create_dir(&staging, 0o700).ctx(|| format!("creating {}", staging.display()))?;
        let raw = self.read_index_file()?;
        let old: BTreeMap<String, String> = raw
            .as_ref()
            .map(|i| i.containers.clone())
            .unwrap_or_default();
        for (name, id) in &old {
            validate_name(name)?;
            if !is_full_id(id) {
                return Err(Error::Corrupt {
                    path: self.index_path(),
                    reason: format!("containers.{name}: {id:?} is not a container id"),
                });
            }
            let path = staging.join(name);
            symlink(id, &path).ctx(|| format!("creating {}", path.display()))?;
        }
        sync_dir(&staging).ctx(|| format!("syncing {}", staging.display()))?;
        fs::rename(&staging, &dir)
            .ctx(|| format!("renaming {} to {}", staging.display(), dir.display()))?;
        sync_dir(self.root()).ctx(|| format!("syncing {}", self.root().display()))?;
        if let Some(mut index) = raw.filter(|i| !i.containers.is_empty()) {
            index.containers.clear();
            index.version = INDEX_VERSION;
            self.save_index(&index)?;
        }
        Ok(())
    }

    /// Drops `index`'s version 1 `containers` map: once `names/` exists it is stale.
    pub(crate) fn without_old_names(mut index: Index) -> Index {
        index.containers.clear();
        index
    }
}
