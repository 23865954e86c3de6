//! One function per command: build the engine's inputs, call it, print.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use codex_engine::config::ContainerConfig;
use codex_engine::engine::{Engine, ExecRequest, LogFollow};
use codex_engine::logread::{parse_since, Followed, LogQuery};
use codex_engine::registry::{default_root, ContainerRecord, ContainerStatus};
use codex_engine::supervisor::logs::LogLine;

use super::args::{Cli, Command, CreateArgs, SystemCommand, VolumeCommand};
use super::create::config_from;
use crate::oci::commands::print_table;

fn engine(root: Option<PathBuf>) -> Result<Engine> {
    let root = root.unwrap_or_else(default_root);
    let exe =
        std::env::current_exe().context("locating the codex-ctr binary for the supervisor")?;
    Ok(Engine::open(&root, exe)?)
}

pub fn dispatch(cli: Cli) -> Result<i32> {
    let eng = engine(cli.root)?;
    match cli.command {
        Command::Run { create, detach } => run(&eng, &create, detach),
        Command::Create(a) => {
            let rec = eng.create(config_from(&a)?)?;
            println!("{}", rec.id);
            Ok(0)
        }
        Command::Start {
            attach,
            all_restartable,
            containers,
        } => {
            if all_restartable {
                let mut failed = false;
                for (name, started) in eng.start_restartable()? {
                    match started {
                        Ok(_) => println!("{name}"),
                        Err(e) => {
                            failed = true;
                            eprintln!("codex-ctr: {name}: {e}");
                        }
                    }
                }
                return Ok(i32::from(failed));
            }
            if attach {
                let [c] = containers.as_slice() else {
                    bail!("start -a takes exactly one container");
                };
                let rec = eng.get(c)?;
                return attach_and_start(&eng, &rec.id, false);
            }
            each(&containers, |c| {
                let rec = eng.start(c)?;
                println!("{}", rec.name);
                Ok(())
            })
        }
        Command::Stop { time, containers } => each(&containers, |c| {
            let rec = eng.get(c)?;
            let timeout = time.or_else(|| stop_timeout(&rec)).unwrap_or(10);
            eng.stop(c, Duration::from_secs(timeout))?;
            println!("{}", rec.name);
            Ok(())
        }),
        Command::Kill { signal, containers } => {
            let sig = codex_runtime::parse_signal(&signal)?;
            each(&containers, |c| {
                eng.kill(c, sig)?;
                println!("{c}");
                Ok(())
            })
        }
        Command::Rm {
            force,
            volumes,
            containers,
        } => each(&containers, |c| {
            eng.remove(c, force, volumes)?;
            println!("{c}");
            Ok(())
        }),
        Command::Ps {
            all,
            filter,
            quiet,
            format,
        } => ps(&eng, all, &filter, quiet, &format),
        Command::Restart { time, containers } => each(&containers, |c| {
            let rec = eng.get(c)?;
            let timeout = time.or_else(|| stop_timeout(&rec)).unwrap_or(10);
            eng.restart(c, Duration::from_secs(timeout))?;
            println!("{}", rec.name);
            Ok(())
        }),
        Command::Pause { containers } => each(&containers, |c| {
            eng.pause(c)?;
            println!("{c}");
            Ok(())
        }),
        Command::Unpause { containers } => each(&containers, |c| {
            eng.unpause(c)?;
            println!("{c}");
            Ok(())
        }),
        Command::Exec {
            interactive,
            tty,
            env,
            workdir,
            user,
            container,
            command,
        } => Ok(eng.exec(
            &container,
            &ExecRequest {
                args: command,
                env,
                cwd: workdir,
                user,
                tty,
                interactive,
            },
        )?),
        Command::Stats {
            no_stream,
            format,
            containers,
        } => stats(&eng, &containers, &format, no_stream),
        Command::Cp {
            source,
            destination,
        } => {
            use codex_engine::engine::CopyDirection;
            let split = |s: &str| -> Option<(String, PathBuf)> {
                let (c, p) = s.split_once(':')?;
                (!c.is_empty() && !c.contains('/')).then(|| (c.to_string(), PathBuf::from(p)))
            };
            match (split(&source), split(&destination)) {
                (Some((c, from)), None) => {
                    let to = PathBuf::from(&destination);
                    eng.copy(
                        &c,
                        CopyDirection::Out {
                            from: &from,
                            to: &to,
                        },
                    )?
                }
                (None, Some((c, to))) => {
                    let from = PathBuf::from(&source);
                    eng.copy(
                        &c,
                        CopyDirection::In {
                            from: &from,
                            to: &to,
                        },
                    )?
                }
                _ => bail!("cp: exactly one of SOURCE and DESTINATION must be CONTAINER:PATH"),
            }
            Ok(0)
        }
        Command::Rename {
            container,
            new_name,
        } => {
            eng.rename(&container, &new_name)?;
            Ok(0)
        }
        Command::Prune => {
            for name in eng.prune()? {
                println!("{name}");
            }
            Ok(0)
        }
        Command::System {
            command: SystemCommand::Prune { all, volumes },
        } => {
            // Containers first: what they held (networks, images, volumes) is then free.
            for name in eng.prune()? {
                println!("Deleted container: {name}");
            }
            for n in eng.prune_networks(&[])? {
                println!("Deleted network: {}", n.name);
            }
            if volumes {
                for v in eng.prune_volumes()? {
                    println!("Deleted volume: {v}");
                }
            }
            let removal = eng.prune_images(all)?;
            for r in &removal.untagged {
                println!("Untagged: {r}");
            }
            for d in &removal.deleted {
                println!("Deleted image: sha256:{d}");
            }
            Ok(0)
        }
        Command::Export {
            output,
            rootfs,
            container,
        } => {
            match output {
                Some(path) => {
                    // Written beside, renamed into place: a failed export leaves nothing.
                    let tmp = path.with_extension("partial");
                    let mut f = std::fs::File::create(&tmp)
                        .with_context(|| format!("creating {}", tmp.display()))?;
                    let res = eng.export(&container, rootfs, &mut f);
                    if let Err(e) = res {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(e.into());
                    }
                    std::fs::rename(&tmp, &path)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                None => eng.export(&container, rootfs, &mut std::io::stdout().lock())?,
            }
            Ok(0)
        }
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "codex-ctr", &mut std::io::stdout());
            Ok(0)
        }
        Command::Manpages { dir } => super::manpages::write_all(&dir),
        Command::Version => {
            println!("codex-ctr version {}", env!("CARGO_PKG_VERSION"));
            println!(
                "runtime: codex-runtime {} (OCI runtime spec {})",
                env!("CARGO_PKG_VERSION"),
                codex_runtime::spec::OCI_VERSION
            );
            Ok(0)
        }
        Command::Info => {
            println!("{}", serde_json::to_string_pretty(&eng.info()?)?);
            Ok(0)
        }
        Command::Port { container, port } => super::ports::port(&eng, &container, port.as_deref()),
        Command::Inspect { spec, container } => {
            let v = if spec {
                eng.spec(&container)?
            } else {
                eng.inspect(&container)?
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        Command::Logs {
            timestamps,
            follow,
            tail,
            since,
            stdout,
            stderr,
            container,
        } => {
            let query = LogQuery {
                since: since.as_deref().map(parse_since).transpose()?,
                tail,
                stdout,
                stderr,
            };
            if !follow {
                for l in eng.logs(&container, &query)? {
                    print_log(&l, timestamps)?;
                }
                return Ok(0);
            }
            let mut f = eng.follow_logs(&container, query)?;
            while let Some(lines) = next_lines(&mut f, Duration::from_secs(1))? {
                for l in &lines {
                    print_log(l, timestamps)?;
                }
            }
            Ok(0)
        }
        Command::Wait {
            condition: Some(cond),
            timeout,
            containers,
        } => super::monitors::wait_condition(&eng, &cond, timeout.as_deref(), &containers),
        Command::Wait {
            condition: None,
            containers,
            ..
        } => {
            let mut unknown = false;
            let code = each(&containers, |c| {
                match eng.wait(c)? {
                    Some(code) => println!("{code}"),
                    None => {
                        unknown = true;
                        let why = eng.get(c)?.error.unwrap_or_default();
                        eprintln!("codex-ctr: {c}: the exit code is unknown: {why}");
                    }
                }
                Ok(())
            })?;
            // Docker's code for "the engine cannot say", never a made-up 0.
            Ok(if unknown { 125 } else { code })
        }
        Command::Events {
            since,
            until,
            filter,
            format,
        } => super::monitors::events(&eng, since.as_deref(), until.as_deref(), &filter, &format),
        Command::Image { command } => super::image::image(&eng, command),
        // Docker's short forms.
        Command::Images {
            format,
            quiet,
            filter,
        } => super::image::image(
            &eng,
            super::image::ImageCommand::Ls {
                format,
                quiet,
                filter,
            },
        ),
        Command::Rmi { references } => {
            super::image::image(&eng, super::image::ImageCommand::Rm { references })
        }
        Command::Pull(a) => super::image::pull(&eng, a),
        Command::Login(a) => super::image::login(a),
        Command::Volume { command } => volume(&eng, command),
        Command::Network { command } => super::network::network(&eng, command),
    }
}

fn print_log(l: &LogLine, timestamps: bool) -> std::io::Result<()> {
    let line = if timestamps {
        format!("{} {}", l.time, l.log)
    } else {
        l.log.clone()
    };
    if l.stream == "stderr" {
        writeln!(std::io::stderr().lock(), "{line}")
    } else {
        writeln!(std::io::stdout().lock(), "{line}")
    }
}

/// The exit code the supervisor records for a container stopped by `--timeout`
/// (timeout(1)'s).
const TIMED_OUT: i32 = 124;

/// Runs `f` for every name, reporting each failure and going on with the rest; 125
/// when any failed.
pub(super) fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<i32> {
    if names.is_empty() {
        bail!("name at least one container");
    }
    let mut failed = None;
    for n in names {
        if let Err(e) = f(n) {
            eprintln!("codex-ctr: {n}: {e:#}");
            failed = Some(e);
        }
    }
    // 125 as for any other engine error (Docker's scheme, used by every command here):
    // a script tells "the engine refused" from a container's own exit code.
    match failed {
        Some(_) => Ok(125),
        None => Ok(0),
    }
}

fn stop_timeout(rec: &ContainerRecord) -> Option<u64> {
    rec.config.get("stop_timeout").and_then(|v| v.as_u64())
}

/// `run`: create + start; attached, it streams the log and exits with the container's
/// code (signals to `run` are passed to the container).
fn run(eng: &Engine, a: &CreateArgs, detach: bool) -> Result<i32> {
    let mut config = config_from(a)?;
    // Attached, this command removes the container itself once it has its exit code;
    // the supervisor removes only detached ones.
    config.auto_remove = a.rm && detach;
    let rec = eng.create(config)?;
    if detach {
        if let Err(e) = eng.start(&rec.id) {
            if a.rm {
                let _ = eng.remove(&rec.id, true, true);
            }
            return Err(e.into());
        }
        println!("{}", rec.id);
        return Ok(0);
    }
    attach_and_start(eng, &rec.id, a.rm)
}

/// Starts a container and streams its output until it ends; signals to this command
/// go to the container; returns its exit code. With `remove`, the container is removed
/// at the end (or when it could not start).
fn attach_and_start(eng: &Engine, id: &str, remove: bool) -> Result<i32> {
    let forward = forward_signals()?;
    // Opened before the start, showing nothing older: no early line is missed.
    let mut follow = eng.follow_logs(
        id,
        LogQuery {
            tail: Some(0),
            ..Default::default()
        },
    )?;
    if let Err(e) = eng.start(id) {
        if remove {
            let _ = eng.remove(id, true, true);
        }
        return Err(e.into());
    }
    loop {
        match follow.poll(Duration::from_millis(50))? {
            Followed::Lines(lines) => {
                if let Err(e) = lines.iter().try_for_each(|l| print_log(l, false)) {
                    return reader_gone(eng, id, remove, e);
                }
            }
            Followed::Idle => {}
            Followed::Ended => break,
        }
        if let Some(sig) = forward.pending() {
            let _ = eng.kill(id, sig);
        }
    }
    let rec = eng.get(id)?;
    if rec.exit_code == Some(TIMED_OUT) {
        // Otherwise a timeout looks like the program's own failure.
        let why = rec.error.as_deref().unwrap_or("timed out");
        eprintln!("codex-ctr: {}: {why} (--timeout): stopped", rec.name);
    }
    if remove {
        eng.remove(id, true, true)?;
    }
    match rec.exit_code {
        Some(code) => Ok(code),
        None => bail!(
            "the exit code is unknown: {}",
            rec.error.as_deref().unwrap_or("no exit was recorded")
        ),
    }
}

/// The attached output's reader went away (`run ... | head -1`): the command ends as a
/// pipeline member does (141, 128 + SIGPIPE) and the container runs on, its output going
/// to its log; with `--rm` its supervisor removes it when it ends, as for `run -d --rm`.
fn reader_gone(eng: &Engine, id: &str, remove: bool, e: std::io::Error) -> Result<i32> {
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        return Err(anyhow::Error::new(e).context("writing the container's output"));
    }
    if remove {
        eng.remove_when_ended(id)?;
    }
    Ok(128 + libc::SIGPIPE)
}

