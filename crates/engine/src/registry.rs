//! The persistent registry: `<root>/names/<name>` (one symlink per container name, whose
//! target is the id: see `links`), `<root>/registry.json` (the index of volumes and
//! networks) and `<root>/containers/<id>/state.json` (one container's record), as
//! DESIGN.md ("State") lays them out.
//!
//! Every change is a transaction under an exclusive `flock` on `<root>/registry.lock`: the
//! files are re-read inside the lock, changed, and written atomically (temp file, fsync,
//! rename, fsync dir), so concurrent CLIs and supervisors never lose an update. The lock is
//! held only for reading and writing these files, never while waiting for anything else.
//! Readers (`get`, `list`, `index`) take no lock: an atomic rename shows them the old file
//! or the new one.
//!
//! Creating a container writes, in order, `containers/<id>/` then its `state.json` then
//! its name's link (the commit point); removing one unlinks the name, renames
//! `containers/<id>` to `containers/.removing-<id>`, and deletes the renamed tree after
//! the lock is released. A crash between any two steps leaves a state that
//! [`Registry::reconcile`] recognises and repairs. Neither touches `registry.json` (unless
//! the create makes volumes): a create or an rm costs the same among 1 or 1000 containers.
//!
//! The files' schema is versioned in `runtime-state/` at the top of the repository.

mod files;
mod index;
mod intent;
mod links;
mod lookup;
mod names;
mod reconcile;
mod record;
mod rename;
mod trash;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use codex_sys::ProcessId;

use crate::error::{Context, Error, Result};

pub use index::{Index, INDEX_VERSION};
pub(crate) use intent::boot_id;
pub use intent::{Due, Intent, INTENTS_DIR, RECONCILED_FILE};
pub use links::NAMES_DIR;
pub use names::{is_full_id, validate_name, ID_LEN, NAME_MAX};
pub use reconcile::{Problem, Reconciled, Repair};
pub use record::{ContainerRecord, ContainerStatus, RECORD_VERSION};
pub use trash::Trash;

/// How the registry reads its versioned files, for the fuzz target in `fuzz/`.
#[doc(hidden)]
pub use files::parse_versioned;

/// A random name for an anonymous volume (64 hex characters, like an id).
pub fn new_volume_name() -> Result<String> {
    names::new_id()
}

use files::{
    mount_points, mounts_under, read_versioned, remove_tree, sync_dir, to_json, write_atomic,
};

/// The environment variable that names the root (`--root` overrides it).
pub const ROOT_ENV: &str = "CODEX_CTR_ROOT";
/// The root when neither `--root` nor `CODEX_CTR_ROOT` names one.
pub const DEFAULT_ROOT: &str = "/var/lib/codex-ctr";
/// The index, in the root.
pub const INDEX_FILE: &str = "registry.json";
/// The file whose `flock` serialises every change, in the root.
pub const LOCK_FILE: &str = "registry.lock";
/// The directory of per-container directories, in the root.
pub const CONTAINERS_DIR: &str = "containers";
/// A container's record, in its directory.
pub const STATE_FILE: &str = "state.json";
/// A container directory being deleted is first renamed to `.removing-<id>`.
pub(crate) const REMOVING_PREFIX: &str = ".removing-";

/// The root, `containers/`, `volumes/` and each volume's directory: owner root, group
/// [`SHARED_DIR_GID`], 0710. Other host users cannot enter them at all, so nothing a
/// container or an image leaves below (a setuid binary, a world-writable dir) is within
/// their reach (Docker keeps its root 0710 for the same reason). A `strict` container's
/// root is that gid on the host and sets up its mounts from inside its user namespace:
/// the group bit lets it pass through to its rootfs and volumes, never list them.
pub const SHARED_DIR_MODE: u32 = 0o710;
/// The host gid of a `strict` container's root (see [`SHARED_DIR_MODE`]).
pub const SHARED_DIR_GID: u32 = crate::profile::STRICT_ID_BASE;
/// A container's own directory: private; a `strict` one gets [`SHARED_DIR_MODE`].
const CONTAINER_DIR_MODE: u32 = 0o700;

/// Gives `dir` (created if missing) the owner, group and mode of [`SHARED_DIR_MODE`].
pub fn ensure_shared_dir(dir: &Path) -> Result<()> {
    files::ensure_shared_dir(dir, SHARED_DIR_MODE, SHARED_DIR_GID)
        .ctx(|| format!("securing directory {}", dir.display()))
}

