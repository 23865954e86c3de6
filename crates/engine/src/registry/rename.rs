//! `rename`: a container's name changes in the index and in its record, under the lock.

use super::files::{to_json, write_atomic};
use super::names::validate_name;
use super::record::ContainerRecord;
use super::{Registry, STATE_FILE};
use crate::error::{Error, Result};

impl Registry {
    /// Gives container `id` (a full id) the name `new`. The index is written first: it
    /// is what names resolve through, and a crash before the record is written leaves a
    /// record whose name reconcile sets to the index's. A lock-free reader meanwhile sees
    /// the old name or the new one, never a missing container.
    pub fn rename_container(&self, id: &str, new: &str) -> Result<ContainerRecord> {
        validate_name(new)?;
        let _lock = self.lock()?;
        let _intent = self.intent("rename")?;
        let mut index = self.index()?;
        let mut record = self
            .read_record(id)?
            .ok_or_else(|| self.missing_state(id))?;
        if record.name == new {
            return Ok(record);
        }
        if index.containers.contains_key(new) {
            return Err(Error::NameInUse {
                kind: "container",
                name: new.into(),
            });
        }
        if index.containers.remove(&record.name).is_none() {
            return Err(Error::NotFound {
                kind: "container",
                name: record.name,
            });
        }
        index.containers.insert(new.to_string(), id.to_string());
        self.save_index(&index)?;
        record.name = new.to_string();
        let path = self.container_dir(id)?.join(STATE_FILE);
        write_atomic(&path, &to_json(&record, &path)?)?;
        Ok(record)
    }
}
