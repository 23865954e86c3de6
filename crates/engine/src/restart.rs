//! Restart policies (`--restart no|on-failure[:MAX]|always|unless-stopped`) and their
//! backoff: the pure decisions. The supervisor applies them when a run ends (see
//! `supervisor::finish`), and `Engine::start_restartable` after a reboot.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// What happens when a container's process ends on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Never restarted.
    #[default]
    No,
    /// Restarted after a non-zero exit, at most `max` times (no limit without one).
    OnFailure { max: Option<u32> },
    /// Restarted after any exit, and brought back at boot even if a user stopped it.
    Always,
    /// As `always`, but a container a user stopped stays stopped, at boot too.
    UnlessStopped,
}

impl RestartPolicy {
    /// Parses `no`, `on-failure`, `on-failure:MAX`, `always`, `unless-stopped`.
    pub fn parse(field: &str, s: &str) -> Result<RestartPolicy> {
        let bad = || {
            Error::invalid(
                field,
                format!("{s:?} is not no, on-failure[:MAX], always or unless-stopped"),
            )
        };
        match s {
            "no" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" => Ok(RestartPolicy::OnFailure { max: None }),
            _ => {
                let max = s.strip_prefix("on-failure:").ok_or_else(bad)?;
                let max: u32 = max.parse().map_err(|_| {
                    Error::invalid(field, format!("{s:?}: MAX must be a whole number"))
                })?;
                Ok(RestartPolicy::OnFailure { max: Some(max) })
            }
        }
    }

    pub fn is_no(&self) -> bool {
        *self == RestartPolicy::No
    }

    /// Whether a run that ended with `exit_code` is followed by another, the container
    /// having been restarted `restarts` times already. `user_ended`: a user stopped or
    /// killed it (never undone by the policy); `timed_out`: its `--timeout` ended it
    /// (a run with a time limit is not run again).
    pub fn restarts_after(
        &self,
        exit_code: i32,
        restarts: u32,
        user_ended: bool,
        timed_out: bool,
    ) -> bool {
        if user_ended || timed_out {
            return false;
        }
        match *self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max } => exit_code != 0 && max.is_none_or(|m| restarts < m),
        }
    }

    /// Whether `start --all-restartable` brings the container back: `always` always,
    /// `unless-stopped` unless a user stopped it.
    pub fn restarts_at_boot(&self, user_stopped: bool) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::UnlessStopped => !user_stopped,
            _ => false,
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure { max: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure { max: Some(m) } => write!(f, "on-failure:{m}"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

impl Serialize for RestartPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RestartPolicy::parse("restart", &s).map_err(serde::de::Error::custom)
    }
}

/// The first delay before a restart.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The delay doubles up to this.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the delay to [`FIRST_DELAY`].
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// The delay before the next restart: [`FIRST_DELAY`] after a run of [`RESET_AFTER`]
/// or more (or the first time), else the previous delay doubled, at most
/// [`MAX_DELAY`]. A crash loop thus costs a few starts a minute at most, and a
/// service that ran for a while and crashed once comes back at once.
pub fn next_delay(previous: Option<Duration>, ran_for: Duration) -> Duration {
    match previous {
        Some(p) if ran_for < RESET_AFTER => p.saturating_mul(2).clamp(FIRST_DELAY, MAX_DELAY),
        _ => FIRST_DELAY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print_back() {
        for s in [
            "no",
            "on-failure",
            "on-failure:3",
            "on-failure:0",
            "always",
            "unless-stopped",
        ] {
            let p = RestartPolicy::parse("restart", s).unwrap();
            assert_eq!(p.to_string(), s);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<RestartPolicy>(&json).unwrap(), p);
        }
        for bad in [
            "",
            "yes",
            "on-failure:",
            "on-failure:-1",
            "on-failure:x",
            "always:3",
        ] {
            let e = RestartPolicy::parse("restart", bad)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("restart: "), "{e}");
        }
    }

    #[test]
    fn on_failure_counts_and_stops_at_max() {
        let p = RestartPolicy::OnFailure { max: Some(3) };
        assert!(
            !p.restarts_after(0, 0, false, false),
            "a clean exit is not a failure"
        );
        assert!(p.restarts_after(1, 0, false, false));
        assert!(p.restarts_after(137, 2, false, false));
        assert!(
            !p.restarts_after(1, 3, false, false),
            "3 restarts were the most"
        );
        let unlimited = RestartPolicy::OnFailure { max: None };
        assert!(unlimited.restarts_after(2, 10_000, false, false));
        assert!(!RestartPolicy::OnFailure { max: Some(0) }.restarts_after(1, 0, false, false));
    }

    #[test]
    fn always_restarts_unless_a_user_ended_it() {
        for p in [RestartPolicy::Always, RestartPolicy::UnlessStopped] {
            assert!(p.restarts_after(0, 99, false, false));
            assert!(p.restarts_after(1, 0, false, false));
            assert!(!p.restarts_after(143, 0, true, false), "stop wins over {p}");
            assert!(!p.restarts_after(124, 0, false, true));
        }
        assert!(!RestartPolicy::No.restarts_after(1, 0, false, false));
    }

    #[test]
    fn at_boot_always_comes_back_and_unless_stopped_only_if_not_stopped() {
        assert!(RestartPolicy::Always.restarts_at_boot(true));
        assert!(RestartPolicy::UnlessStopped.restarts_at_boot(false));
        assert!(!RestartPolicy::UnlessStopped.restarts_at_boot(true));
        assert!(!RestartPolicy::OnFailure { max: None }.restarts_at_boot(false));
        assert!(!RestartPolicy::No.restarts_at_boot(false));
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_a_long_run() {
        let quick = Duration::from_millis(5);
        let mut d = next_delay(None, quick);
        let mut seen = vec![d];
        for _ in 0..12 {
            d = next_delay(Some(d), quick);
            seen.push(d);
        }
        let ms: Vec<u128> = seen.iter().map(|d| d.as_millis()).collect();
        assert_eq!(
            ms,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000, 60000]
        );
        assert_eq!(next_delay(Some(MAX_DELAY), RESET_AFTER), FIRST_DELAY);
        assert_eq!(
            next_delay(Some(MAX_DELAY), RESET_AFTER - Duration::from_millis(1)),
            MAX_DELAY
        );
        // A recorded delay out of range (an edited record) is brought back into it.
        assert_eq!(next_delay(Some(Duration::ZERO), quick), FIRST_DELAY);
        assert_eq!(next_delay(Some(Duration::MAX), quick), MAX_DELAY);
    }
}
