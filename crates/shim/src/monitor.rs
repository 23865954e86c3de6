//! What the supervisor watches between a container's start and its end, besides its
//! output: its memory and CPU, sampled from its cgroup every interval (a deadline of
//! the pump's poll loop, like a health check: no thread, no tick in between). Each
//! sample goes into the container's usage history ([`crate::history`]) and is judged
//! against its thresholds:
//!
//! - `--warn-memory N`, `--warn-cpu P`: a crossing is reported once; the threshold is
//!   armed again only when the value has dropped below [`REARM`] of the limit, so a
//!   value that hovers around the limit does not report every sample.
//! - `--stop-on-memory N`: the container is killed (the pump's stop: SIGKILL to every
//!   process of its cgroup), reported once.
//!
//! The judging ([`Watch::judge`]) is pure and unit-tested; reading the cgroup is
//! [`UsageFiles::read`].

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use crate::history::{History, Sample};

/// A threshold is armed again once its value is below this share of its limit.
pub const REARM: f64 = 0.9;

/// The thresholds of one container (all optional).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Thresholds {
    /// Bytes of memory (the cgroup's usage, as `stats` shows it).
    pub warn_memory: Option<u64>,
    /// Percent of one core over a sampling interval (150 = one and a half cores).
    pub warn_cpu: Option<f64>,
    /// Bytes of memory past which the container is killed.
    pub stop_memory: Option<u64>,
}

impl Thresholds {
    pub fn any(&self) -> bool {
        self.warn_memory.is_some() || self.warn_cpu.is_some() || self.stop_memory.is_some()
    }
}

/// Which threshold was crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    WarnMemory,
    WarnCpu,
    StopMemory,
}

impl Which {
    /// As events and command lines name it: the flag without its dashes.
    pub fn name(self) -> &'static str {
        match self {
            Which::WarnMemory => "warn-memory",
            Which::WarnCpu => "warn-cpu",
            Which::StopMemory => "stop-on-memory",
        }
    }

    pub fn parse(s: &str) -> Option<Which> {
        [Which::WarnMemory, Which::WarnCpu, Which::StopMemory]
            .into_iter()
            .find(|w| w.name() == s)
    }
}

/// A threshold crossed by a sample: the value seen and the limit, as text (bytes,
/// or a percentage with one decimal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    pub which: Which,
    pub value: String,
    pub limit: String,
}

/// One threshold's memory of whether it has reported: armed, it reports the next
/// value above its limit and disarms; disarmed, it waits for a value below
/// [`REARM`] of the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    armed: bool,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis { armed: true }
    }
}

impl Hysteresis {
    /// Whether `value` is a new crossing of `limit`.
    pub fn crossed(&mut self, value: f64, limit: f64) -> bool {
        if self.armed && value > limit {
            self.armed = false;
            return true;
        }
        if !self.armed && value < limit * REARM {
            self.armed = true;
        }
        false
    }
}

/// What one sample calls for.
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    pub crossings: Vec<Crossing>,
    /// `--stop-on-memory` was crossed: kill the container.
    pub stop: bool,
}

/// The cgroup files a container's usage is read from (absent: not accounted on this
/// host). A CPU file named `cpu.stat` is cgroup v2's (`usage_usec`); any other holds
/// nanoseconds (v1's `cpuacct.usage`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFiles {
    pub memory: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
}

/// Reads a small file into `buf`; the text read.
fn read_small<'a>(path: &std::path::Path, buf: &'a mut [u8]) -> Option<&'a str> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    std::str::from_utf8(&buf[..n]).ok()
}

/// The CPU nanoseconds of a cgroup's CPU file's text (see [`UsageFiles`]).
pub fn parse_cpu(text: &str, v2: bool) -> Option<u64> {
    if v2 {
        let us = text
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))?
            .trim()
            .parse::<u64>()
            .ok()?;
        return us.checked_mul(1000);
    }
    text.trim().parse().ok()
}

