//! Reconciling the registry's files with each other after a crash: what an interrupted
//! create, rm or write leaves behind, recognised, reported and repaired.
//!
//! Processes and mounts (a pid that is gone, a supervisor that died) are the supervisor's
//! part of reconciling; this part never touches anything outside the root.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};
use crate::network::Orphan;

use super::files::{
    mount_points, mounts_under, read_versioned, remove_tree, to_json, write_atomic, TMP_MARK,
};
use super::names::is_full_id;
use super::record::{ContainerRecord, RECORD_VERSION};
use super::{Registry, INDEX_FILE, NAMES_DIR, REMOVING_PREFIX, STATE_FILE};

/// One thing [`Registry::reconcile`] repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// `containers/<id>/` had no `state.json` and no name in `names/` (a create
    /// interrupted before its record was written): removed.
    RemovedIncomplete { id: String },
    /// A container record no name links to (a create interrupted before its name
    /// was linked): removed; the create had not succeeded.
    RemovedOrphan { id: String, name: Option<String> },
    /// A name linked to a container whose directory or `state.json` is missing (an
    /// interrupted rm, or a lost directory): the name was dropped, and what was left of
    /// the directory removed.
    DroppedName { name: String, id: String },
    /// `state.json` gave a name no link has: set to the name linked to its id.
    FixedName {
        id: String,
        was: String,
        now: String,
    },
    /// After a reboot, `state.json` was empty: an unsynced write lost in the host's crash,
    /// which only an ephemeral (`run --rm`) container's record can be (every other
    /// write syncs its data before the rename). Its names were dropped and the rest
    /// removed, as that container's end would have.
    RemovedLostInCrash { id: String, names: Vec<String> },
    /// The leftover of an interrupted rm (`containers/.removing-<id>`) was deleted.
    RemovedLeftover { path: PathBuf },
    /// A temp file of an interrupted write was deleted.
    RemovedTempFile { path: PathBuf },
    /// A network address held by a container that no longer exists (its `rm` or its
    /// create was interrupted) was freed.
    ReleasedAddress {
        network: String,
        id: String,
        ip: std::net::Ipv4Addr,
    },
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repair::RemovedIncomplete { id } => {
                write!(
                    f,
                    "container {id}: removed an incomplete create (no state.json)"
                )
            }
            Repair::RemovedOrphan { id, name } => write!(
                f,
                "container {id} ({}): removed an interrupted create (no name in {NAMES_DIR}/)",
                name.as_deref().unwrap_or("unreadable name")
            ),
            Repair::DroppedName { name, id } => write!(
                f,
                "container {name} ({id}): dropped from {NAMES_DIR}/: its state.json is missing"
            ),
            Repair::FixedName { id, was, now } => {
                write!(
                    f,
                    "container {id}: renamed {was:?} to {now:?} to match {NAMES_DIR}/"
                )
            }
            Repair::RemovedLostInCrash { id, names } => write!(
                f,
                "container {id} ({}): removed: its record was empty after a reboot (an unsynced run --rm record the crash lost)",
                if names.is_empty() { "no name".to_string() } else { names.join(", ") }
            ),
            Repair::RemovedLeftover { path } => {
                write!(f, "{}: deleted what an interrupted rm left", path.display())
            }
            Repair::RemovedTempFile { path } => {
                write!(
                    f,
                    "{}: deleted a temp file of an interrupted write",
                    path.display()
                )
            }
            Repair::ReleasedAddress { network, id, ip } => write!(
                f,
                "network {network}: freed {ip}, held by container {id}, which is gone"
            ),
        }
    }
}

/// Something [`Registry::reconcile`] found and could not (or would not) repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// What [`Registry::reconcile`] did and what it left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub repairs: Vec<Repair>,
    pub problems: Vec<Problem>,
}

impl Reconciled {
    /// Nothing was wrong.
    pub fn is_clean(&self) -> bool {
        self.repairs.is_empty() && self.problems.is_empty()
    }
}

impl Registry {
    /// Brings `names/`, `registry.json` and `containers/` back into agreement after a crash, under
    /// the lock; deleting directories happens after the lock is released. It never fails
    /// on what it finds: a corrupt `state.json`, an unknown entry in `containers/` or a
    /// directory with a mount below it is reported as a [`Problem`] and left alone. It
    /// fails only when the index itself is unreadable or the root cannot be read.
    pub fn reconcile(&self) -> Result<Reconciled> {
        self.reconcile_as(false)
    }

