//! `--cpu-shares`, `--cpuset-cpus`, `--cpuset-mems` and `--memory-swap` (Docker's flags
//! and meanings), shared by `create`/`run` and `update` (flattened into both, kept out
//! of args.rs).

use anyhow::Result;
use clap::Args;
use codex_engine::config::sched::parse_swap;
use codex_engine::config::Limits;
use codex_engine::update::LimitsUpdate;

#[derive(Debug, Args, Clone, Default)]
pub struct SchedFlags {
    /// Relative CPU weight when CPUs are contended (2-262144; without it: 1024; 0: unset).
    #[arg(long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// The CPUs it may run on: 0-2,4.
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// The memory nodes it may allocate from: 0, 0-1.
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Memory plus swap (1g; at least --memory, which it needs); -1: unlimited swap.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
}

impl SchedFlags {
    fn swap(&self) -> Result<Option<i64>> {
        Ok(self
            .memory_swap
            .as_deref()
            .map(|s| parse_swap("memory-swap", s))
            .transpose()?)
    }

    /// Docker's 0 for `--cpu-shares` is "not set".
    fn shares(&self) -> Option<u64> {
        self.cpu_shares.filter(|s| *s != 0)
    }

    /// Sets these limits in a new container's (the engine checks them on create).
    pub fn apply(&self, l: &mut Limits) -> Result<()> {
        l.cpu_shares = self.shares();
        l.cpuset_cpus = self.cpuset_cpus.clone();
        l.cpuset_mems = self.cpuset_mems.clone();
        l.memory_swap = self.swap()?;
        Ok(())
    }

    /// Sets these limits in an update (the engine checks them with the container's).
    pub fn apply_update(&self, up: &mut LimitsUpdate) -> Result<()> {
        up.cpu_shares = self.shares();
        up.cpuset_cpus = self.cpuset_cpus.clone();
        up.cpuset_mems = self.cpuset_mems.clone();
        up.memory_swap = self.swap()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_fill_limits_with_dockers_meanings() {
        let f = SchedFlags {
            cpu_shares: Some(512),
            cpuset_cpus: Some("0-1".into()),
            cpuset_mems: None,
            memory_swap: Some("-1".into()),
        };
        let mut l = Limits::default();
        f.apply(&mut l).unwrap();
        assert_eq!(
            (l.cpu_shares, l.cpuset_cpus.as_deref(), l.memory_swap),
            (Some(512), Some("0-1"), Some(-1))
        );
        let f = SchedFlags {
            cpu_shares: Some(0),
            memory_swap: Some("256m".into()),
            ..Default::default()
        };
        let mut up = LimitsUpdate::default();
        f.apply_update(&mut up).unwrap();
        assert_eq!((up.cpu_shares, up.memory_swap), (None, Some(256 << 20)));
        let bad = SchedFlags {
            memory_swap: Some("lots".into()),
            ..Default::default()
        };
        let e = bad.apply(&mut l).unwrap_err().to_string();
        assert!(e.contains("memory-swap"), "{e}");
    }
}
