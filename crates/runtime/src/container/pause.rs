//! `pause` / `resume`: freeze and thaw every process of a container.

use super::Runtime;
use crate::error::Result;
use crate::state::Status;

impl Runtime {
    pub fn pause(&self, id: &str) -> Result<()> {
        let c = self.load(id)?;
        match c.status() {
            Status::Running | Status::Created => c.state.cgroups.freeze(),
            _ => Err(c.wrong_state("pause", "needs a running container")),
        }
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        let c = self.load(id)?;
        match c.status() {
            Status::Paused => c.state.cgroups.thaw(),
            _ => Err(c.wrong_state("resume", "needs a paused container")),
        }
    }
}
