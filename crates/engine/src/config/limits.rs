//! `Limits`: a container's resource limits in the units a user thinks in, and their
//! checks (field names `limits.*`); the CPU weight, cpuset and swap rules are in
//! `sched.rs`, shared with `update`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sched;
use crate::error::{Error, Result};

/// Resource limits in the units a user thinks in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// CPUs (0.5 = half a core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    /// RLIMIT_NOFILE (soft = hard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    /// Bytes per second, per device path (`/dev/vda`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub io_read_bps: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub io_write_bps: BTreeMap<String, u64>,
    /// Relative CPU weight under contention (`--cpu-shares`, 2..=262144; 1024 is what a
    /// container without it gets). Changes nothing while CPUs are idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    /// The CPUs it may run on (`0-2,4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    /// The memory nodes it may allocate from (`0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset_mems: Option<String>,
    /// Memory plus swap, bytes (at least `memory`, which it needs); -1: swap unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
}

impl Limits {
    /// Checks every limit (part of `ContainerConfig::validate`).
    pub fn validate(&self) -> Result<()> {
        if let Some(p) = self.pids {
            if p < 1 {
                return Err(Error::invalid("limits.pids", "must be at least 1"));
            }
        }
        if let Some(m) = self.memory {
            if m < 4 << 20 {
                return Err(Error::invalid("limits.memory", "must be at least 4 MiB"));
            }
        }
        if let Some(c) = self.cpus {
            if !(c > 0.0 && c.is_finite()) {
                return Err(Error::invalid("limits.cpus", "must be more than 0"));
            }
        }
        sched::validate(
            "limits.",
            self.memory,
            self.cpu_shares,
            self.cpuset_cpus.as_deref(),
            self.cpuset_mems.as_deref(),
            self.memory_swap,
        )?;
        for (field, rates) in [
            ("limits.io_read_bps", &self.io_read_bps),
            ("limits.io_write_bps", &self.io_write_bps),
        ] {
            for (dev, rate) in rates {
                if !dev.starts_with("/dev/") {
                    return Err(Error::invalid(
                        field,
                        format!("{dev:?} is not a device path under /dev"),
                    ));
                }
                if *rate == 0 {
                    return Err(Error::invalid(
                        field,
                        format!("{dev}: rate must be positive"),
                    ));
                }
            }
        }
        Ok(())
    }
}