/// The next lines of a followed log, or None when the container has ended.
fn next_lines(f: &mut LogFollow, wait: Duration) -> Result<Option<Vec<LogLine>>> {
    loop {
        match f.poll(wait)? {
            Followed::Lines(l) => return Ok(Some(l)),
            Followed::Idle => {}
            Followed::Ended => return Ok(None),
        }
    }
}

/// SIGINT/SIGTERM/SIGHUP/SIGQUIT to `run` are passed on to the container.
struct Forward(nix::sys::signalfd::SignalFd);

fn forward_signals() -> Result<Forward> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    set.thread_block()?;
    let fd = nix::sys::signalfd::SignalFd::with_flags(
        &set,
        nix::sys::signalfd::SfdFlags::SFD_NONBLOCK | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
    )?;
    Ok(Forward(fd))
}

impl Forward {
    fn pending(&self) -> Option<i32> {
        self.0
            .read_signal()
            .ok()
            .flatten()
            .map(|i| i.ssi_signo as i32)
    }
}

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

fn ps(eng: &Engine, all: bool, filters: &[String], quiet: bool, format: &str) -> Result<i32> {
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
        for r in &recs {
            println!("{}", &r.id[..12]);
        }
    } else if format == "json" {
        let mut all = eng.published_ports().unwrap_or_default();
        let mut out = Vec::new();
        for r in &recs {
            let mut v = serde_json::to_value(r)?;
            v["ports"] = serde_json::to_value(all.remove(&r.id).unwrap_or_default())?;
            out.push(v);
        }
        println!("{}", serde_json::to_string(&out)?);
    } else {
        let ports = super::ports::column(eng).unwrap_or_default();
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

fn volume(eng: &Engine, cmd: VolumeCommand) -> Result<i32> {
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

/// `stats`: once with `--no-stream`, else a refreshed table every window until
/// interrupted (JSON: one array per line).
fn stats(eng: &Engine, names: &[String], format: &str, no_stream: bool) -> Result<i32> {
    loop {
        let usage = eng.usage(names, codex_engine::usage::WINDOW)?;
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
