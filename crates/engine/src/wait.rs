//! `wait --condition running|healthy|exited|removed`: blocks until a container reaches
//! a condition, sleeping in `poll(2)` on an inotify watch of its directory (every
//! change of its record is an atomic rename of `state.json` there; its removal renames
//! the directory away) and a pidfd of its supervisor (a supervisor that dies changes
//! nothing on disk: the next look repairs the record). No polling.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::config::ContainerConfig;
use crate::engine::{starting, Engine};
use crate::error::{Context, Error, Result};
use crate::health::HealthStatus;
use crate::registry::{ContainerRecord, ContainerStatus};

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Its process runs (running or paused).
    Running,
    /// It runs and its health check says healthy.
    Healthy,
    /// It has ended and will not run again by itself (exited, stopped or failed; not
    /// between two runs of its restart policy), or it was removed.
    Exited,
    /// Its record is gone.
    Removed,
}

impl std::str::FromStr for WaitCondition {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "running" => Ok(WaitCondition::Running),
            "healthy" => Ok(WaitCondition::Healthy),
            "exited" | "stopped" => Ok(WaitCondition::Exited),
            "removed" => Ok(WaitCondition::Removed),
            _ => Err(Error::invalid(
                "condition",
                format!("{s:?} is not running, healthy, exited or removed"),
            )),
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitOutcome {
    /// The condition holds: the record as it was then (none once removed).
    Reached(Option<ContainerRecord>),
    /// The timeout passed first: the record as it was then.
    TimedOut(Option<ContainerRecord>),
}

/// Whether `rec` (None: removed) meets `cond`; an error when it never can by itself
/// (a container that has ended cannot turn healthy).
fn check(cond: WaitCondition, rec: Option<&ContainerRecord>) -> Result<bool> {
    let Some(rec) = rec else {
        return match cond {
            // Removed (`--rm` or `rm`): it has certainly ended.
            WaitCondition::Removed | WaitCondition::Exited => Ok(true),
            _ => Err(Error::NotFound {
                kind: "container",
                name: "(removed while waited for)".into(),
            }),
        };
    };
    let ended = matches!(
        rec.status,
        ContainerStatus::Exited
            | ContainerStatus::Stopped
            | ContainerStatus::Failed
            | ContainerStatus::Removing
    ) && !starting(rec);
    let never = |what: &str| {
        Error::wrong_state(
            &rec.name,
            rec.status,
            format!("it ended before it was {what} (start it again to wait for that)"),
        )
    };
    match cond {
        WaitCondition::Running => match rec.status {
            ContainerStatus::Running | ContainerStatus::Paused => Ok(true),
            _ if ended => Err(never("running")),
            _ => Ok(false),
        },
        WaitCondition::Healthy => {
            let cfg: ContainerConfig =
                serde_json::from_value(rec.config.clone()).unwrap_or_default();
            if !cfg.health.as_ref().is_some_and(|h| h.enabled()) {
                return Err(Error::invalid(
                    "condition",
                    format!("{} has no health check: it can never be healthy", rec.name),
                ));
            }
            let healthy = rec.status == ContainerStatus::Running
                && rec
                    .health
                    .as_ref()
                    .is_some_and(|h| h.status == HealthStatus::Healthy);
            if healthy {
                Ok(true)
            } else if ended {
                Err(never("healthy"))
            } else {
                Ok(false)
            }
        }
        WaitCondition::Exited => Ok(ended && rec.status != ContainerStatus::Removing),
        WaitCondition::Removed => Ok(false),
    }
}

impl Engine {
    /// Blocks until the container `reference` meets `cond`, or `timeout` passes
    /// (`None`: no limit). Fails at once when the condition can no longer come by
    /// itself (waiting for `healthy` or `running` on a container that has ended, or
    /// for `healthy` on one without a health check).
    pub fn wait_for(
        &self,
        reference: &str,
        cond: WaitCondition,
        timeout: Option<Duration>,
    ) -> Result<WaitOutcome> {
        let first = self.get(reference)?;
        let id = first.id.clone();
        let dir = self.container_dir(&id)?;
        let end = timeout.map(|t| Instant::now() + t);
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .ctx(|| "creating an inotify instance")?;
        // Watched before the record is read again: no change can fall in between.
        let watched = inotify.add_watch(
            &dir,
            AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF,
        );
        // The index: its rename ends a removal.
        let _ = inotify.add_watch(self.root(), AddWatchFlags::IN_MOVED_TO);
        loop {
            let rec = match self.get(&id) {
                Ok(r) => Some(r),
                Err(Error::NotFound { .. }) => None,
                // An `rm` between renaming the directory away and writing the index:
                // the index's rename (watched too) wakes us again.
                Err(Error::Corrupt { .. }) if !dir.exists() => Some(first.clone()),
                Err(e) => return Err(e),
            };
            let removing = rec.is_some() && !dir.exists();
            if !removing && check(cond, rec.as_ref())? {
                return Ok(WaitOutcome::Reached(rec));
            }
            let left = match end {
                Some(e) => {
                    let left = e.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(WaitOutcome::TimedOut(rec));
                    }
                    Some(left)
                }
                None => None,
            };
            let pidfd = rec.as_ref().and_then(ContainerRecord::supervisor_pidfd);
            let mut fds = Vec::new();
            if watched.is_ok() {
                fds.push(PollFd::new(inotify.as_fd(), PollFlags::POLLIN));
            }
            if let Some(p) = pidfd.as_ref() {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            // The directory gone (removed between the reads) or not watchable: look
            // again in a while rather than sleep without a wake-up.
            let nap = if watched.is_ok() {
                left
            } else {
                Some(left.map_or(Duration::from_millis(100), |l| {
                    l.min(Duration::from_millis(100))
                }))
            };
            let t = nap
                .map(|l| PollTimeout::try_from(l).unwrap_or(PollTimeout::MAX))
                .unwrap_or(PollTimeout::NONE);
            match poll(&mut fds, t) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).ctx(|| "waiting for the container"),
            }
            drop(fds);
            // Drained: the events only say "look again".
            while inotify.read_events().is_ok_and(|e| !e.is_empty()) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(status: ContainerStatus, health: Option<HealthStatus>, check: bool) -> ContainerRecord {
        let mut cfg = serde_json::json!({});
        if check {
            cfg["health"] = serde_json::json!({"probe": {"type": "tcp", "port": 80}});
        }
        let mut r = ContainerRecord::new("a".repeat(64), "c".into(), cfg, Default::default());
        r.status = status;
        r.health = health.map(|s| crate::health::HealthState {
            status: s,
            failing_streak: 0,
            log: Vec::new(),
        });
        r
    }

