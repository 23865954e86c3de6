//! `--warn-memory`, `--warn-cpu`, `--stop-on-memory` and `--monitor-interval`: what the
//! supervisor watches in a running container's usage, and how often it samples it
//! (see `codex_shim::monitor` and docs/monitors.md, "Thresholds").

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Sampling interval with a threshold set: a leak is seen within a second.
pub const THRESHOLD_INTERVAL: Duration = Duration::from_secs(1);
/// Sampling interval without one (for the history `stats --plot` draws): an idle
/// supervisor wakes for a few microseconds every 10 s.
pub const HISTORY_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest interval: samples are cheap, but a supervisor that wakes more than
/// a few times a second is no longer idle.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// A container's thresholds and sampling interval (all optional).
///
/// ```
/// use codex_engine::config::monitor::MonitorConfig;
/// use std::time::Duration;
/// let m = MonitorConfig {
///     warn_memory: Some(64 << 20),    // --warn-memory 64m: a `threshold` event
///     stop_on_memory: Some(96 << 20), // --stop-on-memory 96m: killed (137)
///     ..Default::default()
/// };
/// assert!(m.validate(Some(128 << 20)).is_ok());
/// // At or above --memory the kernel's OOM killer would act first.
/// let e = m.validate(Some(80 << 20)).unwrap_err();
/// assert!(e.to_string().starts_with("monitor.stop_on_memory: "));
/// // A threshold set: sampled every second.
/// assert_eq!(m.interval(), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// A `threshold` event when its memory use rises above this many bytes
    /// (`--warn-memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_memory: Option<u64>,
    /// A `threshold` event when its CPU use over a sampling interval rises above this
    /// percentage of one core (`--warn-cpu`; 150 = one and a half cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_cpu: Option<f64>,
    /// It is killed (and its restart policy applies) when its memory use rises above
    /// this many bytes (`--stop-on-memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_on_memory: Option<u64>,
    /// Milliseconds between two samples (`--monitor-interval`); default
    /// [`THRESHOLD_INTERVAL`] with a threshold, else [`HISTORY_INTERVAL`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
}

impl MonitorConfig {
    pub fn is_default(&self) -> bool {
        *self == MonitorConfig::default()
    }

    /// The thresholds as the supervisor judges them.
    pub fn thresholds(&self) -> codex_shim::monitor::Thresholds {
        codex_shim::monitor::Thresholds {
            warn_memory: self.warn_memory,
            warn_cpu: self.warn_cpu,
            stop_memory: self.stop_on_memory,
        }
    }

    /// How often the supervisor samples.
    pub fn interval(&self) -> Duration {
        match self.interval_ms {
            Some(ms) => Duration::from_millis(ms),
            None if self.thresholds().any() => THRESHOLD_INTERVAL,
            None => HISTORY_INTERVAL,
        }
    }

    /// Errors name the field; `memory_limit` is the container's `--memory`.
    pub fn validate(&self, memory_limit: Option<u64>) -> Result<()> {
        if let Some(c) = self.warn_cpu {
            if !(c > 0.0 && c.is_finite()) {
                return Err(Error::invalid(
                    "monitor.warn_cpu",
                    format!("{c} must be a percentage above 0 (100 = one core)"),
                ));
            }
        }
        for (field, v) in [
            ("monitor.warn_memory", self.warn_memory),
            ("monitor.stop_on_memory", self.stop_on_memory),
        ] {
            if v == Some(0) {
                return Err(Error::invalid(field, "must be at least 1 byte"));
            }
            if let (Some(v), Some(l)) = (v, memory_limit) {
                if v >= l {
                    return Err(Error::invalid(
                        field,
                        format!(
                            "{v} bytes is not below the memory limit ({l} bytes): the kernel's OOM killer would act first"
                        ),
                    ));
                }
            }
        }
        if let (Some(w), Some(s)) = (self.warn_memory, self.stop_on_memory) {
            if w >= s {
                return Err(Error::invalid(
                    "monitor.warn_memory",
                    format!("{w} bytes is not below stop_on_memory ({s} bytes): it would never warn first"),
                ));
            }
        }
        if let Some(ms) = self.interval_ms {
            if Duration::from_millis(ms) < MIN_INTERVAL {
                return Err(Error::invalid(
                    "monitor.interval_ms",
                    format!("{ms} ms is below the shortest interval, 100 ms"),
                ));
            }
        }
        Ok(())
    }
}

/// `--warn-cpu P`: a percentage of one core, with or without `%` (`80`, `150%`).
pub fn parse_cpu_percent(field: &str, s: &str) -> Result<f64> {
    let t = s.trim().trim_end_matches('%');
    match t.parse::<f64>() {
        Ok(p) if p > 0.0 && p.is_finite() => Ok(p),
        _ => Err(Error::invalid(
            field,
            format!("{s:?} is not a percentage of one core like 80 or 150%"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_validate_and_name_their_field() {
        let ok = MonitorConfig {
            warn_memory: Some(32 << 20),
            warn_cpu: Some(90.0),
            stop_on_memory: Some(48 << 20),
            interval_ms: Some(500),
        };
        assert!(ok.validate(Some(64 << 20)).is_ok());
        assert!(ok.validate(None).is_ok());
        assert_eq!(ok.interval(), Duration::from_millis(500));
        let err = |m: MonitorConfig, limit| m.validate(limit).unwrap_err().to_string();
        assert!(err(ok.clone(), Some(40 << 20)).starts_with("monitor.stop_on_memory: "));
        let e = err(
            MonitorConfig {
                warn_memory: Some(50),
                stop_on_memory: Some(50),
                ..Default::default()
            },
            None,
        );
        assert!(e.starts_with("monitor.warn_memory: "), "{e}");
        let e = err(
            MonitorConfig {
                interval_ms: Some(10),
                ..Default::default()
            },
            None,
        );
        assert!(e.starts_with("monitor.interval_ms: "), "{e}");
        let e = err(
            MonitorConfig {
                warn_cpu: Some(f64::NAN),
                ..Default::default()
            },
            None,
        );
        assert!(e.starts_with("monitor.warn_cpu: "), "{e}");
    }

    #[test]
    fn the_interval_is_shorter_with_a_threshold() {
        assert_eq!(MonitorConfig::default().interval(), HISTORY_INTERVAL);
        let m = MonitorConfig {
            warn_cpu: Some(50.0),
            ..Default::default()
        };
        assert_eq!(m.interval(), THRESHOLD_INTERVAL);
    }

    #[test]
    fn cpu_percentages_parse() {
        assert_eq!(parse_cpu_percent("warn-cpu", "80").unwrap(), 80.0);
        assert_eq!(parse_cpu_percent("warn-cpu", "150%").unwrap(), 150.0);
        for bad in ["", "0", "-5", "lots", "inf"] {
            let e = parse_cpu_percent("warn-cpu", bad).unwrap_err().to_string();
            assert!(e.starts_with("warn-cpu: "), "{e}");
        }
    }
}