    /// [`Registry::reconcile`] for the first open after a reboot: an empty `state.json`
    /// is then what a host crash made of an unsynced write (see
    /// [`Repair::RemovedLostInCrash`]), and its container is removed instead of left.
    pub fn reconcile_after_reboot(&self) -> Result<Reconciled> {
        self.reconcile_as(true)
    }

    fn reconcile_as(&self, after_reboot: bool) -> Result<Reconciled> {
        let mut out = Reconciled::default();
        let mut doomed: Vec<PathBuf> = Vec::new();
        let abandoned;
        {
            let _lock = self.lock()?;
            // Taken first: an intent abandoned after this look is found by the next one.
            abandoned = self.abandoned_intents()?;
            let mut index = self.index()?;
            let before = index.clone();
            let mut links = self.container_names()?;
            let links_before = links.clone();
            for path in self.stray_names()? {
                out.problems.push(Problem {
                    path,
                    reason: "not a link to a container id; left alone".into(),
                });
            }
            let mounts = mount_points()?;
            remove_temp_files(&self.root, INDEX_FILE, &mut out);

            let containers = self.containers_dir();
            let entries =
                fs::read_dir(&containers).ctx(|| format!("reading {}", containers.display()))?;
            let mut with_dir = BTreeSet::new();
            for entry in entries {
                let entry = entry.ctx(|| format!("reading {}", containers.display()))?;
                let path = entry.path();
                let file_name = entry.file_name();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                let Some(file_name) = file_name.to_str() else {
                    out.problems.push(unknown_entry(path));
                    continue;
                };
                if file_name
                    .strip_prefix(REMOVING_PREFIX)
                    .is_some_and(is_full_id)
                    && is_dir
                {
                    if let Some(mount) = mounts_under(&mounts, &path).first() {
                        out.problems.push(mounted(path.clone(), mount));
                    } else {
                        doomed.push(path);
                    }
                    continue;
                }
                if !is_full_id(file_name) || !is_dir {
                    out.problems.push(unknown_entry(path));
                    continue;
                }
                let id = file_name;
                with_dir.insert(id.to_string());
                let names: Vec<String> = links
                    .iter()
                    .filter(|(_, v)| v.as_str() == id)
                    .map(|(k, _)| k.clone())
                    .collect();
                let state_path = path.join(STATE_FILE);
                let state = read_versioned::<ContainerRecord>(&state_path, RECORD_VERSION);

                // No name links to it: a create that never finished. Its record, if any, was
                // never returned to anyone.
                if names.is_empty() {
                    let had_state = state_path.exists();
                    let name = state.ok().flatten().map(|r| r.name);
                    match self.retire_for_reconcile(&path, id, &mounts) {
                        Ok(trash) => {
                            doomed.push(trash);
                            out.repairs.push(if had_state {
                                Repair::RemovedOrphan {
                                    id: id.into(),
                                    name,
                                }
                            } else {
                                Repair::RemovedIncomplete { id: id.into() }
                            });
                        }
                        Err(problem) => out.problems.push(problem),
                    }
                    continue;
                }

                match state {
                    // Named without a record: drop the names, remove the rest.
                    Ok(None) => match self.retire_for_reconcile(&path, id, &mounts) {
                        Ok(trash) => {
                            doomed.push(trash);
                            for name in names {
                                links.remove(&name);
                                out.repairs.push(Repair::DroppedName {
                                    name,
                                    id: id.into(),
                                });
                            }
                        }
                        Err(problem) => out.problems.push(problem),
                    },
                    Err(_) if after_reboot && is_empty_file(&state_path) => {
                        match self.retire_for_reconcile(&path, id, &mounts) {
                            Ok(trash) => {
                                doomed.push(trash);
                                for name in &names {
                                    links.remove(name);
                                }
                                out.repairs.push(Repair::RemovedLostInCrash {
                                    id: id.into(),
                                    names,
                                });
                            }
                            Err(problem) => out.problems.push(problem),
                        }
                    }
                    // Corrupt: leave it for the user to see and `rm -f`.
                    Err(e) => out.problems.push(Problem {
                        path: state_path,
                        reason: e.to_string(),
                    }),
                    Ok(Some(record)) if record.id != id => out.problems.push(Problem {
                        path: state_path,
                        reason: format!(
                            "it holds id {:?}, not the id of its directory; left alone",
                            record.id
                        ),
                    }),
                    Ok(Some(mut record)) => {
                        // One name per container: keep the record's if it is linked.
                        let keep = if names.contains(&record.name) {
                            record.name.clone()
                        } else {
                            names[0].clone()
                        };
                        for name in names.into_iter().filter(|n| *n != keep) {
                            links.remove(&name);
                            out.repairs.push(Repair::DroppedName {
                                name,
                                id: id.into(),
                            });
                        }
                        if record.name != keep {
                            let was = std::mem::replace(&mut record.name, keep.clone());
                            record.version = RECORD_VERSION;
                            match to_json(&record, &state_path)
                                .and_then(|data| write_atomic(&state_path, &data))
                            {
                                Ok(()) => out.repairs.push(Repair::FixedName {
                                    id: id.into(),
                                    was,
                                    now: keep,
                                }),
                                Err(e) => out.problems.push(Problem {
                                    path: state_path.clone(),
                                    reason: e.to_string(),
                                }),
                            }
                        }
                        remove_temp_files(&path, STATE_FILE, &mut out);
                    }
                }
            }

            // Names whose container directory is gone altogether.
            let dangling: Vec<(String, String)> = links
                .iter()
                .filter(|(_, id)| !with_dir.contains(id.as_str()))
                .map(|(n, id)| (n.clone(), id.clone()))
                .collect();
            for (name, id) in dangling {
                links.remove(&name);
                out.repairs.push(Repair::DroppedName { name, id });
            }

            // After the container names are settled: an address is held only by a
            // container a name still links to.
            let live: BTreeSet<String> = links.values().cloned().collect();
            for r in crate::network::release_orphans(&mut index, &live) {
                match r {
                    Orphan::Freed { network, id, ip } => out
                        .repairs
                        .push(Repair::ReleasedAddress { network, id, ip }),
                    Orphan::Unreadable { network, reason } => out.problems.push(Problem {
                        path: self.index_path(),
                        reason: format!("networks.{network}: {reason}; left alone"),
                    }),
                }
            }

            let dropped: Vec<&String> = links_before
                .keys()
                .filter(|n| !links.contains_key(*n))
                .collect();
            for name in &dropped {
                self.remove_link(name)?;
            }
            if !dropped.is_empty() {
                self.sync_names()?;
            }
            if index != before {
                self.save_index(&index)?;
            }
        }

        for path in doomed {
            let repair = Repair::RemovedLeftover { path: path.clone() };
            match remove_tree(&path) {
                // Retired just now: already reported as what it was.
                Ok(()) if out.repairs.iter().any(|r| retired_as(r, &path)) => {}
                Ok(()) => out.repairs.push(repair),
                Err(e) => out.problems.push(Problem {
                    path,
                    reason: e.to_string(),
                }),
            }
        }
        // Repaired: what the abandoned changes left is gone, and this boot is covered.
        super::intent::forget(abandoned);
        self.record_reconciled()?;
        Ok(out)
    }

