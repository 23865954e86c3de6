//! A container's health as its record keeps it: the status, the failing streak and the
//! last results; and how one more result changes them (pure, unit-tested).

use serde::{Deserialize, Serialize};

/// `starting` until the first success (or until failures count and reach the
/// retries), then `healthy` or `unhealthy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResult {
    /// RFC 3339 UTC.
    pub start: String,
    pub end: String,
    /// The command's exit code; for HTTP and TCP probes 0 (healthy) or 1; -1 when the
    /// probe was killed at its timeout or could not run.
    pub exit_code: i32,
    /// The HTTP status of an HTTP probe that got an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// What the probe printed (or why it failed), at most [`OUTPUT_MAX`] bytes.
    pub output: String,
}

impl HealthResult {
    pub fn passed(&self) -> bool {
        self.exit_code == 0
    }
}

/// A container's health in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthState {
    pub status: HealthStatus,
    /// Consecutive failures that counted.
    pub failing_streak: u32,
    /// The last [`LOG_KEEP`] results, oldest first.
    #[serde(default)]
    pub log: Vec<HealthResult>,
}

/// Results kept.
pub const LOG_KEEP: usize = 5;
/// Bytes of a probe's output kept.
pub const OUTPUT_MAX: usize = 4096;

impl HealthState {
    /// The health of a container that has just started.
    pub fn starting() -> HealthState {
        HealthState {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: Vec::new(),
        }
    }

    /// Adds `result`; returns the new status if it changed. A success makes it
    /// healthy and ends the streak; a failure counts unless it came in the start
    /// period while still `starting`, and `retries` counted failures in a row make it
    /// unhealthy.
    pub fn record(
        &mut self,
        result: HealthResult,
        in_start_period: bool,
        retries: u32,
    ) -> Option<HealthStatus> {
        let before = self.status;
        if result.passed() {
            self.failing_streak = 0;
            self.status = HealthStatus::Healthy;
        } else if !(in_start_period && self.status == HealthStatus::Starting) {
            self.failing_streak = self.failing_streak.saturating_add(1);
            if self.failing_streak >= retries.max(1) {
                self.status = HealthStatus::Unhealthy;
            }
        }
        self.log.push(result);
        let extra = self.log.len().saturating_sub(LOG_KEEP);
        self.log.drain(..extra);
        (self.status != before).then_some(self.status)
    }
}

/// `s` cut to at most [`OUTPUT_MAX`] bytes, at a character boundary.
pub fn truncate_output(s: &str) -> String {
    if s.len() <= OUTPUT_MAX {
        return s.to_string();
    }
    let mut end = OUTPUT_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i32) -> HealthResult {
        HealthResult {
            start: "t0".into(),
            end: "t1".into(),
            exit_code: code,
            http_status: None,
            output: format!("code {code}"),
        }
    }

    #[test]
    fn a_success_makes_it_healthy_and_retries_failures_unhealthy() {
        let mut h = HealthState::starting();
        assert_eq!(h.record(result(0), false, 3), Some(HealthStatus::Healthy));
        assert_eq!(h.record(result(1), false, 3), None);
        assert_eq!(h.record(result(1), false, 3), None);
        assert_eq!(h.failing_streak, 2);
        assert_eq!(
            h.record(result(-1), false, 3),
            Some(HealthStatus::Unhealthy)
        );
        assert_eq!(h.record(result(1), false, 3), None, "stays unhealthy");
        assert_eq!(h.failing_streak, 4);
        assert_eq!(h.record(result(0), false, 3), Some(HealthStatus::Healthy));
        assert_eq!(h.failing_streak, 0);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_until_the_first_success() {
        let mut h = HealthState::starting();
        for _ in 0..10 {
            assert_eq!(h.record(result(1), true, 1), None);
        }
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
        // Past the start period they count.
        assert_eq!(h.record(result(1), false, 2), None);
        assert_eq!(h.record(result(1), false, 2), Some(HealthStatus::Unhealthy));
        // Once healthy, a failure in the start period counts (Docker's rule).
        let mut h = HealthState::starting();
        h.record(result(0), true, 1);
        assert_eq!(h.record(result(1), true, 1), Some(HealthStatus::Unhealthy));
    }

    #[test]
    fn only_the_last_five_results_are_kept_and_output_is_cut() {
        let mut h = HealthState::starting();
        for code in 0..8 {
            h.record(result(code), false, 100);
        }
        let codes: Vec<i32> = h.log.iter().map(|r| r.exit_code).collect();
        assert_eq!(codes, [3, 4, 5, 6, 7]);
        let long = "é".repeat(OUTPUT_MAX);
        let cut = truncate_output(&long);
        assert!(cut.len() <= OUTPUT_MAX && cut.len() >= OUTPUT_MAX - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate_output("ok"), "ok");
    }
}
