//! `rename`: a container's name changes in `names/` and in its record, under the lock.

use super::files::{to_json, write_atomic};
use super::names::validate_name;
use super::record::ContainerRecord;
use super::{Registry, STATE_FILE};
use crate::error::{Error, Result};

impl Registry {
    /// Gives container `id` (a full id) the name `new`, in three steps: the new link (which
    /// also reserves the name: `EEXIST` means it is taken), the record (the rename's commit
    /// point), the old link's removal. A lock-free reader meanwhile finds the container
    /// by the old name or the new one, never neither. A crash between the steps leaves two
    /// links to the id; reconcile keeps the one the record names (the rename undone before
    /// the record was written, done after).
    pub fn rename_container(&self, id: &str, new: &str) -> Result<ContainerRecord> {
        validate_name(new)?;
        let _lock = self.lock()?;
        let _intent = self.intent("rename")?;
        // Gone (an rm that won the race for the lock), or never committed: not found.
        let mut record = match self.read_record(id)? {
            Some(record) if self.is_committed(&record)? => record,
            _ => {
                return Err(Error::NotFound {
                    kind: "container",
                    name: id.into(),
                })
            }
        };
        if record.name == new {
            return Ok(record);
        }
        if !self.add_link(new, id)? {
            return Err(Error::NameInUse {
                kind: "container",
                name: new.into(),
            });
        }
        let old = std::mem::replace(&mut record.name, new.to_string());
        let path = self.container_dir(id)?.join(STATE_FILE);
        if let Err(e) = to_json(&record, &path).and_then(|data| write_atomic(&path, &data)) {
            let _ = self.remove_link(new);
            return Err(e);
        }
        self.remove_link(&old)?;
        self.sync_names()?;
        Ok(record)
    }
}
