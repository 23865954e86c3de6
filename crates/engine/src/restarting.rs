//! The engine's side of restart policies: a user's `stop`/`kill` of a container
//! between two runs, the repair of one whose supervisor died meanwhile, and
//! `start --all-restartable` (after a reboot or a crash of supervisors).
//!
//! Between runs the record says `restarting` and names the supervisor that sleeps
//! the backoff; `restart_at` is set while it sleeps and cleared (under the registry
//! lock, by `claim_restart` in the supervisor) once it starts the container again.

use std::time::{Duration, Instant};

use crate::config::ContainerConfig;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::registry::{ContainerRecord, ContainerStatus};

/// How long a `stop` waits for a restart under way to get the container running.
const RESTART_PATIENCE: Duration = Duration::from_secs(30);

/// Signals a user sends to end a container (`kill`), not to talk to it: after one of
/// these its restart policy does not run it again.
pub(crate) fn ends_container(signal: i32, cfg: &ContainerConfig) -> bool {
    let stop = cfg
        .stop_signal
        .as_deref()
        .and_then(|s| codex_runtime::parse_signal(s).ok());
    matches!(
        signal,
        libc::SIGKILL | libc::SIGTERM | libc::SIGINT | libc::SIGQUIT
    ) || Some(signal) == stop
}

impl Engine {
    /// A user ends a container that is `restarting` (`stop` with `stopped`, `kill`
    /// with `exited`): the intent is recorded under the lock before anything is
    /// signalled, so the policy never undoes it. Returns the record once it is no
    /// longer restarting: ended if the supervisor was sleeping the backoff (it is
    /// killed: it holds nothing of the last run), or running if a restart was already
    /// under way (the caller then stops that run as usual).
    pub(crate) fn end_restarting(
        &self,
        rec: &ContainerRecord,
        stopped: bool,
    ) -> Result<ContainerRecord> {
        let mut sleeper = None;
        let rec = self.registry.update_container(&rec.id, |r| {
            if r.status != ContainerStatus::Restarting {
                return Ok(());
            }
            r.manually_stopped = true;
            r.stop_requested |= stopped;
            if r.restart_at.is_some() || r.live_supervisor().is_none() {
                // Sleeping (or gone): it ends here.
                sleeper = r.live_supervisor();
                r.status = if stopped {
                    ContainerStatus::Stopped
                } else {
                    ContainerStatus::Exited
                };
                r.restart_at = None;
                r.set_supervisor(None);
            }
            Ok(())
        })?;
        if let Some(p) = sleeper {
            // Through a pidfd of that very process: never a recycled pid.
            if let Ok(Some(fd)) = p.open() {
                let _ = codex_sys::pidfd_send_signal(std::os::fd::AsFd::as_fd(&fd), libc::SIGKILL);
            }
        }
        // A restart under way: wait until it runs (or failed).
        let end = Instant::now() + RESTART_PATIENCE;
        let mut rec = rec;
        while rec.status == ContainerStatus::Restarting {
            if Instant::now() >= end {
                return Err(Error::wrong_state(
                    &rec.name,
                    rec.status,
                    "its restart did not finish in time",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
            rec = self.get(&rec.id)?;
        }
        Ok(rec)
    }

    /// A `restarting` record whose supervisor is gone (killed, or the host went
    /// down): nothing will start it again. What a restart under way may have started
    /// is killed and cleaned up, and the record says `exited` with the last run's exit
    /// code, so `start` (or `start --all-restartable`) brings it back.
    pub(crate) fn repair_restarting(&self, rec: ContainerRecord) -> Result<ContainerRecord> {
        let rt = self.runtime();
        if rt.load(&rec.id).is_ok() {
            let _ = rt.delete(&rec.id, true);
            crate::supervisor::unmount_rootfs(&self.container_dir(&rec.id)?);
        }
        self.registry
            .update_container(&rec.id, |r| {
                if r.status == ContainerStatus::Restarting && r.live_supervisor().is_none() {
                    r.status = ContainerStatus::Exited;
                    r.pid = None;
                    r.restart_at = None;
                    r.set_supervisor(None);
                    r.error = Some(format!(
                        "the supervisor died while restarting it (after {} restarts); \
                     start it again, or run start --all-restartable",
                        r.restart_count
                    ));
                }
                Ok(())
            })
            .inspect(|r| {
                if r.status == ContainerStatus::Exited && rec.status == ContainerStatus::Restarting
                {
                    let why = "the supervisor died while restarting it".to_string();
                    crate::events::emit_about(self.root(), r, "die", &[("error", why)]);
                }
            })
    }

    /// `start --all-restartable`: starts every container whose policy is `always`, or
    /// `unless-stopped` and a user did not stop it, that has run before and has no
    /// live supervisor (after a reboot, or a supervisor killed). Returns each one's
    /// name and how its start went.
    pub fn start_restartable(&self) -> Result<Vec<(String, Result<ContainerRecord>)>> {
        let mut out = Vec::new();
        for rec in self.list()? {
            let cfg: ContainerConfig =
                serde_json::from_value(rec.config.clone()).unwrap_or_default();
            let ended = matches!(
                rec.status,
                ContainerStatus::Exited | ContainerStatus::Stopped | ContainerStatus::Failed
            );
            let user_stopped = rec.manually_stopped || rec.status == ContainerStatus::Stopped;
            if ended
                && rec.started_at.is_some()
                && rec.live_supervisor().is_none()
                && cfg.restart.restarts_at_boot(user_stopped)
            {
                let started = self.start_keeping_count(&rec.id, None);
                out.push((rec.name, started));
            }
        }
        Ok(out)
    }
}
