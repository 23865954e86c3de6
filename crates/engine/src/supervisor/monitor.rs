//! The supervisor's side of usage sampling and thresholds (`codex_shim::monitor`):
//! which cgroup files to read, the shim's arguments, and the `threshold` event that
//! a crossing writes (`__supervise --root ROOT ID --threshold WHICH VALUE LIMIT`,
//! which the shim starts, since the shim itself knows nothing of the registry).

use std::path::{Path, PathBuf};

use codex_runtime::cgroups::Cgroups;
use codex_shim::handoff::MonitorArgs;
use codex_shim::history::{History, FILE as HISTORY_FILE};
use codex_shim::monitor::{Crossing, Monitor, UsageFiles, Watch, Which};

use crate::config::ContainerConfig;
use crate::registry::Registry;

/// The files `stats` reads memory and CPU from (codex-runtime's `stats`): memory of
/// the v1 hierarchy with the `memory` controller (`memory.usage_in_bytes`), else of
/// the v2 one that has `memory.current`; CPU of the one with `cpuacct` (v1's
/// `cpuacct.usage`), else of the v2 one (`cpu.stat`).
pub(super) fn usage_files(cgroups: &Cgroups) -> UsageFiles {
    let dirs = &cgroups.dirs;
    let memory = match dirs.iter().find(|d| d.has("memory")) {
        Some(d) => Some(d.path.join("memory.usage_in_bytes")),
        // On v2 the controller is there when its files are.
        None => dirs
            .iter()
            .filter(|d| d.is_v2())
            .map(|d| d.path.join("memory.current"))
            .find(|p| p.exists()),
    };
    let cpu = match dirs.iter().find(|d| d.has("cpuacct")) {
        Some(d) => Some(d.path.join("cpuacct.usage")),
        None => dirs
            .iter()
            .find(|d| d.is_v2())
            .map(|d| d.path.join("cpu.stat")),
    };
    UsageFiles { memory, cpu }
}

/// The container's usage history file.
pub(crate) fn history_path(dir: &Path) -> PathBuf {
    dir.join(HISTORY_FILE)
}

/// What the shim is told about sampling `cfg`'s container (kept in `dir`).
pub(super) fn monitor_args(cfg: &ContainerConfig, dir: &Path) -> MonitorArgs {
    MonitorArgs {
        interval: cfg.monitor.interval(),
        history: history_path(dir),
        thresholds: cfg.monitor.thresholds(),
    }
}

/// The sampling of a container supervised in this process.
pub(super) fn monitor(cfg: &ContainerConfig, dir: &Path, files: UsageFiles) -> Monitor {
    let a = monitor_args(cfg, dir);
    Monitor {
        interval: a.interval,
        files,
        watch: Watch::new(a.thresholds),
        history: History::open(&a.history).ok(),
    }
}

/// Writes the `threshold` event of a crossing (best effort, as every event).
pub(super) fn emit_threshold(registry: &Registry, id: &str, c: &Crossing) {
    if let Ok(rec) = registry.get(id) {
        let mut details = vec![
            ("threshold", c.which.name().to_string()),
            ("value", c.value.clone()),
            ("limit", c.limit.clone()),
        ];
        if c.which == Which::StopMemory {
            details.push(("action", "stop".into()));
        }
        crate::events::emit_about(registry.root(), &rec, "threshold", &details);
    }
}

/// `--threshold WHICH VALUE LIMIT`, started by the shim. Returns the exit code.
pub(super) fn threshold_main(root: &Path, id: &str, args: &[String]) -> i32 {
    let [which, value, limit] = args else {
        return 2;
    };
    let Some(which) = Which::parse(which) else {
        return 2;
    };
    let Ok(registry) = Registry::open(root) else {
        return 1;
    };
    emit_threshold(
        &registry,
        id,
        &Crossing {
            which,
            value: value.clone(),
            limit: limit.clone(),
        },
    );
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_runtime::cgroups::CgroupDir;

    fn dir(path: &str, controllers: &str) -> CgroupDir {
        CgroupDir {
            controllers: controllers.into(),
            path: path.into(),
            mount_dir: String::new(),
            created_above: None,
        }
    }

    #[test]
    fn usage_is_read_where_stats_reads_it() {
        // This machine's hybrid layout: v1 controllers, an empty v2.
        let hybrid = Cgroups {
            dirs: vec![
                dir("/v1/memory/c", "memory"),
                dir("/v1/cpu/c", "cpu"),
                dir("/v1/cpuacct/c", "cpuacct"),
                dir("/v2/c", ""),
            ],
        };
        assert_eq!(
            usage_files(&hybrid),
            UsageFiles {
                memory: Some("/v1/memory/c/memory.usage_in_bytes".into()),
                cpu: Some("/v1/cpuacct/c/cpuacct.usage".into()),
            }
        );
        let unified = Cgroups {
            dirs: vec![dir("/v2/c", "")],
        };
        let u = usage_files(&unified);
        assert_eq!(u.cpu, Some("/v2/c/cpu.stat".into()));
        assert!(unified.dirs[0].is_v2());
        assert_eq!(
            usage_files(&Cgroups { dirs: vec![] }),
            UsageFiles::default()
        );
    }
}