    /// Moves a container directory out of the way (to be deleted after unlocking), or says
    /// why not.
    fn retire_for_reconcile(
        &self,
        dir: &Path,
        id: &str,
        mounts: &[PathBuf],
    ) -> std::result::Result<PathBuf, Problem> {
        let trash = self.containers_dir().join(format!("{REMOVING_PREFIX}{id}"));
        self.retire(dir, &trash, mounts, true)
            .map(|()| trash)
            .map_err(|e| Problem {
                path: dir.to_path_buf(),
                reason: format!("{e}; left alone"),
            })
    }
}

/// True if `repair` is about the container whose directory was retired to `trash`.
fn retired_as(repair: &Repair, trash: &Path) -> bool {
    let id = match repair {
        Repair::RemovedIncomplete { id }
        | Repair::RemovedOrphan { id, .. }
        | Repair::DroppedName { id, .. }
        | Repair::RemovedLostInCrash { id, .. } => id,
        _ => return false,
    };
    trash
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(REMOVING_PREFIX))
        == Some(id.as_str())
}

/// A regular file of length 0 (not a symlink: nothing is followed).
fn is_empty_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0)
}

/// Deletes `.<file>.tmp-*` in `dir`: every writer of `file` holds the lock, so under the
/// lock any such temp file is a dead writer's.
fn remove_temp_files(dir: &Path, file: &str, out: &mut Reconciled) {
    let prefix = format!(".{file}{TMP_MARK}");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file
            && entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        {
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => out.repairs.push(Repair::RemovedTempFile { path }),
                Err(e) => out.problems.push(Problem {
                    path,
                    reason: e.to_string(),
                }),
            }
        }
    }
}

fn unknown_entry(path: PathBuf) -> Problem {
    Problem {
        path,
        reason: "not a container directory; left alone".into(),
    }
}

fn mounted(path: PathBuf, mount: &Path) -> Problem {
    Problem {
        reason: format!("{} is still mounted below it; left alone", mount.display()),
        path,
    }
}
