//! Commands that list and show: `ps`, `inspect`, `volume`'s subcommands and `stats`.

use std::io::Write;

use anyhow::{bail, Context, Result};
use codex_engine::config::ContainerConfig;
use codex_engine::engine::Engine;
use codex_engine::registry::{ContainerRecord, ContainerStatus};

use super::args::VolumeCommand;
use super::commands::each;
use super::template::Template;
use crate::oci::commands::print_table;
use serde_json::Value;

/// `name=`, `id=` (prefix), `status=`, `label=KEY[=VALUE]`.
fn matches_filter(r: &ContainerRecord, f: &str) -> Result<bool> {
    let (k, v) = f
        .split_once('=')
        .with_context(|| format!("--filter {f:?}: expected KEY=VALUE"))?;
    Ok(match k {
        "name" => r.name.contains(v),
        "id" => r.id.starts_with(v),
        "status" => {
            let want: ContainerStatus = v.parse()?;
            r.status == want
        }
        "label" => match v.split_once('=') {
            Some((lk, lv)) => r.labels.get(lk).is_some_and(|x| x == lv),
            None => r.labels.contains_key(v),
        },
        _ => bail!("--filter {f:?}: unknown key {k:?} (name, id, status, label)"),
    })
}

pub(super) fn ps(
    eng: &Engine,
    all: bool,
    filters: &[String],
    quiet: bool,
    format: &str,
) -> Result<i32> {
    let mut recs = Vec::new();
    for r in eng.list()? {
        let live = matches!(
            r.status,
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
        );
        let mut ok = all || !filters.is_empty() || live;
        for f in filters {
            ok = ok && matches_filter(&r, f)?;
        }
        if ok {
            recs.push(r);
        }
    }
    if quiet {
        let ids: String = recs.iter().map(|r| format!("{}\n", &r.id[..12])).collect();
        print!("{ids}");
    } else if format != "json" && format != "table" {
        ps_template(eng, &recs, format)?;
    } else if format == "json" {
        let mut all = eng.published_ports_among(&recs).unwrap_or_default();
        let mut out = Vec::new();
        for r in &recs {
            let mut v = serde_json::to_value(r)?;
            v["ports"] = serde_json::to_value(all.remove(&r.id).unwrap_or_default())?;
            out.push(v);
        }
        println!("{}", serde_json::to_string(&out)?);
    } else {
        let ports = super::ports::column(eng, &recs).unwrap_or_default();
        let mut rows = vec![[
            "ID", "NAME", "STATUS", "HEALTH", "EXIT", "RESTARTS", "CREATED", "PORTS", "COMMAND",
        ]
        .map(String::from)
        .to_vec()];
        for r in &recs {
            let cmd: Vec<String> = serde_json::from_value::<ContainerConfig>(r.config.clone())
                .map(|c| c.argv())
                .unwrap_or_default();
            rows.push(vec![
                r.id[..12].to_string(),
                r.name.clone(),
                r.status.to_string(),
                r.health
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |h| h.status.to_string()),
                r.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                r.restart_count.to_string(),
                r.created.clone(),
                ports.get(&r.id).cloned().unwrap_or_default(),
                cmd.join(" "),
            ]);
        }
        print_table(&rows);
    }
    Ok(0)
}

