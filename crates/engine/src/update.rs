//! `update`: new limits (memory, swap, CPUs, CPU shares, cpusets, pids) for a container: applied at once to a
//! running one's cgroups, and kept in its record and bundle so every later start
//! has them too.

use serde_json::json;

use crate::config::Limits;
use crate::engine::{bundle_dir, Engine, CONFIG_FILE};
use crate::error::{Context, Error, Result};
use crate::registry::{ContainerRecord, ContainerStatus};

/// What `update` changes; `None` leaves a limit as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsUpdate {
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
    /// Memory plus swap; -1: unlimited swap.
    pub memory_swap: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
}

impl LimitsUpdate {
    pub fn is_empty(&self) -> bool {
        *self == LimitsUpdate::default()
    }

    /// The OCI `linux.resources` that says only these limits.
    fn resources(&self) -> serde_json::Value {
        let mut r = json!({});
        if let Some(m) = self.memory {
            r["memory"] = json!({"limit": m});
        }
        if let Some(c) = self.cpus {
            let period = 100_000u64;
            r["cpu"] = json!({"quota": (c * period as f64).round() as i64, "period": period});
        }
        if let Some(p) = self.pids {
            r["pids"] = json!({"limit": p});
        }
        if let Some(s) = self.memory_swap {
            r["memory"]["swap"] = json!(s);
        }
        if let Some(s) = self.cpu_shares {
            r["cpu"]["shares"] = json!(s);
        }
        if let Some(c) = &self.cpuset_cpus {
            r["cpu"]["cpus"] = json!(c);
        }
        if let Some(m) = &self.cpuset_mems {
            r["cpu"]["mems"] = json!(m);
        }
        r
    }

    /// Checks the new values together with the container's current `limits` (a new
    /// memory limit must stay under a swap limit it already has, and so on).
    fn check_with(&self, current: &Limits) -> Result<()> {
        let memory = self.memory.or(current.memory);
        let swap = self.memory_swap.or(current.memory_swap);
        if self.memory_swap.is_none() && self.memory.is_some() {
            if let Some(s) = swap.filter(|s| *s >= 0) {
                if memory.is_some_and(|m| m > s as u64) {
                    return Err(Error::invalid(
                        "memory",
                        format!(
                            "above the container's memory+swap limit {s}: change --memory-swap with it"
                        ),
                    ));
                }
            }
        }
        crate::config::sched::validate(
            "",
            memory,
            self.cpu_shares,
            self.cpuset_cpus.as_deref(),
            self.cpuset_mems.as_deref(),
            self.memory_swap,
        )
    }
}

