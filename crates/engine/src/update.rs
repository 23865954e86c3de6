//! `update`: new limits (memory, CPUs, pids) for a container: applied at once to a
//! running one's cgroups, and kept in its record and bundle so every later start
//! has them too.

use serde_json::json;

use crate::engine::{Engine, BUNDLE_DIR};
use crate::error::{Context, Error, Result};
use crate::registry::{ContainerRecord, ContainerStatus};

/// What `update` changes; `None` leaves a limit as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsUpdate {
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
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
        r
    }
}

impl Engine {
    /// Changes the container's limits; a running (or paused) one gets them at once.
    /// A bad value (or a cgroup that refuses it) changes nothing on disk.
    pub fn update(&self, reference: &str, up: &LimitsUpdate) -> Result<ContainerRecord> {
        if up.is_empty() {
            return Err(Error::invalid(
                "limits",
                "name a limit to change (--memory, --cpus, --pids-limit)",
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
        let res = up.resources();
        if matches!(
            rec.status,
            ContainerStatus::Running | ContainerStatus::Paused
        ) {
            let parsed: oci_spec::runtime::LinuxResources = serde_json::from_value(res.clone())
                .map_err(|e| Error::invalid("limits", e.to_string()))?;
            self.runtime().update(&rec.id, &parsed)?;
        }
        // The bundle, for the next start.
        let path = self
            .container_dir(&rec.id)?
            .join(BUNDLE_DIR)
            .join("config.json");
        if path.exists() {
            let text = std::fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
            let mut spec: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|e| Error::invalid("bundle", format!("{}: {e}", path.display())))?;
            for (k, v) in res.as_object().into_iter().flatten() {
                spec["linux"]["resources"][k] = v.clone();
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
            cpus: None,
            pids: Some(10),
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
    }
}
