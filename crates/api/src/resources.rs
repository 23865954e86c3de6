//! Docker's `Resources` fields (in `HostConfig` for create, the whole body for
//! `/containers/{id}/update`) as the engine's limits. Each field Docker has is either
//! mapped or refused with a 400 that names it when it asks for something (never
//! silently dropped); the zero values the docker CLI always sends (`0`, `""`, `[]`,
//! `null`, `MemorySwappiness: -1`, `OomKillDisable: false`) ask for nothing. Pure:
//! unit-tested.

use std::collections::BTreeMap;

use codex_engine::config::sched::{
    check_online, check_shares, check_swap, parse_cpuset, UNLIMITED_SWAP,
};
use codex_engine::config::Limits;
use codex_engine::update::LimitsUpdate;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ThrottleDevice {
    pub path: Option<String>,
    pub rate: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ResourcesBody {
    // Mapped.
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub blkio_device_read_bps: Option<Vec<ThrottleDevice>>,
    pub blkio_device_write_bps: Option<Vec<ThrottleDevice>>,
    // Refused when they ask for something (see `refuse`).
    pub blkio_weight: Option<i64>,
    pub blkio_weight_device: Option<Vec<Value>>,
    #[serde(rename = "BlkioDeviceReadIOps")]
    pub blkio_device_read_iops: Option<Vec<Value>>,
    #[serde(rename = "BlkioDeviceWriteIOps")]
    pub blkio_device_write_iops: Option<Vec<Value>>,
    pub cpu_realtime_period: Option<i64>,
    pub cpu_realtime_runtime: Option<i64>,
    pub cpu_count: Option<i64>,
    pub cpu_percent: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub memory_swappiness: Option<i64>,
    pub kernel_memory: Option<i64>,
    #[serde(rename = "KernelMemoryTCP")]
    pub kernel_memory_tcp: Option<i64>,
    pub oom_kill_disable: Option<bool>,
    pub cgroup_parent: Option<String>,
    pub device_cgroup_rules: Option<Vec<Value>>,
    pub device_requests: Option<Vec<Value>>,
    #[serde(rename = "IOMaximumIOps")]
    pub io_maximum_iops: Option<i64>,
    #[serde(rename = "IOMaximumBandwidth")]
    pub io_maximum_bandwidth: Option<i64>,
}

fn bad(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("{field}: {why}"))
}

fn nonzero(v: Option<i64>) -> bool {
    v.is_some_and(|n| n != 0)
}

fn nonempty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|l| !l.is_empty())
}

impl ResourcesBody {
    /// The fields codex-ctr has no limit for, by name and why, when they ask for one.
    fn refuse(&self, prefix: &str) -> ApiResult<()> {
        let checks: [(&str, bool, &str); 18] = [
            (
                "BlkioWeight",
                nonzero(self.blkio_weight),
                "no block-I/O weights (they need BFQ or CFQ, which this engine does not set up)",
            ),
            (
                "BlkioWeightDevice",
                nonempty(&self.blkio_weight_device),
                "no block-I/O weights",
            ),
            (
                "BlkioDeviceReadIOps",
                nonempty(&self.blkio_device_read_iops),
                "no I/O-operations limits (BlkioDeviceReadBps limits bytes)",
            ),
            (
                "BlkioDeviceWriteIOps",
                nonempty(&self.blkio_device_write_iops),
                "no I/O-operations limits (BlkioDeviceWriteBps limits bytes)",
            ),
            (
                "CpuRealtimePeriod",
                nonzero(self.cpu_realtime_period),
                "no real-time CPU scheduling",
            ),
            (
                "CpuRealtimeRuntime",
                nonzero(self.cpu_realtime_runtime),
                "no real-time CPU scheduling",
            ),
            (
                "CpuCount",
                nonzero(self.cpu_count),
                "a Windows field (use NanoCpus)",
            ),
            (
                "CpuPercent",
                nonzero(self.cpu_percent),
                "a Windows field (use NanoCpus)",
            ),
            (
                "MemoryReservation",
                nonzero(self.memory_reservation),
                "no soft memory limit",
            ),
            (
                "MemorySwappiness",
                self.memory_swappiness.is_some_and(|s| s != -1),
                "no per-container swappiness",
            ),
            (
                "KernelMemory",
                nonzero(self.kernel_memory),
                "kernel memory limits are gone from Linux",
            ),
            (
                "KernelMemoryTCP",
                nonzero(self.kernel_memory_tcp),
                "no TCP buffer limit",
            ),
            (
                "OomKillDisable",
                self.oom_kill_disable == Some(true),
                "the OOM killer stays on (a container could hang the host's memory)",
            ),
            (
                "CgroupParent",
                self.cgroup_parent.as_ref().is_some_and(|c| !c.is_empty()),
                "containers' cgroups are placed by the engine",
            ),
            (
                "DeviceCgroupRules",
                nonempty(&self.device_cgroup_rules),
                "no device rules (use Devices)",
            ),
            (
                "DeviceRequests",
                nonempty(&self.device_requests),
                "no GPU or other device requests",
            ),
            (
                "IOMaximumIOps",
                nonzero(self.io_maximum_iops),
                "a Windows field",
            ),
            (
                "IOMaximumBandwidth",
                nonzero(self.io_maximum_bandwidth),
                "a Windows field (use BlkioDeviceReadBps/WriteBps)",
            ),
        ];
        for (field, asks, why) in checks {
            if asks {
                return Err(bad(
                    &format!("{prefix}{field}"),
                    format!("not supported by codex-ctr: {why}"),
                ));
            }
        }
        Ok(())
    }