impl UsageFiles {
    /// (memory bytes, CPU nanoseconds), each if it could be read.
    pub fn read(&self) -> (Option<u64>, Option<u64>) {
        // On the stack: the shim's heap should not grow for this.
        let mut buf = [0u8; 512];
        let memory = self
            .memory
            .as_deref()
            .and_then(|p| read_small(p, &mut buf))
            .and_then(|t| t.trim().parse().ok());
        let cpu = self.cpu.as_deref().and_then(|p| {
            let v2 = p.file_name().is_some_and(|n| n == "cpu.stat");
            read_small(p, &mut buf).and_then(|t| parse_cpu(t, v2))
        });
        (memory, cpu)
    }
}

/// A container's thresholds and what they have seen.
#[derive(Debug, Default)]
pub struct Watch {
    pub thresholds: Thresholds,
    warn_memory: Hysteresis,
    warn_cpu: Hysteresis,
    stopped: bool,
    /// The last CPU counter and when it was read (CLOCK_MONOTONIC).
    last_cpu: Option<(u64, Duration)>,
}

impl Watch {
    pub fn new(thresholds: Thresholds) -> Watch {
        Watch {
            thresholds,
            ..Watch::default()
        }
    }

    /// CPU % since the last counter (`None` for the first, or a counter that went
    /// back: a new cgroup).
    pub fn cpu_percent(&mut self, cpu_ns: Option<u64>, now: Duration) -> Option<f64> {
        let ns = cpu_ns?;
        let last = self.last_cpu.replace((ns, now));
        let (prev, then) = last?;
        let secs = now.checked_sub(then)?.as_secs_f64();
        if secs <= 0.0 || ns < prev {
            return None;
        }
        Some((ns - prev) as f64 / 1e9 / secs * 100.0)
    }

    /// Judges one sample: memory in bytes, CPU in percent of one core.
    pub fn judge(&mut self, memory: Option<u64>, cpu: Option<f64>) -> Verdict {
        let t = self.thresholds;
        let mut v = Verdict::default();
        if let (Some(m), Some(limit)) = (memory, t.stop_memory) {
            if !self.stopped && m > limit {
                self.stopped = true;
                v.stop = true;
                v.crossings.push(Crossing {
                    which: Which::StopMemory,
                    value: m.to_string(),
                    limit: limit.to_string(),
                });
            }
        }
        if let (Some(m), Some(limit)) = (memory, t.warn_memory) {
            if self.warn_memory.crossed(m as f64, limit as f64) {
                v.crossings.push(Crossing {
                    which: Which::WarnMemory,
                    value: m.to_string(),
                    limit: limit.to_string(),
                });
            }
        }
        if let (Some(c), Some(limit)) = (cpu, t.warn_cpu) {
            if self.warn_cpu.crossed(c, limit) {
                v.crossings.push(Crossing {
                    which: Which::WarnCpu,
                    value: format!("{c:.1}"),
                    limit: format!("{limit:.1}"),
                });
            }
        }
        v
    }
}

/// The sampling of one running container: its files, thresholds and history.
pub struct Monitor {
    pub interval: Duration,
    pub files: UsageFiles,
    pub watch: Watch,
    /// The history file (absent: it could not be opened; thresholds still work).
    pub history: Option<History>,
}

