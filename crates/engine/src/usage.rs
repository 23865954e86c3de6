//! `stats`: what running containers use, in the units a person reads (CPU %, bytes).
//! CPU % needs two samples of the cgroup's usage counter; every container is sampled,
//! then one window passes, then every container is sampled again, so asking for 200
//! containers costs one window, not 200.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::registry::{ContainerRecord, ContainerStatus};

/// One container's usage over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerUsage {
    pub id: String,
    pub name: String,
    /// 100 = one core busy for the whole window.
    pub cpu_percent: f64,
    pub memory_usage: u64,
    /// The container's memory limit, or the host's memory when it has none.
    pub memory_limit: u64,
    pub memory_percent: f64,
    pub pids: u64,
    pub block_read: u64,
    pub block_write: u64,
    /// At the end of the window; `None` without a network namespace of its own.
    pub network: Option<crate::network::netstats::NetCounters>,
}

/// A raw sample: the runtime's `events --stats` data and when it was taken.
pub struct Sample {
    pub data: Value,
    pub at: Instant,
}

fn cpu_ns(v: &Value) -> u64 {
    v["cpu"]["usage"]["total"].as_u64().unwrap_or(0)
}

fn block_bytes(v: &Value, op: &str) -> u64 {
    v["blkio"]["ioServiceBytesRecursive"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["op"] == op)
                .filter_map(|e| e["value"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Total memory of the host, for containers without a limit.
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let l = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            l.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kb| kb * 1024)
        .unwrap_or(u64::MAX)
}

/// Usage between two samples of one container.
pub fn between(id: &str, name: &str, a: &Sample, b: &Sample, host_mem: u64) -> ContainerUsage {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    let used = cpu_ns(&b.data).saturating_sub(cpu_ns(&a.data));
    let cpu_percent = if secs > 0.0 {
        used as f64 / 1e9 / secs * 100.0
    } else {
        0.0
    };
    let memory_usage = b.data["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
    let limit = b.data["memory"]["usage"]["limit"].as_u64().unwrap_or(0);
    // No limit reads as 0 or as "max" (a huge number): show the host's memory.
    let memory_limit = if limit == 0 || limit > host_mem {
        host_mem
    } else {
        limit
    };
    ContainerUsage {
        id: id.to_string(),
        name: name.to_string(),
        cpu_percent,
        memory_usage,
        memory_limit,
        memory_percent: memory_usage as f64 / memory_limit.max(1) as f64 * 100.0,
        pids: b.data["pids"]["current"].as_u64().unwrap_or(0),
        block_read: block_bytes(&b.data, "Read"),
        block_write: block_bytes(&b.data, "Write"),
        network: None,
    }
}

/// The default window between the two samples of `stats`.
pub const WINDOW: Duration = Duration::from_millis(500);

/// How many threads sample at once: cgroup files are read in the kernel, so a few
/// threads use both cores of a small machine; more only queue.
const SAMPLERS: usize = 4;

/// `f` of every item, on up to [`SAMPLERS`] threads, in the items' order.
pub(crate) fn map_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let spread = crate::parallel::Spread {
        min_per_thread: 2,
        max_threads: SAMPLERS,
    };
    crate::parallel::map(items.iter().collect(), spread, f)
}

impl Engine {
    /// CPU %, memory, pids and block I/O of containers over `window` (one window for
    /// all of them). With no references: every running container. A named container
    /// that is not running is an error; one that stops during the window is left out.
    /// Each sample reads each container's cgroup files; the samples of many containers
    /// are taken on a few threads at once.
    pub fn usage(&self, references: &[String], window: Duration) -> Result<Vec<ContainerUsage>> {
        let recs: Vec<ContainerRecord> = if references.is_empty() {
            self.list()?
                .into_iter()
                .filter(|r| r.status == ContainerStatus::Running)
                .collect()
        } else {
            references
                .iter()
                .map(|r| self.get(r))
                .collect::<Result<_>>()?
        };
        for rec in &recs {
            if !matches!(
                rec.status,
                ContainerStatus::Running | ContainerStatus::Paused
            ) {
                return Err(Error::wrong_state(
                    &rec.name,
                    rec.status,
                    "it must be running",
                ));
            }
        }
        let rt = self.runtime();
        // Each container's runtime state is read once, for where its cgroups are; each
        // sample then reads only the counters shown (`Cgroups::brief_stats`).
        let sample = |cg: &codex_runtime::cgroups::Cgroups| Sample {
            data: cg.brief_stats(),
            at: Instant::now(),
        };
        let first = map_parallel(&recs, |rec| -> Result<_> {
            let cg = rt.load(&rec.id)?.state.cgroups;
            let a = sample(&cg);
            Ok((cg, a))
        })
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
        std::thread::sleep(window);
        let host_mem = host_memory();
        let pairs: Vec<(&ContainerRecord, &codex_runtime::cgroups::Cgroups)> =
            recs.iter().zip(first.iter().map(|(cg, _)| cg)).collect();
        let second = map_parallel(&pairs, |(rec, cg)| {
            // A container deleted during the window (its cgroups gone) is left out.
            if !cg.dirs.iter().any(|d| d.path.is_dir()) {
                return None;
            }
            let b = sample(cg);
            Some((b, rec.pid.and_then(crate::network::netstats::of_pid)))
        });
        Ok(recs
            .iter()
            .zip(first.into_iter().map(|(_, a)| a))
            .zip(second)
            .filter_map(|((rec, a), b)| {
                let (b, net) = b?;
                let mut u = between(&rec.id, &rec.name, &a, &b, host_mem);
                u.network = net;
                Some(u)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cpu_percent_comes_from_the_counter_difference_over_the_window() {
        let at = Instant::now();
        let a = Sample {
            data: json!({"cpu": {"usage": {"total": 1_000_000_000u64}}}),
            at,
        };
        let b = Sample {
            data: json!({
                "cpu": {"usage": {"total": 1_250_000_000u64}},
                "memory": {"usage": {"usage": 50u64 << 20, "limit": 100u64 << 20}},
                "pids": {"current": 3},
                "blkio": {"ioServiceBytesRecursive": [
                    {"op": "Read", "value": 10}, {"op": "Write", "value": 20},
                    {"op": "Read", "value": 5}
                ]}
            }),
            at: at + Duration::from_millis(500),
        };
        let u = between("i", "n", &a, &b, 1 << 40);
        assert!((u.cpu_percent - 50.0).abs() < 1e-9, "{u:?}");
        assert_eq!(u.memory_limit, 100 << 20);
        assert!((u.memory_percent - 50.0).abs() < 1e-9);
        assert_eq!((u.pids, u.block_read, u.block_write), (3, 15, 20));
    }

    #[test]
    fn no_memory_limit_shows_the_hosts_memory() {
        let s = |v: Value| Sample {
            data: v,
            at: Instant::now(),
        };
        let b = s(json!({"memory": {"usage": {"usage": 1024, "limit": u64::MAX}}}));
        let u = between("i", "n", &s(json!({})), &b, 4096);
        assert_eq!(u.memory_limit, 4096);
        assert!((u.memory_percent - 25.0).abs() < 1e-9);
    }
}
