//! The flags of `create`/`run` for the supervisor's usage sampling and thresholds
//! (kept apart from args.rs, flattened into [`super::args::CreateArgs`]):
//! `--warn-memory`, `--warn-cpu`, `--stop-on-memory`, `--monitor-interval`; and
//! `stats`, which shows what is sampled.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use codex_engine::config::monitor::{parse_cpu_percent, MonitorConfig};
use codex_engine::config::parse_memory;

#[derive(Debug, Args, Clone, Default)]
pub struct MonitorFlags {
    /// A `threshold` event when the container's memory use rises above this (bytes or
    /// 64m, 1g); again only after it fell below 90% of it.
    #[arg(long = "warn-memory")]
    pub warn_memory: Option<String>,
    /// A `threshold` event when its CPU use over a sampling interval rises above this
    /// percentage of one core (80, 150%); again only after it fell below 90% of it.
    #[arg(long = "warn-cpu")]
    pub warn_cpu: Option<String>,
    /// Kill the container (exit 137, a `threshold` event) when its memory use rises
    /// above this (bytes or 64m, 1g); its restart policy then applies.
    #[arg(long = "stop-on-memory")]
    pub stop_on_memory: Option<String>,
    /// How often the supervisor samples memory and CPU for the thresholds and the
    /// history `stats --plot` draws (default 1s with a threshold, else 10s; at least 100ms).
    #[arg(long = "monitor-interval")]
    pub monitor_interval: Option<String>,
}

impl MonitorFlags {
    pub fn monitor(&self) -> Result<MonitorConfig> {
        Ok(MonitorConfig {
            warn_memory: self
                .warn_memory
                .as_deref()
                .map(|m| parse_memory("warn-memory", m))
                .transpose()?,
            warn_cpu: self
                .warn_cpu
                .as_deref()
                .map(|c| parse_cpu_percent("warn-cpu", c))
                .transpose()?,
            stop_on_memory: self
                .stop_on_memory
                .as_deref()
                .map(|m| parse_memory("stop-on-memory", m))
                .transpose()?,
            interval_ms: self
                .monitor_interval
                .as_deref()
                .map(|d| codex_engine::health::parse_period("monitor-interval", d))
                .transpose()?,
        })
    }
}

#[derive(Debug, Args, Clone)]
pub struct StatsArgs {
    /// Print once and return (default: refresh until interrupted).
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Time between two refreshes, over which CPU % is measured (default 1s; with
    /// --no-stream the one sample takes 500ms unless given).
    #[arg(long)]
    pub interval: Option<String>,
    /// Output format: table, or json (one array a line).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Write an SVG plot of one container's CPU and memory history (as its supervisor
    /// sampled it: see --monitor-interval) to this file, and print nothing else.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// With --plot: only the history since this time (2026-11-23T10:00:00Z), this
    /// long ago (10m) or these Unix seconds.
    #[arg(long, requires = "plot")]
    pub since: Option<String>,
    /// Containers to show (names or ids; default: every running one).
    pub containers: Vec<String>,
}

/// `stats`: a plot of the history, or the table / JSON of the current usage.
pub(super) fn stats(eng: &codex_engine::engine::Engine, a: &StatsArgs) -> Result<i32> {
    if let Some(file) = &a.plot {
        return plot(eng, a, file);
    }
    let default = if a.no_stream {
        codex_engine::usage::WINDOW
    } else {
        Duration::from_secs(1)
    };
    let window = match &a.interval {
        Some(i) => {
            let ms = codex_engine::health::parse_period("interval", i)?;
            if ms < 100 {
                bail!("interval: {i:?} is below the shortest, 100ms");
            }
            Duration::from_millis(ms)
        }
        None => default,
    };
    super::listing::stats(eng, &a.containers, &a.format, a.no_stream, window)
}

/// `stats --plot FILE NAME [--since T]`: written whole or not at all.
fn plot(eng: &codex_engine::engine::Engine, a: &StatsArgs, file: &std::path::Path) -> Result<i32> {
    let [name] = a.containers.as_slice() else {
        bail!(
            "plot: give exactly one container (got {})",
            a.containers.len()
        );
    };
    if a.no_stream || a.interval.is_some() || a.format != "table" {
        bail!("plot: --no-stream, --interval and --format do not apply to a plot");
    }
    let since = a
        .since
        .as_deref()
        .map(codex_engine::logread::parse_since)
        .transpose()?;
    let points = eng.usage_history(name, since)?;
    if points.is_empty() {
        bail!(
            "plot: {name} has no usage history{} yet (its supervisor samples every --monitor-interval, default 10s, while it runs)",
            if since.is_some() { " in that time" } else { "" }
        );
    }
    let svg = codex_engine::plot::svg(name, &points);
    // A picture for a person to open: readable as any file they write.
    codex_sys::AtomicFile::new(file)
        .mode(0o644)
        .write(svg.as_bytes())
        .with_context(|| format!("plot: writing {}", file.display()))?;
    Ok(0)
}
