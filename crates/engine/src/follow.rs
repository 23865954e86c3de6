//! Following a container's log to its end ([`Engine::follow_logs`]): the lines as they are
//! written, and the container's end, with no polling interval (crate::logread); what
//! an attached command needs at the end (its supervisor, the record that said it ended)
//! is kept for crate::run_end.

use std::time::Duration;

use codex_sys::ProcessId;

use crate::config::ContainerConfig;
use crate::engine::{is_live, Engine, LOG_FILE};
use crate::error::{Error, Result};
use crate::logread::{Followed, LogFollower, LogQuery};
use crate::registry::ContainerRecord;

impl Engine {
    /// Follows a container's log: the lines already there that `query` selects, then
    /// new ones as they are written, until the container stops (see [`LogFollow`]).
    pub fn follow_logs(&self, reference: &str, query: LogQuery) -> Result<LogFollow<'_>> {
        let rec = self.get(reference)?;
        let cfg: ContainerConfig = serde_json::from_value(rec.config.clone()).unwrap_or_default();
        let follower = LogFollower::open(
            &self.container_dir(&rec.id)?,
            LOG_FILE,
            cfg.log_rotation().max_files,
            query,
        )?;
        crate::trace::phase("follow: opened");
        Ok(LogFollow {
            engine: self,
            id: rec.id,
            follower,
            supervisor: None,
            ended: None,
        })
    }
}

/// A container's log as it grows; from [`Engine::follow_logs`].
pub struct LogFollow<'e> {
    pub(crate) engine: &'e Engine,
    pub(crate) id: String,
    pub(crate) follower: LogFollower,
    /// Its supervisor, as last seen live: after the end, the record no longer names it.
    pub(crate) supervisor: Option<ProcessId>,
    /// The record that said it had ended (it may be removed by the next look).
    pub(crate) ended: Option<ContainerRecord>,
}

impl LogFollow<'_> {
    /// New lines; or waits up to `timeout` for some (`Idle` if none came); or `Ended`
    /// once the container has stopped and all its output was returned. A container
    /// started again (restart) is followed on.
    pub fn poll(&mut self, timeout: Duration) -> Result<Followed> {
        let (engine, id) = (self.engine, self.id.as_str());
        let (seen, ended) = (&mut self.supervisor, &mut self.ended);
        self.follower.poll(timeout, || {
            let rec = match engine.get(id) {
                Ok(r) => r,
                // Removed meanwhile (`--rm`): it has ended.
                Err(Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            let live = rec.live_supervisor();
            if live.is_some() {
                *seen = live;
            }
            if !is_live(rec.status) {
                *ended = Some(rec);
                return Ok(None);
            }
            Ok(Some(live.and_then(|p| p.open().ok().flatten())))
        })
    }

    /// Notes the supervisor that `rec` (the record a start returned) names.
    pub fn started(&mut self, rec: &ContainerRecord) {
        if let Some(p) = rec.live_supervisor() {
            self.supervisor = Some(p);
        }
        // A container that ends at once may be gone (removed with its end) before the
        // follower's first look at its log, which it created after the follow began.
        crate::testhook::pause("follow-started");
    }

    /// The container being followed.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Ends the follow for a command about to exit: the inotify instance's last close,
    /// which waits on the kernel, is made by a child (codex_sys::release), so neither
    /// the caller nor its exit waits for it.
    pub fn close_in_background(self) {
        codex_sys::release::close_in_child(self.follower.into_inotify_fd());
    }
}
