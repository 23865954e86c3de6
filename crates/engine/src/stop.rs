//! The end of `stop` (and of `rm -f`): after SIGKILL, waiting for the supervisor to
//! record the exit, but not for a supervisor that cannot run.
//!
//! The supervisor records the exit as soon as it reaps the init. If it is stopped
//! (SIGSTOP, a debugger), the killed init stays a zombie and the record says `running`
//! until it runs again. `stop` used to wait 30 s for the record, and `rm -f` with it;
//! now, once the init is dead and the supervisor seen stopped, it gives the supervisor a
//! short grace and then says what happened instead of hanging.

use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::registry::ContainerRecord;

/// How long a killed container may take to die and be recorded.
const KILL_PATIENCE: Duration = Duration::from_secs(30);

/// How long a stopped supervisor has to run again once the init is dead.
const RECORD_GRACE: Duration = Duration::from_secs(2);

impl Engine {
    /// Waits until the killed container `rec` is recorded as ended.
    pub(crate) fn wait_killed(&self, rec: &ContainerRecord) -> Result<ContainerRecord> {
        let start = Instant::now();
        let mut stuck_since: Option<Instant> = None;
        loop {
            if let Some(done) = self.wait_exit(&rec.id, Duration::from_millis(100))? {
                return Ok(done);
            }
            let now = Instant::now();
            // Only a supervisor that cannot run is given up on: a slow one (a loaded
            // machine) gets the full patience.
            let sup = match self.get(&rec.id) {
                Ok(r) => r.supervisor_pid,
                // Removed at its end (`--rm`) right after the last look.
                Err(Error::NotFound { .. }) => {
                    let mut gone = rec.clone();
                    gone.status = crate::registry::ContainerStatus::Stopped;
                    gone.pid = None;
                    return Ok(gone);
                }
                Err(e) => return Err(e),
            };
            let init_dead = rec
                .pid
                .is_none_or(|p| matches!(state(p), None | Some(b'Z' | b'X')));
            let sup_stopped = sup.is_some_and(|p| matches!(state(p), Some(b'T' | b't')));
            if !(init_dead && sup_stopped) {
                stuck_since = None;
            } else if now - *stuck_since.get_or_insert(now) >= RECORD_GRACE {
                return Err(Error::wrong_state(
                    &rec.name,
                    "killed but its exit is not recorded yet",
                    format!(
                        "its supervisor (pid {}) is stopped; the record says so once it runs again",
                        sup.unwrap_or_default()
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

/// The state letter of `/proc/PID/stat` (`None` once the process is gone).
fn state(pid: i32) -> Option<u8> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.iter().rposition(|b| *b == b')')? + 1..];
    after.iter().copied().find(|b| !b.is_ascii_whitespace())
}
