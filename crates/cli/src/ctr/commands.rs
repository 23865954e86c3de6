//! One function per command: build the engine's inputs, call it, print.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use codex_engine::engine::{Engine, ExecRequest};
use codex_engine::logread::{parse_since, LogQuery};
use codex_engine::registry::{default_root, ContainerRecord};
use codex_engine::supervisor::logs::LogLine;

use super::args::{Cli, Command, SystemCommand};
use super::create::config_from;

fn engine(root: Option<PathBuf>) -> Result<Engine> {
    let root = root.unwrap_or_else(default_root);
    let exe =
        std::env::current_exe().context("locating the codex-ctr binary for the supervisor")?;
    Ok(Engine::open(&root, exe)?)
}

pub fn dispatch(cli: Cli) -> Result<i32> {
    let eng = engine(cli.root)?;
    if let Command::Serve(a) = &cli.command {
        return super::serve::serve(eng, a);
    }
    match cli.command {
        Command::Run(run) => super::attach::run(&eng, &run.create, run.detach),
        Command::Create(a) => {
            let config = config_from(&a)?;
            super::create::pull_for(&eng, &a, &config)?;
            let rec = eng.create(config)?;
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
                return super::attach::attach_and_start(&eng, &rec.id, false, None);
            }
            each(&containers, |c| {
                let rec = eng.start(c)?;
                println!("{}", rec.name);
                Ok(())
            })
        }
        Command::Attach { container } => super::attach::attach(&eng, &container),
        Command::Top(a) => super::ops::top(&eng, &a),
        Command::Update(a) => super::ops::update(&eng, &a),
        Command::System {
            command: SystemCommand::Df(a),
        } => super::ops::df(&eng, &a),
        Command::Stop {
            time,
            signal,
            containers,
        } => each(&containers, |c| {
            let rec = eng.get(c)?;
            let timeout = time.or_else(|| stop_timeout(&rec)).unwrap_or(10);
            let signal = signal
                .as_deref()
                .map(codex_runtime::parse_signal)
                .transpose()?;
            eng.stop_with(c, Duration::from_secs(timeout), signal)?;
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
        } => super::listing::ps(&eng, all, &filter, quiet, &format),
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
        Command::Stats(a) => super::monflags::stats(&eng, &a),
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
            command: SystemCommand::Check,
        } => {
            let checked = eng.check()?;
            for r in &checked.registry.repairs {
                println!("repaired: {r}");
            }
            for (name, now) in &checked.corrected {
                println!("corrected: container {name}: {now}");
            }
            for p in checked.registry.problems.iter().chain(&checked.problems) {
                println!("problem: {p}");
            }
            if checked.is_clean() {
                println!("clean");
            }
            Ok(i32::from(
                !checked.registry.problems.is_empty() || !checked.problems.is_empty(),
            ))
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
        Command::Serve(_) => Ok(0), // handled above
        Command::Info => {
            println!("{}", serde_json::to_string_pretty(&eng.info()?)?);
            Ok(0)
        }
        Command::Port { container, port } => super::ports::port(&eng, &container, port.as_deref()),
        Command::Inspect {
            spec,
            format,
            containers,
        } => super::listing::inspect(&eng, spec, format.as_deref(), &containers),
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
            while let Some(lines) = super::attach::next_lines(&mut f, Duration::from_secs(1))? {
                for l in &lines {
                    print_log(l, timestamps)?;
                }
            }
            // As in an attached run: our exit need not wait for the watch's release.
            f.close_in_background();
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
        Command::Push(a) => super::image::push(&eng, a),
        Command::Commit(a) => super::build::commit(&eng, a),
        Command::Diff(a) => super::diff::diff(&eng, &a),
        Command::Build(a) => super::build::build(&eng, a),
        Command::Login(a) => super::image::login(a),
        Command::Volume { command } => super::listing::volume(&eng, command),
        Command::Network { command } => super::network::network(&eng, command),
    }
}

pub(super) fn print_log(l: &LogLine, timestamps: bool) -> std::io::Result<()> {
    let line = if timestamps {
        format!("{} {}", l.time, l.log)
    } else {
        l.log.clone()
    };
    // A partial record (a terminal's prompt) continues on the same line, and must be
    // seen now, not when a newline comes.
    let end = if l.partial { "" } else { "\n" };
    if l.stream == "stderr" {
        write!(std::io::stderr().lock(), "{line}{end}")
    } else {
        let mut out = std::io::stdout().lock();
        write!(out, "{line}{end}")?;
        if l.partial {
            out.flush()?;
        }
        Ok(())
    }
}

/// The exit code the supervisor records for a container stopped by `--timeout`
/// (timeout(1)'s).
pub(super) const TIMED_OUT: i32 = 124;

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