impl Monitor {
    /// Samples now: appends to the history and judges the thresholds.
    pub fn sample(&mut self) -> Verdict {
        let now = crate::sys::monotonic();
        let (memory, cpu_ns) = self.files.read();
        if let Some(h) = self.history.as_mut() {
            let time_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            // A history that cannot be written loses samples, not the container.
            let _ = h.push(&Sample {
                time_ms,
                cpu_ns: cpu_ns.unwrap_or(0),
                memory: memory.unwrap_or(0),
            });
        }
        let cpu = self.watch.cpu_percent(cpu_ns, now);
        self.watch.judge(memory, cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_reports_once_per_crossing_and_rearms_below_its_band() {
        let mut h = Hysteresis::default();
        let seen: Vec<bool> = [50.0, 101.0, 150.0, 99.0, 95.0, 120.0, 89.0, 91.0, 100.5]
            .into_iter()
            .map(|v| h.crossed(v, 100.0))
            .collect();
        // 101 crosses; 150 and 120 do not (not re-armed: 99 and 95 are above 90);
        // 89 re-arms; 100.5 crosses again. Equal to the limit is not above it.
        assert_eq!(
            seen,
            [false, true, false, false, false, false, false, false, true]
        );
        let mut h = Hysteresis::default();
        assert!(!h.crossed(100.0, 100.0));
    }

    #[test]
    fn memory_warning_and_stop_each_report_once() {
        let mut w = Watch::new(Thresholds {
            warn_memory: Some(100),
            warn_cpu: None,
            stop_memory: Some(200),
        });
        assert_eq!(w.judge(Some(50), None), Verdict::default());
        let v = w.judge(Some(150), None);
        assert!(!v.stop);
        assert_eq!(
            v.crossings,
            [Crossing {
                which: Which::WarnMemory,
                value: "150".into(),
                limit: "100".into()
            }]
        );
        assert_eq!(w.judge(Some(160), None), Verdict::default());
        let v = w.judge(Some(250), None);
        assert!(v.stop);
        assert_eq!(v.crossings[0].which, Which::StopMemory);
        assert_eq!(v.crossings.len(), 1);
        // The stop is not asked for twice while the container dies.
        assert_eq!(w.judge(Some(260), None), Verdict::default());
        // No value read: nothing judged.
        assert_eq!(w.judge(None, None), Verdict::default());
    }

    #[test]
    fn cpu_percent_comes_from_counter_differences() {
        let mut w = Watch::new(Thresholds {
            warn_cpu: Some(80.0),
            ..Thresholds::default()
        });
        let s = Duration::from_secs;
        assert_eq!(w.cpu_percent(Some(1_000_000_000), s(10)), None);
        let c = w.cpu_percent(Some(1_950_000_000), s(11)).unwrap();
        assert!((c - 95.0).abs() < 1e-9, "{c}");
        let v = w.judge(Some(1), Some(c));
        assert_eq!(v.crossings[0].which, Which::WarnCpu);
        assert_eq!(v.crossings[0].value, "95.0");
        assert_eq!(v.crossings[0].limit, "80.0");
        // A counter that went back (a new cgroup after a restart) gives no figure.
        assert_eq!(w.cpu_percent(Some(5), s(12)), None);
        assert_eq!(w.cpu_percent(None, s(13)), None);
    }

    #[test]
    fn cgroup_cpu_files_of_both_versions_parse() {
        assert_eq!(parse_cpu("123456789\n", false), Some(123_456_789));
        assert_eq!(
            parse_cpu("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n", true),
            Some(1_500_000)
        );
        assert_eq!(parse_cpu("user_usec 1\n", true), None);
        assert_eq!(parse_cpu("x", false), None);
    }

    #[test]
    fn usage_is_read_from_the_files() {
        let dir = std::env::temp_dir().join(format!("codex-shim-usage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.usage_in_bytes"), "4096\n").unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 7\n").unwrap();
        let f = UsageFiles {
            memory: Some(dir.join("memory.usage_in_bytes")),
            cpu: Some(dir.join("cpu.stat")),
        };
        assert_eq!(f.read(), (Some(4096), Some(7000)));
        let none = UsageFiles {
            memory: Some(dir.join("gone")),
            cpu: None,
        };
        assert_eq!(none.read(), (None, None));
        assert_eq!(Which::parse("warn-cpu"), Some(Which::WarnCpu));
        assert_eq!(Which::parse("nope"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
