//! A container's usage history as the supervisor sampled it (`codex_shim::history`:
//! a bounded file in the container's directory), turned into points a person reads:
//! CPU % between two samples, memory in bytes. `stats --plot` draws them
//! ([`crate::plot`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use codex_shim::history::{History, Sample};
use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Context, Result};

/// One sample of a container's usage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UsagePoint {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Percent of one core since the sample before; `None` for the first sample of a
    /// run (its counter starts again in a new cgroup) or after a gap.
    pub cpu_percent: Option<f64>,
    /// Bytes in use.
    pub memory: u64,
}

/// Samples further apart than this many intervals are not one run's neighbours.
const GAP: u64 = 5;

/// The points of `samples` (oldest first): CPU % from each pair of neighbours.
pub fn points(samples: &[Sample]) -> Vec<UsagePoint> {
    // The usual distance between samples, to tell a gap (a stop, a restart's
    // backoff) from a late wake.
    let mut gaps: Vec<u64> = samples
        .windows(2)
        .map(|w| w[1].time_ms.saturating_sub(w[0].time_ms))
        .collect();
    gaps.sort_unstable();
    let usual = gaps.get(gaps.len() / 2).copied().unwrap_or(0).max(1);
    let mut out = Vec::with_capacity(samples.len());
    let mut prev: Option<&Sample> = None;
    for s in samples {
        let cpu = prev.and_then(|p| {
            let dt = s.time_ms.checked_sub(p.time_ms)?;
            if dt == 0 || dt > usual * GAP || s.cpu_ns < p.cpu_ns {
                return None;
            }
            Some((s.cpu_ns - p.cpu_ns) as f64 / 1e6 / dt as f64 * 100.0)
        });
        out.push(UsagePoint {
            time_ms: s.time_ms,
            cpu_percent: cpu,
            memory: s.memory,
        });
        prev = Some(s);
    }
    out
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

impl Engine {
    /// The usage history its supervisors sampled of a container (running or not),
    /// oldest first, from `since` on: up to the last 1024 samples, one every
    /// `--monitor-interval` (default 10 s, 1 s with a threshold) while it ran.
    ///
    /// ```no_run
    /// # fn demo(engine: &codex_engine::engine::Engine) -> Result<(), Box<dyn std::error::Error>> {
    /// let since = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
    /// let points = engine.usage_history("web", Some(since))?;
    /// let busiest = points.iter().filter_map(|p| p.cpu_percent).fold(0.0, f64::max);
    /// println!("web: {} samples, busiest {busiest:.0}% of a core", points.len());
    /// std::fs::write("web.svg", codex_engine::plot::svg("web", &points))?;
    /// # Ok(()) }
    /// ```
    pub fn usage_history(
        &self,
        reference: &str,
        since: Option<SystemTime>,
    ) -> Result<Vec<UsagePoint>> {
        let rec = self.get(reference)?;
        let dir = self.registry.container_dir(&rec.id)?;
        let path = crate::supervisor::history_path(&dir);
        let samples = History::read(&path).ctx(|| format!("reading {}", path.display()))?;
        let from = since.map_or(0, ms);
        Ok(points(&samples)
            .into_iter()
            .filter(|p| p.time_ms >= from)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(time_ms: u64, cpu_ms: u64, memory: u64) -> Sample {
        Sample {
            time_ms,
            cpu_ns: cpu_ms * 1_000_000,
            memory,
        }
    }

    #[test]
    fn cpu_comes_from_neighbours_and_restarts_and_gaps_break_it() {
        let p = points(&[
            s(1000, 0, 10),
            s(2000, 1000, 20),  // one core busy
            s(3000, 1500, 30),  // half
            s(4000, 5, 40),     // a new run: the counter went back
            s(5000, 255, 50),   // a quarter
            s(60000, 300, 60),  // after a gap: no rate
            s(61000, 1300, 70), // one core
        ]);
        let cpu: Vec<Option<f64>> = p.iter().map(|p| p.cpu_percent).collect();
        assert_eq!(
            cpu,
            [
                None,
                Some(100.0),
                Some(50.0),
                None,
                Some(25.0),
                None,
                Some(100.0)
            ]
        );
        assert_eq!(p[6].memory, 70);
        assert_eq!(p[6].time_ms, 61000);
        assert!(points(&[]).is_empty());
    }
}