    #[test]
    fn conditions_hold_wait_or_can_never_hold() {
        use ContainerStatus as S;
        use WaitCondition as W;
        let running = rec(S::Running, Some(HealthStatus::Starting), true);
        assert!(check(W::Running, Some(&running)).unwrap());
        assert!(!check(W::Healthy, Some(&running)).unwrap());
        assert!(!check(W::Exited, Some(&running)).unwrap());
        assert!(!check(W::Removed, Some(&running)).unwrap());
        let healthy = rec(S::Running, Some(HealthStatus::Healthy), true);
        assert!(check(W::Healthy, Some(&healthy)).unwrap());
        let unhealthy = rec(S::Running, Some(HealthStatus::Unhealthy), true);
        assert!(
            !check(W::Healthy, Some(&unhealthy)).unwrap(),
            "it may recover"
        );
        let restarting = rec(S::Restarting, Some(HealthStatus::Unhealthy), true);
        assert!(
            !check(W::Exited, Some(&restarting)).unwrap(),
            "it runs again"
        );
        assert!(!check(W::Running, Some(&restarting)).unwrap());
        let created = rec(S::Created, None, true);
        assert!(!check(W::Running, Some(&created)).unwrap());
        assert!(!check(W::Exited, Some(&created)).unwrap());
        for s in [S::Exited, S::Stopped, S::Failed] {
            let ended = rec(s, Some(HealthStatus::Healthy), true);
            assert!(check(W::Exited, Some(&ended)).unwrap());
            assert!(check(W::Healthy, Some(&ended)).is_err());
            assert!(check(W::Running, Some(&ended)).is_err());
        }
        let unchecked = rec(S::Running, None, false);
        let e = check(W::Healthy, Some(&unchecked)).unwrap_err().to_string();
        assert!(e.contains("no health check"), "{e}");
        assert!(check(W::Removed, None).unwrap());
        assert!(check(W::Exited, None).unwrap());
        assert!(check(W::Running, None).is_err());
        assert!(check(W::Healthy, None).is_err());
        for (s, w) in [
            ("running", W::Running),
            ("healthy", W::Healthy),
            ("exited", W::Exited),
            ("removed", W::Removed),
        ] {
            assert_eq!(s.parse::<WaitCondition>().unwrap(), w);
        }
        assert!("up"
            .parse::<WaitCondition>()
            .unwrap_err()
            .to_string()
            .starts_with("condition: "));
    }
}
