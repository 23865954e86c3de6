//! `top`, `update` and `system df`: commands that look at or change a container's
//! resources (their clap types are here too, kept out of args.rs).

use anyhow::Result;
use clap::Args;
use codex_engine::engine::Engine;
use codex_engine::update::LimitsUpdate;

use super::commands::each;
use super::listing::human;
use crate::oci::commands::print_table;

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Output format of one container's processes: table or json.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Seconds between refreshes of the live view.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// A running container: its processes. Without one: a live view of every container.
    pub container: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// New memory limit: bytes or 512m, 1g.
    #[arg(short, long)]
    pub memory: Option<String>,
    /// New CPU limit: a number of CPUs (0.5, 2) or a percentage of one CPU (50%).
    #[arg(long)]
    pub cpus: Option<String>,
    /// New limit of processes and threads (at least 1).
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// --cpu-shares, --cpuset-cpus/-mems, --memory-swap (schedflags.rs).
    #[command(flatten)]
    pub sched: super::schedflags::SchedFlags,
    /// Containers to change (names or ids); running ones at once.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Output format: table or json.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

pub(super) fn top(eng: &Engine, a: &TopArgs) -> Result<i32> {
    let Some(container) = &a.container else {
        if !(a.interval.is_finite() && a.interval >= 0.1) {
            anyhow::bail!("interval: at least 0.1 seconds");
        }
        return super::dashboard::dashboard(eng, std::time::Duration::from_secs_f64(a.interval));
    };
    let rows = eng.top(container)?;
    if a.format == "json" {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(0);
    }
    let mut table = vec![["PID", "PPID", "UID", "TIME", "CMD"]
        .map(String::from)
        .to_vec()];
    for r in rows {
        let secs = r.cpu_seconds as u64;
        table.push(vec![
            r.pid.to_string(),
            r.ppid.to_string(),
            r.uid.to_string(),
            format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
            r.command,
        ]);
    }
    print_table(&table);
    Ok(0)
}

pub(super) fn update(eng: &Engine, a: &UpdateArgs) -> Result<i32> {
    let mut up = LimitsUpdate {
        memory: a
            .memory
            .as_deref()
            .map(|m| codex_engine::config::parse_memory("memory", m))
            .transpose()?,
        cpus: a
            .cpus
            .as_deref()
            .map(|c| codex_engine::config::parse_cpus("cpus", c))
            .transpose()?,
        pids: a.pids_limit,
        ..Default::default()
    };
    a.sched.apply_update(&mut up)?;
    each(&a.containers, |c| {
        let rec = eng.update(c, &up)?;
        println!("{}", rec.name);
        Ok(())
    })
}

pub(super) fn df(eng: &Engine, a: &DfArgs) -> Result<i32> {
    let rows = eng.disk_usage()?;
    if a.format == "json" {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(0);
    }
    let mut table = vec![["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
        .map(String::from)
        .to_vec()];
    for r in rows {
        let pct = (r.reclaimable * 100).checked_div(r.size).unwrap_or(0);
        table.push(vec![
            r.kind.to_string(),
            r.total.to_string(),
            r.active.to_string(),
            human(r.size),
            format!("{} ({pct}%)", human(r.reclaimable)),
        ]);
    }
    print_table(&table);
    Ok(0)
}
