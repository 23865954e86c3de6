//! The memory ceiling: the one healing the engine does not do by itself. A bot whose
//! memory use is above its ceiling is stopped and started again by the executor. The
//! restarts back off as the engine's restart policies do (`restart::next_delay`: 100 ms
//! doubling up to a minute, reset once a run lasted 10 s), so a bot that leaks at once
//! after every start costs a few starts a minute, not a loop.

use std::time::{Duration, Instant};

use codex_engine::registry::ContainerStatus;
use codex_engine::restart::next_delay;

/// What to do about one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Below the ceiling, no ceiling, or not running.
    Fine,
    /// Above it, but the last ceiling restart is too recent: wait.
    Backoff { used: u64, ceiling: u64 },
    /// Above it: stop and start it again now.
    Restart { used: u64, ceiling: u64 },
}

/// One bot's ceiling and the history of the restarts it caused.
#[derive(Debug, Clone)]
pub struct Ceiling {
    limit: Option<u64>,
    /// When the last ceiling restart was done, and the delay it set.
    last: Option<(Instant, Duration)>,
    /// How many times the ceiling restarted the bot.
    pub restarts: u32,
}

impl Ceiling {
    pub fn new(limit: Option<u64>) -> Ceiling {
        Ceiling {
            limit,
            last: None,
            restarts: 0,
        }
    }

    /// Judges a sample taken at `now` of a bot in `status` that used `used` bytes.
    pub fn judge(&self, now: Instant, status: ContainerStatus, used: u64) -> Verdict {
        let Some(ceiling) = self.limit else {
            return Verdict::Fine;
        };
        if status != ContainerStatus::Running || used <= ceiling {
            return Verdict::Fine;
        }
        match self.last {
            Some((at, delay)) if now.duration_since(at) < delay => {
                Verdict::Backoff { used, ceiling }
            }
            _ => Verdict::Restart { used, ceiling },
        }
    }

    /// Records a ceiling restart done at `now`.
    pub fn restarted(&mut self, now: Instant) {
        let delay = match self.last {
            // The run that just ended began at the previous restart.
            Some((at, delay)) => next_delay(Some(delay), now.duration_since(at)),
            None => next_delay(None, Duration::ZERO),
        };
        self.last = Some((now, delay));
        self.restarts += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContainerStatus as S;

    const MIB: u64 = 1 << 20;

    #[test]
    fn only_a_running_bot_above_its_ceiling_is_restarted() {
        let c = Ceiling::new(Some(24 * MIB));
        let now = Instant::now();
        assert_eq!(
            c.judge(now, S::Running, 24 * MIB),
            Verdict::Fine,
            "at is not above"
        );
        assert_eq!(
            c.judge(now, S::Running, 25 * MIB),
            Verdict::Restart {
                used: 25 * MIB,
                ceiling: 24 * MIB
            }
        );
        for s in [S::Paused, S::Restarting, S::Exited, S::Stopped, S::Created] {
            assert_eq!(c.judge(now, s, 99 * MIB), Verdict::Fine, "{s}");
        }
        let none = Ceiling::new(None);
        assert_eq!(none.judge(now, S::Running, u64::MAX), Verdict::Fine);
    }

    #[test]
    fn ceiling_restarts_back_off_and_the_backoff_resets_after_a_long_run() {
        let mut c = Ceiling::new(Some(MIB));
        let t0 = Instant::now();
        c.restarted(t0);
        assert_eq!(c.restarts, 1);
        // First delay 100 ms: a sample 50 ms later waits, one 150 ms later restarts.
        let over = |c: &Ceiling, at| c.judge(at, S::Running, 2 * MIB);
        assert!(matches!(
            over(&c, t0 + Duration::from_millis(50)),
            Verdict::Backoff { .. }
        ));
        let t1 = t0 + Duration::from_millis(150);
        assert!(matches!(over(&c, t1), Verdict::Restart { .. }));
        c.restarted(t1);
        // Doubled: 200 ms.
        assert!(matches!(
            over(&c, t1 + Duration::from_millis(150)),
            Verdict::Backoff { .. }
        ));
        assert!(matches!(
            over(&c, t1 + Duration::from_millis(250)),
            Verdict::Restart { .. }
        ));
        // A run of 10 s or more resets it.
        let t2 = t1 + Duration::from_secs(11);
        c.restarted(t2);
        assert!(matches!(
            over(&c, t2 + Duration::from_millis(150)),
            Verdict::Restart { .. }
        ));
        assert_eq!(c.restarts, 3);
    }
}