/// `$CODEX_CTR_ROOT` if set and non-empty, else `/var/lib/codex-ctr`.
pub fn default_root() -> PathBuf {
    match std::env::var_os(ROOT_ENV) {
        Some(root) if !root.is_empty() => PathBuf::from(root),
        _ => PathBuf::from(DEFAULT_ROOT),
    }
}

/// How a new container is kept ([`Registry::create_container_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keeping {
    /// Written durably (fsync): it stays until it is removed.
    #[default]
    Durable,
    /// Made by `run --rm`: written without fsync ([`ContainerRecord::ephemeral`]).
    /// `remover` is the attached command that removes it at its end, when one does
    /// ([`ContainerRecord::remover_pid`]).
    Ephemeral { remover: Option<ProcessId> },
}

/// A handle on one root. Cheap to clone; safe to share between threads and to use from
/// many processes at once.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
}

impl Registry {
    /// Opens the registry at `root`, creating the layout on first use: the root and
    /// `containers/` ([`SHARED_DIR_MODE`]), an empty `registry.json` (0600) and
    /// `registry.lock` (0600). A root an earlier version made with wider modes is closed.
    /// It does not reconcile: call [`Registry::reconcile`] for that.
    pub fn open(root: &Path) -> Result<Registry> {
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            files::create_dir_all(parent, 0o755)
                .ctx(|| format!("creating {}", parent.display()))?;
        }
        files::ensure_root_dir(root, SHARED_DIR_MODE, SHARED_DIR_GID)
            .ctx(|| format!("securing directory {}", root.display()))?;
        let root = root
            .canonicalize()
            .ctx(|| format!("resolving {}", root.display()))?;
        let reg = Registry { root };
        let containers = reg.containers_dir();
        if reg.index_path().is_file() && containers.is_dir() && reg.names_dir().is_dir() {
            ensure_shared_dir(&containers)?;
            return Ok(reg);
        }
        let _lock = reg.lock()?;
        ensure_shared_dir(&containers)?;
        if !reg.index_path().exists() {
            let index = reg.index_when_missing()?;
            reg.save_index(&index)?;
        }
        reg.ensure_names()?;
        Ok(reg)
    }

    /// The root directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/registry.json`.
    pub fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    /// `<root>/containers`.
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join(CONTAINERS_DIR)
    }

    /// `<root>/containers/<id>`, for a valid full id (ids are checked before they become
    /// paths). The directory may not exist.
    pub fn container_dir(&self, id: &str) -> Result<PathBuf> {
        if !is_full_id(id) {
            return Err(Error::invalid(
                "id",
                format!("{id:?} is not a container id (64 lowercase hex characters)"),
            ));
        }
        Ok(self.containers_dir().join(id))
    }

    /// A snapshot of the index, read without the lock.
    pub fn index(&self) -> Result<Index> {
        match self.read_index_file()? {
            Some(index) => Ok(Self::without_old_names(index)),
            None => self.index_when_missing(),
        }
    }

    /// `registry.json` as it is on disk (a version 1 file still has its container names).
    fn read_index_file(&self) -> Result<Option<Index>> {
        read_versioned::<Index>(&self.index_path(), INDEX_VERSION)
    }

    /// Runs `f` on the index under the lock, after re-reading it, and writes the index
    /// atomically if `f` changed it. If `f` fails, nothing is written. Container names
    /// live in `names/` and change only through the container operations below: an `f`
    /// that puts them back into the index is refused.
    ///
    /// `f` runs under the lock: it must be quick, must not wait for anything (a process, a
    /// socket, another lock) and must not call back into the registry, which would wait for
    /// the lock it holds.
    pub fn update<T>(&self, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        self.update_then(f, |_| Ok(()))
    }

    /// [`Registry::update`], then `after(&out)` once the index is saved, still under the
    /// lock: for a file change that must follow the index change with no other writer
    /// in between (a volume's data moved aside only once its record is gone).
    pub fn update_then<T>(
        &self,
        f: impl FnOnce(&mut Index) -> Result<T>,
        after: impl FnOnce(&T) -> Result<()>,
    ) -> Result<T> {
        let _lock = self.lock()?;
        let mut index = self.index()?;
        let before = index.clone();
        let out = f(&mut index)?;
        if index.containers != before.containers {
            return Err(Error::invalid(
                "containers",
                "container names change only through the registry's container operations",
            ));
        }
        if index != before {
            index.version = INDEX_VERSION;
            self.save_index(&index)?;
        }
        after(&out)?;
        Ok(out)
    }

    /// Creates a container record in state `created` with a fresh id, and `name` (or a
    /// generated `adjective_noun` one). `config` must be a JSON object. A name in use gives
    /// `Error::NameInUse` and leaves nothing behind.
    pub fn create_container(
        &self,
        name: Option<&str>,
        config: serde_json::Value,
        labels: BTreeMap<String, String>,
    ) -> Result<ContainerRecord> {
        self.create_container_with(name, config, labels, Keeping::Durable, |_, _, _| Ok(()))
    }

    /// [`Registry::create_container`], with `prepare(record, dir, index)` run on the new
    /// container directory before the record and the index are written (it may add to
    /// the record): under the lock,
    /// so it must be quick (write files, make directories) and must not call back into
    /// the registry. What it changes in `index` (volumes the container makes) is saved
    /// with the container's entry, or not at all.
    /// If it fails, or the process dies while it runs, the container never existed (the
    /// next [`Registry::reconcile`] removes a directory left without `state.json`).
    /// An ephemeral container (`run --rm`, see [`Keeping`]) is written without fsync, now
    /// and in every later update (see [`ContainerRecord::ephemeral`]); `prepare` should
    /// write its own files the same way.
    pub fn create_container_with(
        &self,
        name: Option<&str>,
        config: serde_json::Value,
        labels: BTreeMap<String, String>,
        keeping: Keeping,
        prepare: impl FnOnce(&mut ContainerRecord, &Path, &mut Index) -> Result<()>,
    ) -> Result<ContainerRecord> {
        if let Some(name) = name {
            validate_name(name)?;
        }
        if !config.is_object() {
            return Err(Error::invalid("config", "must be a JSON object"));
        }
        let _lock = self.lock()?;
        // Dropped (its file gone) before the lock: see `intent`.
        let _intent = self.intent("create")?;
        let in_use = |name: &str| Error::NameInUse {
            kind: "container",
            name: name.into(),
        };
        let name = match name {
            Some(name) if self.link_of(name)?.is_some() => return Err(in_use(name)),
            Some(name) => name.to_string(),
            // An unreadable link counts as taken.
            None => names::generate_name(|n| !matches!(self.link_of(n), Ok(None)))?,
        };
        let (id, dir) = self.new_container_dir()?;
        let mut record = ContainerRecord::new(id, name, config, labels);
        let ephemeral = keeping != Keeping::Durable;
        record.ephemeral_boot = ephemeral.then(intent::boot_id);
        if let Keeping::Ephemeral {
            remover: Some(remover),
        } = keeping
        {
            record.remover_pid = Some(remover.pid);
            record.remover_start = Some(remover.start_time);
        }
        let mut linked = false;
        let committed = (|| {
            let mut index = self.index()?;
            let before = index.clone();
            prepare(&mut record, &dir, &mut index)?;
            let state = dir.join(STATE_FILE);
            if ephemeral {
                files::write_unsynced(&state, &to_json(&record, &state)?)?;
            } else {
                write_atomic(&state, &to_json(&record, &state)?)?;
                let containers = self.containers_dir();
                sync_dir(&containers).ctx(|| format!("syncing {}", containers.display()))?;
            }
            // Only what `prepare` made (volumes): most creates leave the index alone.
            if index != before {
                index.version = INDEX_VERSION;
                self.save_index(&index)?;
            }
            // The commit point: from here on the container exists.
            linked = self.add_link(&record.name, &record.id)?;
            if !linked {
                return Err(in_use(&record.name));
            }
            if ephemeral {
                return Ok(());
            }
            self.sync_names()
        })();
        if let Err(e) = committed {
            if linked {
                let _ = self.remove_link(&record.name);
            }
            let _ = remove_tree(&dir);
            return Err(e);
        }
        Ok(record)
    }

    /// Changes the record of container `id` (a full id) under the lock: re-reads it, runs
    /// `f`, and writes it atomically if `f` changed it. If `f` fails, nothing is written.
    /// `f` may not change the id or the name, and runs under the lock (see
    /// [`Registry::update`]). Returns the record as written.
    pub fn update_container(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord) -> Result<()>,
    ) -> Result<ContainerRecord> {
        let _lock = self.lock()?;
        self.update_locked(id, f)
    }

    /// [`Registry::update_container`] for a caller that holds the lock.
    fn update_locked(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord) -> Result<()>,
    ) -> Result<ContainerRecord> {
        let path = self.container_dir(id)?.join(STATE_FILE);
        let mut record = match self.read_record(id)? {
            Some(record) if self.is_committed(&record)? => record,
            _ => {
                return Err(Error::NotFound {
                    kind: "container",
                    name: id.into(),
                })
            }
        };
        let before = record.clone();
        f(&mut record)?;
        if record.id != before.id {
            return Err(Error::invalid("id", "a container's id cannot change"));
        }
        if record.name != before.name {
            return Err(Error::invalid(
                "name",
                "an update cannot rename a container",
            ));
        }
        if record != before {
            record.version = RECORD_VERSION;
            let data = to_json(&record, &path)?;
            if record.ephemeral() {
                files::write_unsynced(&path, &data)?;
            } else {
                // A status change: its data durable, its rename not waited for (see
                // `files::replace_atomic`).
                files::replace_atomic(&path, &data)?;
            }
        }
        Ok(record)
    }

    /// Removes container `id` (a full id): its name from the index and its directory. The
    /// record need not be readable. A directory that still has something mounted below it
    /// is refused (EBUSY) and left as it was: unmount first. Also removes a directory that
    /// the index does not list.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        self.remove_container_if(id, |_| Ok(()))
    }

    /// [`Registry::remove_container`] if `check` accepts the record as read under the
    /// lock (a caller that checked the state before can lose a race to a `start`).
    pub fn remove_container_if(
        &self,
        id: &str,
        check: impl FnOnce(&ContainerRecord) -> Result<()>,
    ) -> Result<()> {
        // Held until the trash is deleted too: a kill anywhere leaves it abandoned.
        let intent = self.intent("rm")?;
        self.retire_container_if(id, check, &intent)?.delete()
    }

    /// Removes the directory a failed create of `id` left, unless a container is
    /// committed there: the removal under the create can meet files being made in it
    /// at that moment (the overlay work directory of a rootfs its supervisor, started
    /// ahead, was mounting; see `Engine::create_for`).
    pub(crate) fn remove_failed_create(&self, id: &str) -> Result<()> {
        let dir = self.container_dir(id)?;
        if dir.symlink_metadata().is_err() {
            return Ok(());
        }
        let _lock = self.lock()?;
        if let Ok(Some(rec)) = self.read_record(id) {
            if self.is_committed(&rec)? {
                return Ok(());
            }
        }
        remove_tree(&dir)
    }

    /// The removal of [`Registry::remove_container_if`] up to the point where the
    /// container is gone for everyone: its name unlinked and its directory renamed to
    /// the returned [`Trash`], whose files the caller deletes. Hold `intent` (the
    /// removal's, which may cover more of it) until they are deleted.
    pub fn retire_container_if(
        &self,
        id: &str,
        check: impl FnOnce(&ContainerRecord) -> Result<()>,
        _intent: &Intent,
    ) -> Result<Trash> {
        let dir = self.container_dir(id)?;
        let trash = self.containers_dir().join(format!("{REMOVING_PREFIX}{id}"));
        {
            let _lock = self.lock()?;
            // A corrupt record cannot be checked; removing it is what the caller wants.
            let record = self.read_record(id);
            if let Ok(Some(rec)) = &record {
                check(rec)?;
            }
            let names: Vec<String> = match &record {
                Ok(Some(rec)) if self.is_committed(rec)? => vec![rec.name.clone()],
                // Not committed: an interrupted create, whose directory goes too.
                Ok(Some(_)) => Vec::new(),
                // No readable name: whichever links point to the id (O(N), rare).
                _ => self
                    .container_names()?
                    .into_iter()
                    .filter(|(_, v)| v.as_str() == id)
                    .map(|(k, _)| k)
                    .collect(),
            };
            // An ephemeral container's removal is not synced either: a host crash that
            // undoes it leaves the container, which the next boot's open removes.
            let durable = !matches!(&record, Ok(Some(rec)) if rec.ephemeral());
            let has_dir = dir.symlink_metadata().is_ok();
            if names.is_empty() && !has_dir {
                return Err(Error::NotFound {
                    kind: "container",
                    name: id.into(),
                });
            }
            let mounts = mount_points()?;
            if let Some(mount) = mounts_under(&mounts, &dir).first() {
                return Err(still_mounted(format!("removing {}", dir.display()), mount));
            }
            // The name first, then the directory: a reader without the lock that still
            // read the link and then finds no state.json re-reads the link and sees the
            // container gone (NotFound), never a "corrupt" listed one. A crash in between
            // leaves an unnamed directory, which reconcile removes.
            for name in &names {
                self.remove_link(name)?;
            }
            if !names.is_empty() && durable {
                self.sync_names()?;
            }
            if has_dir {
                if let Err(e) = self.retire(&dir, &trash, &mounts, durable) {
                    for name in &names {
                        let _ = self.add_link(name, id);
                    }
                    let _ = self.sync_names();
                    return Err(e);
                }
            }
        }
        crate::trace::phase("rm: committed");
        // The container is gone; deleting its files needs no lock.
        if let Some(mount) = mounts_under(&mount_points()?, &trash).first() {
            return Err(still_mounted(
                format!("deleting {}", trash.display()),
                mount,
            ));
        }
        Ok(Trash::new(id, trash))
    }

    /// Renames a container directory to its `.removing-<id>` name (under the lock), unless
    /// something is mounted below it.
    fn retire(&self, dir: &Path, trash: &Path, mounts: &[PathBuf], durable: bool) -> Result<()> {
        if let Some(mount) = mounts_under(mounts, dir).first() {
            return Err(still_mounted(format!("removing {}", dir.display()), mount));
        }
        // A leftover of an earlier interrupted removal of the same id would block the rename.
        remove_tree(trash)?;
        fs::rename(dir, trash)
            .ctx(|| format!("renaming {} to {}", dir.display(), trash.display()))?;
        if !durable {
            return Ok(());
        }
        let containers = self.containers_dir();
        sync_dir(&containers).ctx(|| format!("syncing {}", containers.display()))
    }

    /// A fresh id (no directory has it), and its new directory (0700).
    fn new_container_dir(&self) -> Result<(String, PathBuf)> {
        loop {
            let id = names::new_id()?;
            let dir = self.container_dir(&id)?;
            match files::create_dir(&dir, CONTAINER_DIR_MODE) {
                Ok(true) => return Ok((id, dir)),
                // A stray directory with this id: not ours to reuse.
                Ok(false) => continue,
                Err(e) => return Err(e).ctx(|| format!("creating {}", dir.display())),
            }
        }
    }

    /// Reads `containers/<id>/state.json`; `Ok(None)` if it does not exist.
    fn read_record(&self, id: &str) -> Result<Option<ContainerRecord>> {
        let path = self.container_dir(id)?.join(STATE_FILE);
        let record = read_versioned::<ContainerRecord>(&path, RECORD_VERSION)?;
        match record {
            Some(record) if record.id != id => Err(Error::Corrupt {
                path,
                reason: format!("it holds id {:?}, not the id of its directory", record.id),
            }),
            record => Ok(record),
        }
    }

    fn missing_state(&self, id: &str) -> Error {
        Error::Corrupt {
            path: self.containers_dir().join(id).join(STATE_FILE),
            reason: format!(
                "missing, although {NAMES_DIR}/ names the container (an interrupted create or rm; reconcile repairs it)"
            ),
        }
    }

    /// The index of a root without `registry.json`: empty if no container exists; an
    /// error if containers do (the index was lost: dropping them would lose them).
    fn index_when_missing(&self) -> Result<Index> {
        let containers = self.containers_dir();
        let count = match fs::read_dir(&containers) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_str().is_some_and(is_full_id))
                .count(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).ctx(|| format!("reading {}", containers.display())),
        };
        if count == 0 {
            return Ok(Index::default());
        }
        Err(Error::Corrupt {
            path: self.index_path(),
            reason: format!(
                "missing, but {} holds {count} container(s): restore it, or remove them",
                containers.display()
            ),
        })
    }

    fn save_index(&self, index: &Index) -> Result<()> {
        let path = self.index_path();
        write_atomic(&path, &to_json(index, &path)?)
    }

    /// Takes the registry lock; it is released when the returned guard drops. Each call
    /// opens the lock file anew, so threads of one process exclude each other too.
    fn lock(&self) -> Result<codex_sys::FileLock> {
        let path = self.root.join(LOCK_FILE);
        codex_sys::FileLock::exclusive(&path).ctx(|| format!("locking {}", path.display()))
    }
}

fn still_mounted(context: String, mount: &Path) -> Error {
    Error::Io {
        context: format!("{context}: {} is still mounted", mount.display()),
        cause: std::io::Error::from_raw_os_error(libc::EBUSY),
    }
}