    fn positive(prefix: &str, field: &str, v: Option<i64>) -> ApiResult<Option<u64>> {
        match v {
            None | Some(0) => Ok(None),
            Some(n) if n < 0 => Err(bad(&format!("{prefix}{field}"), "must not be negative")),
            Some(n) => Ok(Some(u64::try_from(n).unwrap_or(0))),
        }
    }

    /// NanoCpus, or CpuQuota/CpuPeriod, as CPUs.
    fn cpus(&self, prefix: &str) -> ApiResult<Option<f64>> {
        let mut cpus = Self::positive(prefix, "NanoCpus", self.nano_cpus)?.map(|n| n as f64 / 1e9);
        if let Some(q) = Self::positive(prefix, "CpuQuota", self.cpu_quota)? {
            if cpus.is_some() {
                return Err(bad(
                    &format!("{prefix}CpuQuota"),
                    "conflicts with NanoCpus: give one",
                ));
            }
            let period = Self::positive(prefix, "CpuPeriod", self.cpu_period)?.unwrap_or(100_000);
            cpus = Some(q as f64 / period as f64);
        }
        Ok(cpus)
    }

    fn shares(&self, prefix: &str) -> ApiResult<Option<u64>> {
        let field = format!("{prefix}CpuShares");
        let s = Self::positive(prefix, "CpuShares", self.cpu_shares)?;
        if let Some(s) = s {
            check_shares(&field, s)?;
        }
        Ok(s)
    }

    /// A cpuset list, well-formed; `online` (`cpus`/`mems`): also present on this host
    /// (a 400 naming Docker's field, before the engine's own check).
    fn cpuset(
        prefix: &str,
        field: &str,
        v: &Option<String>,
        online: Option<&str>,
    ) -> ApiResult<Option<String>> {
        let Some(s) = v.as_ref().filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let field = format!("{prefix}{field}");
        parse_cpuset(&field, s)?;
        if let Some(what) = online {
            check_online(&field, what, s)?;
        }
        Ok(Some(s.clone()))
    }

    /// Docker's MemorySwap: 0 unset, -1 unlimited swap, else memory plus swap in bytes.
    fn swap(&self, prefix: &str) -> ApiResult<Option<i64>> {
        match self.memory_swap {
            None | Some(0) => Ok(None),
            Some(UNLIMITED_SWAP) => Ok(Some(UNLIMITED_SWAP)),
            Some(n) if n < 0 => Err(bad(
                &format!("{prefix}MemorySwap"),
                format!("{n} is neither a size nor -1 (unlimited swap)"),
            )),
            Some(n) => Ok(Some(n)),
        }
    }