impl Engine {
    /// Changes the container's limits; a running (or paused) one gets them at once.
    /// A bad value (or a cgroup that refuses it) changes nothing on disk.
    pub fn update(&self, reference: &str, up: &LimitsUpdate) -> Result<ContainerRecord> {
        if up.is_empty() {
            return Err(Error::invalid(
                "limits",
                "name a limit to change (--memory, --memory-swap, --cpus, --cpu-shares, \
                 --cpuset-cpus, --cpuset-mems, --pids-limit)",
            ));
        }
        if up.memory.is_some_and(|m| m < 6 << 20) {
            return Err(Error::invalid("memory", "at least 6 MiB"));
        }
        if up.cpus.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
            return Err(Error::invalid("cpus", "a positive number of CPUs"));
        }
        if up.pids.is_some_and(|p| p < 1) {
            return Err(Error::invalid("pids", "at least 1"));
        }
        let rec = self.get(reference)?;
        let current: Limits =
            serde_json::from_value(rec.config["limits"].clone()).unwrap_or_default();
        up.check_with(&current)?;
        let mut res = up.resources();
        // Unlimited swap on a host without swap accounting is what it already has.
        if up.memory_swap == Some(crate::config::sched::UNLIMITED_SWAP)
            && !crate::config::sched::swap_accounting()
        {
            if let Some(m) = res["memory"].as_object_mut() {
                m.remove("swap");
            }
            if res["memory"].as_object().is_some_and(|m| m.is_empty()) {
                if let Some(r) = res.as_object_mut() {
                    r.remove("memory");
                }
            }
        }
        if matches!(
            rec.status,
            ContainerStatus::Running | ContainerStatus::Paused
        ) {
            let parsed: oci_spec::runtime::LinuxResources = serde_json::from_value(res.clone())
                .map_err(|e| Error::invalid("limits", e.to_string()))?;
            self.runtime().update(&rec.id, &parsed)?;
        }
        // The bundle, for the next start.
        let path = bundle_dir(&self.container_dir(&rec.id)?).join(CONFIG_FILE);
        if path.exists() {
            let text = std::fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
            let mut spec: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|e| Error::invalid("bundle", format!("{}: {e}", path.display())))?;
            // Field by field: a new memory limit keeps the swap limit the bundle has.
            for (k, v) in res.as_object().into_iter().flatten() {
                for (f, x) in v.as_object().into_iter().flatten() {
                    spec["linux"]["resources"][k][f] = x.clone();
                }
            }
            let text = serde_json::to_vec_pretty(&spec)
                .map_err(|e| Error::invalid("bundle", e.to_string()))?;
            codex_runtime::state::write_atomic(&path, &text)?;
        }
        self.registry().update_container(&rec.id, |r| {
            let mut cfg = r.config.clone();
            if let Some(m) = up.memory {
                cfg["limits"]["memory"] = json!(m);
            }
            if let Some(c) = up.cpus {
                cfg["limits"]["cpus"] = json!(c);
            }
            if let Some(p) = up.pids {
                cfg["limits"]["pids"] = json!(p);
            }
            if let Some(s) = up.memory_swap {
                cfg["limits"]["memory_swap"] = json!(s);
            }
            if let Some(s) = up.cpu_shares {
                cfg["limits"]["cpu_shares"] = json!(s);
            }
            if let Some(c) = &up.cpuset_cpus {
                cfg["limits"]["cpuset_cpus"] = json!(c);
            }
            if let Some(m) = &up.cpuset_mems {
                cfg["limits"]["cpuset_mems"] = json!(m);
            }
            r.config = cfg;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_names_only_what_changes() {
        let up = LimitsUpdate {
            memory: Some(64 << 20),
            pids: Some(10),
            ..Default::default()
        };
        assert_eq!(
            up.resources(),
            json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 10}})
        );
        let up = LimitsUpdate {
            cpus: Some(0.5),
            ..Default::default()
        };
        assert_eq!(
            up.resources(),
            json!({"cpu": {"quota": 50_000, "period": 100_000}})
        );
        assert!(LimitsUpdate::default().is_empty());
        let up = LimitsUpdate {
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            memory: Some(64 << 20),
            memory_swap: Some(-1),
            ..Default::default()
        };
        assert_eq!(
            up.resources(),
            json!({"memory": {"limit": 64 << 20, "swap": -1}, "cpu": {"shares": 512, "cpus": "0"}})
        );
    }

    #[test]
    fn an_update_is_checked_with_the_limits_the_container_has() {
        let had = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            ..Default::default()
        };
        // More memory than the swap limit the container keeps: refused by name.
        let up = LimitsUpdate {
            memory: Some(256 << 20),
            ..Default::default()
        };
        let e = up.check_with(&had).unwrap_err().to_string();
        assert!(e.starts_with("memory:") && e.contains("memory-swap"), "{e}");
        // Both together are fine.
        let up = LimitsUpdate {
            memory: Some(256 << 20),
            memory_swap: Some(512 << 20),
            ..Default::default()
        };
        up.check_with(&had).unwrap();
        // A swap limit below the memory limit the container keeps.
        let up = LimitsUpdate {
            memory_swap: Some(32 << 20),
            ..Default::default()
        };
        assert!(up
            .check_with(&had)
            .unwrap_err()
            .to_string()
            .starts_with("memory_swap:"));
        // A swap limit without any memory limit.
        let up = LimitsUpdate {
            memory_swap: Some(32 << 20),
            ..Default::default()
        };
        assert!(up.check_with(&Limits::default()).is_err());
        let up = LimitsUpdate {
            cpu_shares: Some(1),
            ..Default::default()
        };
        assert!(up
            .check_with(&had)
            .unwrap_err()
            .to_string()
            .starts_with("cpu_shares:"));
    }
}