/// `ps --format TEMPLATE` (or `table TEMPLATE`): one line per container, over its
/// record plus Docker's column names (`ID`, `Names`, `Image`, `Command`, `Status`,
/// `State`, `Ports`, `CreatedAt`, `Labels`), tab-separated cells aligned as a table.
fn ps_template(eng: &Engine, recs: &[ContainerRecord], format: &str) -> Result<()> {
    let (table, src) = match format.strip_prefix("table") {
        Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
            (true, rest.trim_start())
        }
        _ => (false, format),
    };
    let src = src.replace("\\t", "\t");
    let t = Template::parse(&src).map_err(|e| anyhow::anyhow!("format: {e}"))?;
    let ports = super::ports::column(eng, recs).unwrap_or_default();
    let mut lines = Vec::new();
    if table {
        let header: serde_json::Map<String, Value> = [
            ("ID", "CONTAINER ID"),
            ("Names", "NAMES"),
            ("Image", "IMAGE"),
            ("Command", "COMMAND"),
            ("Status", "STATUS"),
            ("State", "STATE"),
            ("Ports", "PORTS"),
            ("CreatedAt", "CREATED AT"),
            ("Labels", "LABELS"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
        lines.push(
            t.render(&Value::Object(header))
                .map_err(|e| anyhow::anyhow!("format: {e}"))?,
        );
    }
    for r in recs {
        let cfg: ContainerConfig = serde_json::from_value(r.config.clone()).unwrap_or_default();
        let mut v = serde_json::to_value(r)?;
        let labels: Vec<String> = cfg.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for (k, x) in [
            ("ID", Value::from(&r.id[..12])),
            ("Names", Value::from(r.name.clone())),
            ("Image", Value::from(cfg.image.clone().unwrap_or_default())),
            ("Command", Value::from(cfg.argv().join(" "))),
            ("Status", Value::from(r.status.to_string())),
            ("State", Value::from(r.status.to_string())),
            (
                "Ports",
                Value::from(ports.get(&r.id).cloned().unwrap_or_default()),
            ),
            ("CreatedAt", Value::from(r.created.clone())),
            ("Labels", Value::from(labels.join(","))),
        ] {
            v[k] = x;
        }
        lines.push(t.render(&v).map_err(|e| anyhow::anyhow!("format: {e}"))?);
    }
    if table {
        let rows: Vec<Vec<String>> = lines
            .iter()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect();
        print_table(&rows);
    } else {
        let mut out = std::io::stdout().lock();
        for l in lines {
            writeln!(out, "{l}")?;
        }
    }
    Ok(())
}

/// `inspect [--spec] [-f FORMAT] NAME...`: one container's object, several as an
/// array, or the template rendered for each (`-f json`: compact JSON each).
pub(super) fn inspect(
    eng: &Engine,
    spec: bool,
    format: Option<&str>,
    names: &[String],
) -> Result<i32> {
    let template = match format {
        Some("json") | None => None,
        Some(f) => Some(Template::parse(f).map_err(|e| anyhow::anyhow!("format: {e}"))?),
    };
    let mut values = Vec::new();
    let mut failed = false;
    for n in names {
        let v = if spec { eng.spec(n) } else { eng.inspect(n) };
        match v {
            Ok(v) => values.push(v),
            Err(e) => {
                eprintln!("codex-ctr: {n}: {e}");
                failed = true;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    match (&template, format) {
        (Some(t), _) => {
            for v in &values {
                let text = t.render(v).map_err(|e| anyhow::anyhow!("format: {e}"))?;
                writeln!(out, "{text}")?;
            }
        }
        (None, Some("json")) => {
            for v in &values {
                writeln!(out, "{}", serde_json::to_string(v)?)?;
            }
        }
        (None, _) if names.len() == 1 => {
            if let Some(v) = values.first() {
                writeln!(out, "{}", serde_json::to_string_pretty(v)?)?;
            }
        }
        (None, _) => writeln!(out, "{}", serde_json::to_string_pretty(&values)?)?,
    }
    Ok(if failed { 125 } else { 0 })
}

pub(super) fn volume(eng: &Engine, cmd: VolumeCommand) -> Result<i32> {
    match cmd {
        VolumeCommand::Create { name } => {
            println!("{}", eng.create_volume(&name)?.name);
            Ok(0)
        }
        VolumeCommand::Ls { quiet, format } => {
            let vols = eng.volumes()?;
            if quiet {
                vols.iter().for_each(|v| println!("{}", v.record.name));
            } else if format == "json" {
                println!("{}", serde_json::to_string(&vols)?);
            } else {
                let mut rows = vec![["NAME", "CREATED", "USED BY", "MOUNTPOINT"]
                    .map(String::from)
                    .to_vec()];
                for v in &vols {
                    rows.push(vec![
                        v.record.name.clone(),
                        v.record.created.clone(),
                        v.used_by.join(","),
                        v.mountpoint.display().to_string(),
                    ]);
                }
                print_table(&rows);
            }
            Ok(0)
        }
        VolumeCommand::Inspect { name } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&eng.inspect_volume(&name)?)?
            );
            Ok(0)
        }
        VolumeCommand::Rm { names } => each(&names, |n| {
            eng.remove_volume(n)?;
            println!("{n}");
            Ok(())
        }),
        VolumeCommand::Prune => {
            for n in eng.prune_volumes()? {
                println!("{n}");
            }
            Ok(0)
        }
    }
}

/// `stats`: once with `--no-stream`, else a refreshed table every `window` until
/// interrupted (JSON: one array per line); CPU % is measured over the window.
pub(super) fn stats(
    eng: &Engine,
    names: &[String],
    format: &str,
    no_stream: bool,
    window: std::time::Duration,
) -> Result<i32> {
    loop {
        let usage = eng.usage(names, window)?;
        if format == "json" {
            println!("{}", serde_json::to_string(&usage)?);
        } else {
            // On a terminal, clear it and go home as `top` does; into a pipe or file,
            // successive plain tables (escape codes there are garbage to a reader).
            if !no_stream && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                print!("\x1b[2J\x1b[H");
            }
            let header = [
                "ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "PIDS",
                "BLOCK I/O",
                "NET I/O",
            ];
            let mut rows = vec![header.map(String::from).to_vec()];
            for u in &usage {
                rows.push(vec![
                    u.id[..12].to_string(),
                    u.name.clone(),
                    format!("{:.2}%", u.cpu_percent),
                    format!("{} / {}", human(u.memory_usage), human(u.memory_limit)),
                    format!("{:.2}%", u.memory_percent),
                    u.pids.to_string(),
                    format!("{} / {}", human(u.block_read), human(u.block_write)),
                    u.network
                        .map(|n| format!("{} / {}", human(n.rx_bytes), human(n.tx_bytes)))
                        .unwrap_or_else(|| "-".into()),
                ]);
            }
            print_table(&rows);
        }
        if no_stream {
            return Ok(0);
        }
        use std::io::Write;
        std::io::stdout().flush()?;
    }
}

/// Bytes for a person: `2.0MiB` (tables; JSON keeps bytes).
pub(super) fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}
