//! One function per subcommand: parse what clap gave, call codex-runtime, print.

use std::io::Write;

use anyhow::{bail, Context, Result};
use codex_runtime::{parse_signal, CreateOptions, ExecOptions, ExecOutcome, Runtime};
use oci_spec::runtime::{Capability, Process};

use super::args::{Cli, Command, CreateArgs, ExecArgs, UpdateArgs};

fn create_options(a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        unsynced_state: false,
    }
}

/// Runs the command; returns the exit code on success.
pub fn dispatch(cli: &Cli) -> Result<i32> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: codex-oci manages cgroups through cgroupfs");
    }
    if cli.rootless.as_deref().is_some_and(|r| r == "true") {
        bail!("--rootless=true is not supported: codex-oci runs as root");
    }
    let rt = Runtime::new(&cli.root).with_warnings(super::log::warn);
    let Some(command) = &cli.command else {
        bail!("no command given (see codex-oci --help)");
    };
    match command {
        Command::Create(a) => {
            codex_runtime::selfclone::ensure_protected_self()?;
            rt.create(&a.id, &create_options(a))?;
            Ok(0)
        }
        Command::Start { id } => {
            rt.start(id)?;
            Ok(0)
        }
        Command::Run {
            create,
            detach,
            keep: _,
        } => {
            let opts = create_options(create);
            if *detach {
                codex_runtime::selfclone::ensure_protected_self()?;
                rt.run_detached(&create.id, &opts)?;
                return Ok(0);
            }
            match rt.run(&create.id, &opts) {
                // Refused before anything was made: the config does not qualify for the
                // exec trampoline. The general defence re-executes this command.
                Err(e @ codex_runtime::Error::Unprotected { .. }) => {
                    super::log::debug(&e.to_string());
                    codex_runtime::selfclone::ensure_protected_self()?;
                    Err(e.into())
                }
                result => Ok(result?),
            }
        }
        Command::State { id } => {
            print_json(&rt.state(id)?)?;
            Ok(0)
        }
        Command::List { format, quiet } => list(&rt, format, *quiet),
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(&rt, id, format, ps_args),
        Command::Kill { all, id, signal } => {
            rt.kill(id, parse_signal(signal)?, *all)?;
            Ok(0)
        }
        Command::Delete { force, id } => {
            match rt.delete(id, *force) {
                // runc's answer: nothing to delete is success with --force
                Err(codex_runtime::Error::NotFound(_)) if *force => rt.remove_stateless_dir(id)?,
                Err(codex_runtime::Error::CorruptState { path, reason }) if *force => {
                    super::log::warn(&format!(
                        "{}: corrupt state ({reason}), as a host crash leaves an unsynced \
                         record: removing the container's directory",
                        path.display()
                    ));
                    rt.remove_unreadable(id)?
                }
                r => r?,
            }
            Ok(0)
        }
        Command::Exec(a) => {
            codex_runtime::selfclone::ensure_protected_self()?;
            exec(&rt, a)
        }
        Command::Spec {
            bundle,
            seccomp_default,
            cap_add,
        } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{} exists; remove it first", path.display());
            }
            let mut spec = codex_runtime::features::default_spec();
            for cap in cap_add {
                let cap = cap.to_ascii_uppercase();
                let cap = if cap.starts_with("CAP_") {
                    cap
                } else {
                    format!("CAP_{cap}")
                };
                for set in ["bounding", "effective", "permitted"] {
                    let slot = &mut spec["process"]["capabilities"][set];
                    let mut list = slot.as_array().cloned().unwrap_or_default();
                    if !list.iter().any(|c| c == cap.as_str()) {
                        list.push(cap.clone().into());
                    }
                    *slot = list.into();
                }
            }
            // After the capabilities: the profile follows the bounding set.
            if *seccomp_default {
                codex_runtime::seccomp_default::set_default_profile(&mut spec);
            }
            let text = serde_json::to_string_pretty(&spec)?;
            std::fs::write(&path, text + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(0)
        }
        Command::Features => {
            print_json(&codex_runtime::features::features())?;
            Ok(0)
        }
        Command::Pause { id } => {
            rt.pause(id)?;
            Ok(0)
        }
        Command::Resume { id } => {
            rt.resume(id)?;
            Ok(0)
        }
        Command::Update(a) => {
            rt.update(&a.id, &update_resources(a)?)?;
            Ok(0)
        }
        Command::Events {
            stats,
            interval,
            id,
        } => {
            if *stats {
                println!("{}", rt.stats(id)?);
            } else {
                let every = parse_duration(interval)?;
                rt.events(id, every, |ev| {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{ev}").and_then(|()| out.flush()).is_ok()
                })?;
            }
            Ok(0)
        }
        Command::Checkpoint { .. } | Command::Restore { .. } => {
            bail!("checkpoint and restore are not supported")
        }
    }
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn list(rt: &Runtime, format: &str, quiet: bool) -> Result<i32> {
    let entries = rt.list()?;
    if quiet {
        for e in &entries {
            println!("{}", e.id);
        }
    } else if format == "json" {
        println!("{}", serde_json::to_string(&entries)?);
    } else {
        let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
            .map(String::from)
            .to_vec()];
        for e in &entries {
            rows.push(vec![
                e.id.clone(),
                e.pid.to_string(),
                e.status.clone(),
                e.bundle.clone(),
                e.created.clone(),
                e.owner.clone(),
            ]);
        }
        print_table(&rows);
    }
    Ok(0)
}

pub fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    // One print: a line at a time was a write(2) per row (stdout is line-buffered).
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{v:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    print!("{out}");
}

