//! Finding containers without the lock: by exact id, exact name or unique id prefix.
//!
//! An exact id costs one record read and one `readlink` (is the record's name linked to
//! it?); an exact name one `readlink` and one record read: O(1) in the number of
//! containers. Only an argument that is neither, but could start an id, lists
//! `containers/` (O(N) directory entries, one record read per matching one).

use std::os::unix::fs::MetadataExt;

use crate::error::{Error, Result};

use super::names::{is_full_id, is_id_prefix};
use super::record::ContainerRecord;
use super::{Registry, STATE_FILE};

impl Registry {
    /// The container named by `reference`: an exact id, an exact name, or a unique prefix
    /// of an id (like Docker). A prefix that matches several ids is an error that names
    /// them.
    pub fn get(&self, reference: &str) -> Result<ContainerRecord> {
        let (id, record) = self.find(reference)?;
        if let Some(record) = record {
            return Ok(record);
        }
        match self.read_record(&id)? {
            Some(record) => Ok(record),
            // Removed since we read its link, or a broken entry.
            None if self.link_of(reference)?.as_deref() == Some(id.as_str()) => {
                Err(self.missing_state(&id))
            }
            None => Err(not_found(reference)),
        }
    }

    /// The full id of the container named by `reference` (see [`Registry::get`]). A
    /// container whose `state.json` is corrupt still resolves (so that `rm` can remove it).
    pub fn resolve(&self, reference: &str) -> Result<String> {
        self.find(reference).map(|(id, _)| id)
    }

    /// The name of container `id` (a full id) if it exists: one record read, one
    /// `readlink`, no lock (a check an index transaction may make).
    pub fn name_of(&self, id: &str) -> Result<Option<String>> {
        Ok(self.committed_record(id)?.map(|r| r.name))
    }

    /// The record of `id` if it is a container's: the link of its name points to it. A
    /// record whose name is not linked is read again while the record keeps being
    /// rewritten: a rename links the new name, rewrites the record and unlinks the old
    /// name, so a record read just before a rename's rewrite may name a link that is gone
    /// by the time it is checked (`ps` during a run of renames listed nothing). Every
    /// rewrite replaces the file, so its identity (inode and change time) tells a record
    /// that moved on from one that stays unlinked: that one is no container's (an
    /// interrupted create, or an rm that has unlinked it). Comparing names instead was not
    /// enough: a reader held up across a rename and back saw the same name twice.
    fn committed_record(&self, id: &str) -> Result<Option<ContainerRecord>> {
        let state = self.container_dir(id)?.join(STATE_FILE);
        let mut last = None;
        for _ in 0..REWRITES_WAITED {
            let seen = std::fs::symlink_metadata(&state)
                .ok()
                .map(|m| (m.ino(), m.ctime(), m.ctime_nsec()));
            match self.read_record(id)? {
                Some(record) if self.is_committed(&record)? => return Ok(Some(record)),
                Some(_) if seen.is_some() && seen != last => last = seen,
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Every container, oldest first. A container removed while listing is left out; a
    /// corrupt `state.json` is an `Error::Corrupt` naming it (`remove_container` still
    /// removes that container).
    ///
    /// Listed by directory, not by name: a rename's links come and go while `names/` is
    /// read, and a listing of it could see neither of a container's two names (`ps`
    /// during a run of renames listed nothing). A container's directory stays put.
    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        let dir = self.containers_dir();
        let entries = std::fs::read_dir(&dir).map_err(|cause| Error::Io {
            context: format!("reading {}", dir.display()),
            cause,
        })?;
        let ids: Vec<String> = entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
            .filter(|id| is_full_id(id))
            .collect();
        let read = crate::parallel::map(ids, crate::parallel::Spread::per_cpu(), |id| {
            let record = self.committed_record(&id);
            (id, record)
        });
        let mut records = Vec::with_capacity(read.len());
        for (id, record) in read {
            match record {
                Ok(Some(record)) => records.push(record),
                Ok(None) => {}
                // A corrupt record is reported when a name links to it (a container's);
                // an interrupted create's is not a container (reconcile removes it).
                Err(e) if self.linked_anywhere(&id)? => return Err(e),
                Err(_) => {}
            }
        }
        records.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
        Ok(records)
    }

    /// Exact id, then exact name, then unique id prefix: the id, and the record when it
    /// was read on the way.
    fn find(&self, reference: &str) -> Result<(String, Option<ContainerRecord>)> {
        if reference.is_empty() {
            return Err(Error::invalid("container", "no name or id given"));
        }
        if is_full_id(reference) {
            match self.committed_record(reference) {
                Ok(Some(record)) => return Ok((reference.into(), Some(record))),
                Ok(None) => {}
                // No readable name: is any link pointing to it? (O(N), rare.)
                Err(Error::Corrupt { .. }) if self.linked_anywhere(reference)? => {
                    return Ok((reference.into(), None))
                }
                // Not a container (an interrupted create): perhaps a name.
                Err(Error::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(id) = self.link_of(reference)? {
            return Ok((id, None));
        }
        if is_id_prefix(reference) {
            if let Some(id) = self.unique_prefix(reference)? {
                return Ok((id, None));
            }
        }
        Err(not_found(reference))
    }

    /// True if some name links to `id` (a listing of `names/`).
    fn linked_anywhere(&self, id: &str) -> Result<bool> {
        Ok(self.container_names()?.values().any(|v| v == id))
    }

    /// The one committed container whose id starts with `prefix`; `None` if none does.
    fn unique_prefix(&self, prefix: &str) -> Result<Option<String>> {
        let dir = self.containers_dir();
        let entries = std::fs::read_dir(&dir).map_err(|cause| Error::Io {
            context: format!("reading {}", dir.display()),
            cause,
        })?;
        let mut hits: Vec<(String, String)> = Vec::new();
        for entry in entries.flatten() {
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !is_full_id(&id) || !id.starts_with(prefix) {
                continue;
            }
            let name = match self.read_record(&id) {
                Ok(Some(record)) if self.is_committed(&record)? => record.name,
                Ok(_) => continue,
                Err(_) => match self.container_names()?.into_iter().find(|(_, v)| *v == id) {
                    Some((name, _)) => name,
                    None => continue,
                },
            };
            hits.push((name, id));
        }
        match hits.len() {
            0 => Ok(None),
            1 => Ok(hits.pop().map(|(_, id)| id)),
            _ => {
                hits.sort();
                Err(Error::Ambiguous {
                    kind: "container",
                    reference: prefix.into(),
                    matches: hits
                        .iter()
                        .map(|(name, id)| format!("{} ({name})", id.get(..12).unwrap_or(id)))
                        .collect(),
                })
            }
        }
    }
}

/// How many rewrites of a record a lookup reads past (see `committed_record`).
const REWRITES_WAITED: usize = 64;

fn not_found(reference: &str) -> Error {
    Error::NotFound {
        kind: "container",
        name: reference.into(),
    }
}