    fn throttles(
        prefix: &str,
        field: &str,
        list: &Option<Vec<ThrottleDevice>>,
    ) -> ApiResult<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for (i, t) in list.iter().flatten().enumerate() {
            let f = format!("{prefix}{field}[{i}]");
            let path = t
                .path
                .clone()
                .filter(|p| p.starts_with("/dev/"))
                .ok_or_else(|| bad(&f, "Path must be a device under /dev"))?;
            let rate = t
                .rate
                .filter(|r| *r > 0)
                .ok_or_else(|| bad(&f, "Rate must be positive"))?;
            out.insert(path, rate);
        }
        Ok(out)
    }

    /// A new container's limits (`prefix` is `HostConfig.`).
    pub fn limits(&self, prefix: &str) -> ApiResult<Limits> {
        self.refuse(prefix)?;
        let memory = Self::positive(prefix, "Memory", self.memory)?;
        let memory_swap = self.swap(prefix)?;
        if let Some(s) = memory_swap {
            check_swap(&format!("{prefix}MemorySwap"), s, memory)?;
        }
        Ok(Limits {
            memory,
            memory_swap,
            cpus: self.cpus(prefix)?,
            cpu_shares: self.shares(prefix)?,
            cpuset_cpus: Self::cpuset(prefix, "CpusetCpus", &self.cpuset_cpus, Some("cpus"))?,
            cpuset_mems: Self::cpuset(prefix, "CpusetMems", &self.cpuset_mems, Some("mems"))?,
            // Docker: 0 and -1 are both "no limit".
            pids: self.pids_limit.filter(|p| *p > 0),
            io_read_bps: Self::throttles(
                prefix,
                "BlkioDeviceReadBps",
                &self.blkio_device_read_bps,
            )?,
            io_write_bps: Self::throttles(
                prefix,
                "BlkioDeviceWriteBps",
                &self.blkio_device_write_bps,
            )?,
            ..Default::default()
        })
    }

    /// What `/containers/{id}/update` changes (checked against the container's own
    /// limits by the engine).
    pub fn update(&self) -> ApiResult<LimitsUpdate> {
        self.refuse("")?;
        for (field, asks) in [
            ("BlkioDeviceReadBps", nonempty(&self.blkio_device_read_bps)),
            (
                "BlkioDeviceWriteBps",
                nonempty(&self.blkio_device_write_bps),
            ),
        ] {
            if asks {
                return Err(bad(
                    field,
                    "codex-ctr cannot change it on an existing container (set it at create)",
                ));
            }
        }
        Ok(LimitsUpdate {
            memory: Self::positive("", "Memory", self.memory)?,
            memory_swap: self.swap("")?,
            cpus: self.cpus("")?,
            cpu_shares: self.shares("")?,
            cpuset_cpus: Self::cpuset("", "CpusetCpus", &self.cpuset_cpus, Some("cpus"))?,
            cpuset_mems: Self::cpuset("", "CpusetMems", &self.cpuset_mems, Some("mems"))?,
            pids: self.pids_limit.filter(|p| *p != 0),
        })
    }
}

/// The resource fields of inspect's `HostConfig`, in Docker's names and zero values.
pub fn inspect_json(l: &Limits) -> Value {
    let bps = |m: &BTreeMap<String, u64>| -> Value {
        m.iter()
            .map(|(p, r)| serde_json::json!({"Path": p, "Rate": r}))
            .collect()
    };
    serde_json::json!({
        "Memory": l.memory.unwrap_or(0),
        "MemorySwap": l.memory_swap.unwrap_or(0),
        "MemoryReservation": 0,
        "NanoCpus": l.cpus.map(|c| (c * 1e9).round() as i64).unwrap_or(0),
        "CpuShares": l.cpu_shares.unwrap_or(0),
        "CpuQuota": 0, "CpuPeriod": 0,
        "CpusetCpus": l.cpuset_cpus.clone().unwrap_or_default(),
        "CpusetMems": l.cpuset_mems.clone().unwrap_or_default(),
        "PidsLimit": l.pids,
        "BlkioWeight": 0,
        "BlkioDeviceReadBps": bps(&l.io_read_bps),
        "BlkioDeviceWriteBps": bps(&l.io_write_bps),
        "OomKillDisable": false,
    })
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;