fn ps(rt: &Runtime, id: &str, format: &str, ps_args: &[String]) -> Result<i32> {
    let pids = rt.pids(id)?;
    if format == "json" {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    println!("{header}");
    for l in lines {
        if let Some(p) = l
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok())
        {
            if pids.contains(&p) {
                println!("{l}");
            }
        }
    }
    Ok(0)
}

fn exec(rt: &Runtime, a: &ExecArgs) -> Result<i32> {
    let process = match &a.process {
        Some(file) => {
            let text =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let de = &mut serde_json::Deserializer::from_slice(&text);
            serde_path_to_error_free(de)
                .with_context(|| format!("{}: not a valid process JSON", file.display()))?
        }
        None => exec_process_from_flags(rt, a)?,
    };
    let opts = ExecOptions {
        process,
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        no_stdin: false,
        ignore_paused: a.ignore_paused,
        sub_cgroups: a.cgroup.clone(),
    };
    match rt.exec(&a.id, &opts)? {
        ExecOutcome::Detached(_) => Ok(0),
        ExecOutcome::Exited(code) => Ok(code),
    }
}

fn serde_path_to_error_free(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead>,
) -> Result<Process> {
    use serde::Deserialize;
    Ok(Process::deserialize(de)?)
}

/// runc's rule: start from the container's own process, then apply the flags.
fn exec_process_from_flags(rt: &Runtime, a: &ExecArgs) -> Result<Process> {
    if a.args.is_empty() {
        bail!("exec needs a command (or --process FILE)");
    }
    let c = rt.load(&a.id)?;
    let mut p = c.state.config.process().clone().unwrap_or_default();
    p.set_args(Some(a.args.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &a.env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(if kv.contains('=') {
            kv.clone()
        } else {
            format!("{kv}=")
        });
    }
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let uid: u32 = uid
            .parse()
            .with_context(|| format!("--user {u:?}: the uid must be a number"))?;
        let gid: u32 = gid
            .parse()
            .with_context(|| format!("--user {u:?}: the gid must be a number"))?;
        p.user_mut().set_uid(uid);
        p.user_mut().set_gid(gid);
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            let cap: Capability =
                serde_json::from_value(serde_json::Value::String(name.to_ascii_uppercase()))
                    .with_context(|| format!("--cap {name}: unknown capability"))?;
            let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut set = set.clone().unwrap_or_default();
                set.insert(cap);
                Some(set)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

/// `5s`, `500ms`, `1m`, `2h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("--interval {s:?}: not a duration"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("--interval {s:?}: unknown unit {unit:?} (use ms, s, m or h)"),
    };
    if secs <= 0.0 {
        bail!("--interval {s:?}: must be positive");
    }
    // from_secs_f64 panics past u64 seconds (`--interval 100000000000000000000`), and
    // rounds a positive value under 1 ns to zero: stats at every 10 ms tick of `events`
    // instead of the "must be positive" that `0` gets.
    match std::time::Duration::try_from_secs_f64(secs) {
        Ok(d) if d.is_zero() => bail!("--interval {s:?}: must be positive"),
        Ok(d) => Ok(d),
        Err(_) => bail!("--interval {s:?}: out of range"),
    }
}

/// The resources of `update`: the JSON (file or stdin) with the flags on top.
fn update_resources(a: &UpdateArgs) -> Result<oci_spec::runtime::LinuxResources> {
    use serde::Deserialize;
    use std::io::Read;
    let mut v: serde_json::Value = match a.resources.as_deref() {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading resources from stdin")?;
            serde_json::from_str(&text).context("resources on stdin: not valid JSON")?
        }
        Some(file) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
            serde_json::from_str(&text).with_context(|| format!("{file}: not valid JSON"))?
        }
        None => serde_json::json!({}),
    };
    let flags: [(&str, &str, Option<serde_json::Value>); 9] = [
        ("memory", "limit", a.memory.map(Into::into)),
        (
            "memory",
            "reservation",
            a.memory_reservation.map(Into::into),
        ),
        ("memory", "swap", a.memory_swap.map(Into::into)),
        ("cpu", "quota", a.cpu_quota.map(Into::into)),
        ("cpu", "period", a.cpu_period.map(Into::into)),
        ("cpu", "shares", a.cpu_shares.map(Into::into)),
        ("cpu", "cpus", a.cpuset_cpus.clone().map(Into::into)),
        ("cpu", "mems", a.cpuset_mems.clone().map(Into::into)),
        ("pids", "limit", a.pids_limit.map(Into::into)),
    ];
    for (section, key, val) in flags {
        if let Some(val) = val {
            v[section][key] = val;
        }
    }
    if let Some(w) = a.blkio_weight {
        v["blockIO"]["weight"] = w.into();
    }
    let text = serde_json::to_vec(&v)?;
    let mut de = serde_json::Deserializer::from_slice(&text);
    oci_spec::runtime::LinuxResources::deserialize(&mut de)
        .context("resources: not a valid LinuxResources object")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_parses_units_and_refuses_what_duration_cannot_hold() {
        assert_eq!(
            parse_duration("5s").unwrap(),
            std::time::Duration::from_secs(5)
        );
        assert_eq!(
            parse_duration("500ms").unwrap(),
            std::time::Duration::from_millis(500)
        );
        // The first two panicked in Duration::from_secs_f64; `zero` (found by
        // fuzz/cli_parsers) is positive but was accepted as a zero Duration.
        let zero = "000.000000000000000048";
        for bad in [
            "100000000000000000000",
            "99999999999999999999h",
            "0",
            "1d",
            zero,
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
