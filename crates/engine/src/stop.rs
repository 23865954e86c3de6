//! The end of `stop` (and of `rm -f`): after SIGKILL, waiting for the supervisor to
//! record the exit, but not for a supervisor that cannot run.
//!
//! The supervisor records the exit as soon as it reaps the init. If it is stopped
//! (SIGSTOP, a debugger, a frozen cgroup), the killed init stays a zombie and the record
//! says `running` until it runs again. `stop` used to wait 30 s for the record, and
//! `rm -f` with it; now, once the init is dead, it gives the supervisor a short grace and
//! then says what happened instead of hanging.

use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::registry::ContainerRecord;

/// How long a killed container may take to die and be recorded.
const KILL_PATIENCE: Duration = Duration::from_secs(30);

/// How long a supervisor has to record an exit once the init is dead.
const RECORD_GRACE: Duration = Duration::from_secs(2);

impl Engine {
    /// Waits until the killed container `rec` is recorded as ended.
    pub(crate) fn wait_killed(&self, rec: &ContainerRecord) -> Result<ContainerRecord> {
        let start = Instant::now();
        let mut dead_since: Option<Instant> = None;
        loop {
            if let Some(done) = self.wait_exit(&rec.id, Duration::from_millis(100))? {
                return Ok(done);
            }
            let now = Instant::now();
            if dead_since.is_none() && rec.pid.is_none_or(init_is_dead) {
                dead_since = Some(now);
            }
            if dead_since.is_some_and(|t| now - t >= RECORD_GRACE) {
                let sup = self.get(&rec.id)?.supervisor_pid;
                let who = sup.map_or("its supervisor".into(), |p| {
                    format!("its supervisor (pid {p})")
                });
                return Err(Error::wrong_state(
                    &rec.name,
                    "killed but its exit is not recorded yet",
                    format!(
                        "{who} is not running (stopped?); the record says so once it runs again"
                    ),
                ));
            }
            if now - start >= KILL_PATIENCE {
                return Err(Error::invalid(
                    "container",
                    format!("{} did not stop", rec.name),
                ));
            }
        }
    }
}

/// The init is gone or a zombie (killed, waiting for its parent to reap it).
fn init_is_dead(pid: i32) -> bool {
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let after = stat
                .iter()
                .rposition(|b| *b == b')')
                .map_or(&stat[..0], |i| &stat[i + 1..]);
            matches!(
                after.iter().find(|b| !b.is_ascii_whitespace()),
                Some(b'Z' | b'X')
            )
        }
        Err(_) => true,
    }
}
