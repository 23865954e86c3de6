//! One function per command: build the engine's inputs, call it, print.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use codex_engine::config::{
    parse_cpus, parse_env_file, parse_memory, ContainerConfig, Limits, Volume, VolumeSource,
};
use codex_engine::engine::Engine;
use codex_engine::registry::{default_root, ContainerRecord, ContainerStatus};

use super::args::{Cli, Command, CreateArgs, ImageCommand};
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
        Command::Start { containers } => each(&containers, |c| {
            let rec = eng.start(c)?;
            println!("{}", rec.name);
            Ok(())
        }),
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
        Command::Rm { force, containers } => each(&containers, |c| {
            eng.remove(c, force)?;
            println!("{c}");
            Ok(())
        }),
        Command::Ps { all, quiet, format } => ps(&eng, all, quiet, &format),
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
            tail,
            stdout,
            stderr,
            container,
        } => {
            let lines = eng.logs(&container)?;
            let wanted: Vec<_> = lines
                .into_iter()
                .filter(|l| {
                    (!stdout && !stderr)
                        || (stdout && l.stream == "stdout")
                        || (stderr && l.stream == "stderr")
                })
                .collect();
            let skip = tail.map_or(0, |n| wanted.len().saturating_sub(n));
            for l in &wanted[skip..] {
                print_log(l, timestamps);
            }
            Ok(0)
        }
        Command::Wait { containers } => each(&containers, |c| {
            println!("{}", eng.wait(c)?);
            Ok(())
        }),
        Command::Image { command } => image(&eng, command),
    }
}

fn print_log(l: &codex_engine::supervisor::logs::LogLine, timestamps: bool) {
    let line = if timestamps {
        format!("{} {}", l.time, l.log)
    } else {
        l.log.clone()
    };
    if l.stream == "stderr" {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// Runs `f` for each name; the first error is reported after all were tried.
fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<i32> {
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
    match failed {
        Some(_) => Ok(1),
        None => Ok(0),
    }
}

fn stop_timeout(rec: &ContainerRecord) -> Option<u64> {
    rec.config.get("stop_timeout").and_then(|v| v.as_u64())
}

fn config_from(a: &CreateArgs) -> Result<ContainerConfig> {
    let isolation = a.isolation.parse()?;
    let mut rest = a.rest.clone();
    let (image, rootfs) = match (&a.rootfs, isolation) {
        (Some(r), _) => (
            None,
            Some(std::fs::canonicalize(r).with_context(|| format!("--rootfs {}", r.display()))?),
        ),
        (None, codex_engine::config::Isolation::Minimal) => (None, None),
        (None, _) => {
            if rest.is_empty() {
                bail!("give an IMAGE (or --rootfs DIR)");
            }
            (Some(rest.remove(0)), None)
        }
    };
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(parse_env_file(f, |k| std::env::var(k).ok())?);
    }
    env.extend(a.env.iter().cloned());
    let mut labels = BTreeMap::new();
    for (i, l) in a.label.iter().enumerate() {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            bail!("label[{i}]: {l:?} is not KEY=VALUE");
        }
        labels.insert(k.to_string(), v.to_string());
    }
    let mut volumes = Vec::new();
    for (i, v) in a.volume.iter().enumerate() {
        volumes.push(Volume::parse(&format!("volume[{i}]"), v)?);
    }
    for t in &a.tmpfs {
        volumes.push(Volume {
            source: VolumeSource::Tmpfs,
            destination: t.clone(),
            readonly: false,
        });
    }
    let limits = Limits {
        memory: a
            .memory
            .as_deref()
            .map(|m| parse_memory("memory", m))
            .transpose()?,
        cpus: a
            .cpus
            .as_deref()
            .map(|c| parse_cpus("cpus", c))
            .transpose()?,
        pids: a.pids_limit,
        open_files: a.open_files,
        ..Default::default()
    };
    Ok(ContainerConfig {
        name: a.name.clone(),
        image,
        rootfs,
        entrypoint: a.entrypoint.iter().cloned().collect(),
        command: rest,
        env,
        working_dir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        volumes,
        labels,
        limits,
        isolation,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        auto_remove: a.rm,
    })
}

/// `run`: create + start; attached, it streams the log and exits with the container's
/// code (signals to `run` are passed to the container).
fn run(eng: &Engine, a: &CreateArgs, detach: bool) -> Result<i32> {
    let rec = eng.create(config_from(a)?)?;
    if let Err(e) = eng.start(&rec.id) {
        if a.rm {
            let _ = eng.remove(&rec.id, true);
        }
        return Err(e.into());
    }
    if detach {
        println!("{}", rec.id);
        return Ok(0);
    }
    let forward = forward_signals()?;
    let mut shown = 0usize;
    let code = loop {
        let lines = eng.logs(&rec.id).unwrap_or_default();
        for l in lines.iter().skip(shown) {
            print_log(l, false);
        }
        shown = shown.max(lines.len());
        let r = eng.get(&rec.id)?;
        if !matches!(
            r.status,
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
        ) {
            for l in eng.logs(&rec.id).unwrap_or_default().iter().skip(shown) {
                print_log(l, false);
            }
            break r.exit_code.unwrap_or(0);
        }
        if let Some(sig) = forward.pending() {
            let _ = eng.kill(&rec.id, sig);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if a.rm {
        eng.remove(&rec.id, true)?;
    }
    Ok(code)
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

fn ps(eng: &Engine, all: bool, quiet: bool, format: &str) -> Result<i32> {
    let recs: Vec<ContainerRecord> = eng
        .list()?
        .into_iter()
        .filter(|r| {
            all || matches!(
                r.status,
                ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
            )
        })
        .collect();
    if quiet {
        for r in &recs {
            println!("{}", &r.id[..12]);
        }
    } else if format == "json" {
        println!("{}", serde_json::to_string(&recs)?);
    } else {
        let mut rows = vec![["ID", "NAME", "STATUS", "EXIT", "CREATED", "COMMAND"]
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
                r.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                r.created.clone(),
                cmd.join(" "),
            ]);
        }
        print_table(&rows);
    }
    Ok(0)
}

fn image(eng: &Engine, cmd: ImageCommand) -> Result<i32> {
    let store = eng.images()?;
    match cmd {
        ImageCommand::Import { source, reference } => {
            let img = store.import(&source, &reference)?;
            println!("{}", img.id);
        }
        ImageCommand::Ls { format } => {
            let imgs = store.list()?;
            if format == "json" {
                println!("{}", serde_json::to_string(&imgs)?);
            } else {
                let mut rows = vec![["REPOSITORY", "TAG", "ID", "CREATED", "SIZE"]
                    .map(String::from)
                    .to_vec()];
                for i in &imgs {
                    rows.push(vec![
                        i.name.clone().unwrap_or_else(|| "<none>".into()),
                        i.tag.clone().unwrap_or_else(|| "<none>".into()),
                        i.short_id().to_string(),
                        i.created.clone(),
                        i.size.to_string(),
                    ]);
                }
                print_table(&rows);
            }
        }
        ImageCommand::Rm { references } => {
            let recs = eng.list()?;
            let in_use = |id: &str| {
                recs.iter()
                    .any(|r| r.config.get("image").and_then(|v| v.as_str()) == Some(id))
            };
            for r in &references {
                store.remove(r, in_use)?;
                println!("{r}");
            }
        }
    }
    Ok(0)
}
