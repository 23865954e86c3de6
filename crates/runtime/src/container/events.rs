//! `events`: statistics snapshots and OOM notifications, as JSON values in runc's
//! event shape (`{"type": "stats" | "oom", "id": ..., "data": ...}`).

use std::time::Duration;

use serde_json::{json, Value};

use super::Runtime;
use crate::error::Result;
use crate::state::Status;

impl Runtime {
    /// One `stats` event for the container.
    pub fn stats(&self, id: &str) -> Result<Value> {
        let c = self.load(id)?;
        Ok(json!({"type": "stats", "id": id, "data": c.state.cgroups.stats()}))
    }

    /// Calls `emit` with a `stats` event every `interval` and an `oom` event whenever
    /// the OOM killer has struck since the last look, until the container stops or
    /// `emit` returns false.
    pub fn events(
        &self,
        id: &str,
        interval: Duration,
        mut emit: impl FnMut(Value) -> bool,
    ) -> Result<()> {
        let c = self.load(id)?;
        let mut ooms = c.state.cgroups.oom_kills();
        let tick = interval
            .min(Duration::from_millis(200))
            .max(Duration::from_millis(10));
        let mut since_stats = interval;
        loop {
            let now = c.state.cgroups.oom_kills();
            if now > ooms {
                ooms = now;
                if !emit(json!({"type": "oom", "id": id})) {
                    return Ok(());
                }
            }
            if c.status() == Status::Stopped {
                return Ok(());
            }
            if since_stats >= interval {
                since_stats = Duration::ZERO;
                if !emit(json!({"type": "stats", "id": id, "data": c.state.cgroups.stats()})) {
                    return Ok(());
                }
            }
            std::thread::sleep(tick);
            since_stats += tick;
        }
    }
}
