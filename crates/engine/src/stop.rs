//! `stop` and `kill` (a user's intent recorded before any signal: docs/monitors.md),
//! and the end of `stop` (and of `rm -f`): after SIGKILL, waiting for the supervisor to
//! record the exit, but not for a supervisor that cannot run.
//!
//! The supervisor records the exit as soon as it reaps the init. If it is stopped
//! (SIGSTOP, a debugger), the killed init stays a zombie and the record says `running`
//! until it runs again. `stop` used to wait 30 s for the record, and `rm -f` with it;
//! now, once the init is dead and the supervisor seen stopped, it gives the supervisor a
//! short grace and then says what happened instead of hanging.

use std::time::{Duration, Instant};

use crate::config::ContainerConfig;
use crate::engine::{is_live, Engine};
use crate::error::{Error, Result};
use crate::registry::{ContainerRecord, ContainerStatus};

const RUNNING: ContainerStatus = ContainerStatus::Running;
const PAUSED: ContainerStatus = ContainerStatus::Paused;

/// How long a killed container may take to die and be recorded.
const KILL_PATIENCE: Duration = Duration::from_secs(30);

/// How long a stopped supervisor has to run again once the init is dead.
const RECORD_GRACE: Duration = Duration::from_secs(2);

impl Engine {
    /// Sends `signal` to every process of a running container.
    pub fn kill(&self, reference: &str, signal: i32) -> Result<()> {
        let rec = self.get(reference)?;
        let cfg: ContainerConfig = serde_json::from_value(rec.config.clone()).unwrap_or_default();
        let ends = crate::restarting::ends_container(signal, &cfg);
        let rec = if rec.status == ContainerStatus::Restarting && ends {
            // Between two runs: nothing to signal, but the next run must not come.
            let r = self.end_restarting(&rec, false)?;
            if !matches!(r.status, RUNNING | PAUSED) {
                return Ok(());
            }
            r
        } else {
            rec
        };
        if !matches!(rec.status, RUNNING | PAUSED) {
            return Err(Error::wrong_state(
                &rec.name,
                rec.status,
                "it must be running",
            ));
        }
        if ends {
            // The user's intent first, then the signal: the policy never undoes it.
            self.registry.update_container(&rec.id, |r| {
                r.manually_stopped = true;
                Ok(())
            })?;
        }
        self.runtime().kill(&rec.id, signal, true)?;
        crate::events::emit_about(self.root(), &rec, "kill", &[("signal", signal.to_string())]);
        Ok(())
    }

    /// The stop signal to every process, then SIGKILL after `timeout`; returns the
    /// record once the supervisor has recorded the exit.
    pub fn stop(&self, reference: &str, timeout: Duration) -> Result<ContainerRecord> {
        self.stop_with(reference, timeout, None)
    }

    /// [`Engine::stop`] with `signal` in place of the container's stop signal (`stop
    /// --signal`, the Docker API's `stop?signal=`).
    pub fn stop_with(
        &self,
        reference: &str,
        timeout: Duration,
        signal: Option<i32>,
    ) -> Result<ContainerRecord> {
        let mut rec = self.get(reference)?;
        if rec.status == ContainerStatus::Restarting {
            rec = self.end_restarting(&rec, true)?;
        }
        if !matches!(
            rec.status,
            ContainerStatus::Running | ContainerStatus::Paused
        ) {
            return Ok(rec);
        }
        let cfg: ContainerConfig = serde_json::from_value(rec.config.clone()).unwrap_or_default();
        let sig = match signal {
            Some(s) => s,
            None => codex_runtime::parse_signal(cfg.stop_signal.as_deref().unwrap_or("SIGTERM"))?,
        };
        self.registry.update_container(&rec.id, |r| {
            r.stop_requested = true;
            r.manually_stopped = true;
            Ok(())
        })?;
        let rt = self.runtime();
        if rec.status == ContainerStatus::Paused {
            let _ = rt.resume(&rec.id);
        }
        let _ = rt.kill(&rec.id, sig, true);
        let done = match self.wait_exit(&rec.id, timeout)? {
            Some(done) => done,
            None => {
                let _ = rt.kill(&rec.id, libc::SIGKILL, true);
                self.wait_killed(&rec)?
            }
        };
        crate::events::emit_about(self.root(), &done, "stop", &[]);
        Ok(done)
    }

    /// Waits (up to `timeout`) until the container is no longer live; sleeps on a
    /// pidfd of its supervisor, which exits only after recording how the container
    /// ended.
    pub(crate) fn wait_exit(&self, id: &str, timeout: Duration) -> Result<Option<ContainerRecord>> {
        let end = Instant::now() + timeout;
        let mut last: Option<ContainerRecord> = None;
        loop {
            let r = match self.get(id) {
                Ok(r) => r,
                // Removed at its end (`--rm`): it ended, and its last record says how
                // far it got; the exit itself went with the container.
                Err(Error::NotFound { .. }) if last.is_some() => {
                    return Ok(last.map(|mut r| {
                        r.status = if r.stop_requested {
                            ContainerStatus::Stopped
                        } else {
                            ContainerStatus::Exited
                        };
                        r.pid = None;
                        r
                    }))
                }
                Err(e) => return Err(e),
            };
            if !is_live(r.status) {
                return Ok(Some(r));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let pidfd = r.supervisor_pidfd();
            last = Some(r);
            match pidfd {
                Some(fd) => {
                    let mut fds = [nix::poll::PollFd::new(
                        std::os::fd::AsFd::as_fd(&fd),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    let t = nix::poll::PollTimeout::try_from(left.min(Duration::from_secs(1)))
                        .unwrap_or(nix::poll::PollTimeout::MAX);
                    let _ = nix::poll::poll(&mut fds, t);
                }
                // Between supervisors (or none yet): look again shortly.
                None => std::thread::sleep(left.min(Duration::from_millis(5))),
            }
        }
    }

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
    let stat = codex_sys::read_proc_stat(pid).ok()?;
    let after = &stat[stat.iter().rposition(|b| *b == b')')? + 1..];
    after.iter().copied().find(|b| !b.is_ascii_whitespace())
}
