//! The attached `run` and `start -a`: stream the container's output while it runs, pass
//! signals on, and end as a pipeline member would when the reader goes away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use codex_engine::attach::set_terminal_size;
use codex_engine::config::ContainerConfig;
use codex_engine::engine::{Engine, LogFollow};
use codex_engine::logread::{Followed, LogQuery};
use codex_engine::registry::ContainerRecord;
use codex_engine::run_end::AtEnd;
use codex_engine::supervisor::logs::LogLine;

use super::args::CreateArgs;
use super::commands::{print_log, TIMED_OUT};
use super::create::config_from;
use super::terminal;

/// `run`: create + start; attached, it streams the log and exits with the container's
/// code (signals to `run` are passed to the container).
pub(super) fn run(eng: &Engine, a: &CreateArgs, detach: bool) -> Result<i32> {
    let mut config = config_from(a)?;
    // Attached, this command removes the container itself once it has read its output
    // and exit code (codex_engine::run_end says why not its supervisor); the supervisor
    // removes only detached ones.
    config.auto_remove = a.rm && detach;
    super::create::pull_for(eng, a, &config)?;
    // The supervisor starts now and waits for the container's id: its exec overlaps
    // the create. If the create fails, dropping it makes it exit.
    let stdin = (!detach && config.interactive && !config.tty)
        .then(|| nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC))
        .transpose()?;
    let (stdin_r, stdin_w) = match stdin {
        Some((r, w)) => (Some(r), Some(w)),
        None => (None, None),
    };
    let mut start = eng.prepare_start_for(&config, stdin_r)?;
    // A container that goes when its run ends is not written durably (fsync): a host
    // crash loses nothing a user could come back to. Attached, this command removes it
    // and is named in it: should this command be killed, the container is removed at
    // its end all the same.
    let keeping = match a.rm {
        true => {
            let me = (!detach)
                .then(|| codex_sys::ProcessId::of(std::process::id() as i32))
                .transpose()?;
            codex_engine::registry::Keeping::Ephemeral { remover: me }
        }
        false => codex_engine::registry::Keeping::Durable,
    };
    let rec = eng.create_for(config, keeping, &mut start)?;
    // A command killed here leaves a created container whose record names a supervisor
    // that gets no id and exits: the container stays startable (ctr_forked_start).
    codex_engine::testhook::die("run-created");
    if detach {
        if let Err(e) = eng.start_prepared(start, &rec.id) {
            if a.rm {
                let _ = eng.remove(&rec.id, true, true);
            }
            return Err(e.into());
        }
        println!("{}", rec.id);
        return Ok(0);
    }
    attach_and_start(eng, &rec.id, a.rm, Some(Prepared { start, stdin_w }))
}

/// A supervisor started ahead of the create ([`Engine::prepare_start`]), and the
/// writing end of the container's stdin pipe when it was made with `-i`.
pub(super) struct Prepared {
    start: codex_engine::PreparedStart,
    stdin_w: Option<std::os::fd::OwnedFd>,
}

/// Starts a container and streams its output until it ends; signals to this command
/// go to the container; returns its exit code. With `remove`, the container is removed
/// at the end (or when it could not start). A container made with `-i` reads this
/// command's stdin (to its end); one made with `-t` has its terminal connected to
/// this one (raw mode, resizes, and the detach keys Ctrl-P Ctrl-Q).
pub(super) fn attach_and_start(
    eng: &Engine,
    id: &str,
    remove: bool,
    prepared: Option<Prepared>,
) -> Result<i32> {
    let rec = eng.get(id)?;
    let cfg: ContainerConfig = serde_json::from_value(rec.config.clone()).unwrap_or_default();
    let forward = forward_signals(cfg.tty)?;
    // Opened before the start, showing nothing older: no early line is missed.
    let mut follow = eng.follow_logs(
        id,
        LogQuery {
            tail: Some(0),
            ..Default::default()
        },
    )?;
    let detached = Arc::new(AtomicBool::new(false));
    let started = if let Some(p) = prepared {
        let started = eng.start_prepared(p.start, id);
        if let (true, Some(w)) = (started.is_ok(), p.stdin_w) {
            terminal::copy_stdin(w, false, detached.clone());
        }
        started
    } else if cfg.interactive && !cfg.tty {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let started = eng.start_with_stdin(id, r);
        if started.is_ok() {
            terminal::copy_stdin(w, false, detached.clone());
        }
        started
    } else {
        eng.start(id)
    };
    match &started {
        Ok(rec) => follow.started(rec),
        Err(_) if remove => {
            let _ = eng.remove(id, true, true);
        }
        Err(_) => {}
    }
    started?;
    stream(eng, &rec, follow, forward, remove, detached, &cfg)
}

/// `attach`: the running container's output from now on, its terminal connected to
/// this one when it has one (`-t`), or our stdin to its stdin when it was made with `-i`
/// and started detached; ends with its exit code, or 0 on the detach keys.
pub(super) fn attach(eng: &Engine, reference: &str) -> Result<i32> {
    let rec = eng.get(reference)?;
    let cfg: ContainerConfig = serde_json::from_value(rec.config.clone()).unwrap_or_default();
    let forward = forward_signals(cfg.tty)?;
    let follow = eng.follow_logs(
        &rec.id,
        LogQuery {
            tail: Some(0),
            ..Default::default()
        },
    )?;
    if rec.status != codex_engine::registry::ContainerStatus::Running {
        bail!("{}: is {:?}: attach needs it running", rec.name, rec.status);
    }
    let detached = Arc::new(AtomicBool::new(false));
    if cfg.interactive && !cfg.tty {
        // Its supervisor's stdin pipe, when it keeps one (`run -di`): our input goes there,
        // and our end closing leaves the container's stdin open, as Docker's does.
        if let Ok(w) = eng.stdin_writer(&rec.id) {
            terminal::copy_stdin(w, false, detached.clone());
        }
    }
    stream(eng, &rec, follow, forward, false, detached, &cfg)
}

/// Streams the output of a started container until it ends (or the detach keys).
fn stream(
    eng: &Engine,
    rec: &ContainerRecord,
    mut follow: LogFollow,
    forward: Forward,
    remove: bool,
    detached: Arc<AtomicBool>,
    cfg: &ContainerConfig,
) -> Result<i32> {
    let (id, name) = (rec.id.as_str(), rec.name.as_str());
    // A terminal: a copy of its master, sized as ours, typed into from our stdin (raw
    // while attached) when the container was made with -i.
    let mut raw = None;
    let master = if cfg.tty {
        let master = eng.terminal(id)?;
        if let Some((rows, cols)) = terminal::local_size() {
            let _ = set_terminal_size(&master, rows, cols);
        }
        if cfg.interactive {
            raw = Some(terminal::RawMode::enter());
            terminal::copy_stdin(master.try_clone()?, true, detached.clone());
        }
        Some(master)
    } else {
        None
    };
    loop {
        match follow.poll(Duration::from_millis(50))? {
            Followed::Lines(lines) => {
                if let Err(e) = lines.iter().try_for_each(|l| print_log(l, false)) {
                    drop(raw.take());
                    return reader_gone(eng, id, remove, e);
                }
            }
            Followed::Idle => {}
            Followed::Ended => break,
        }
        if detached.load(Ordering::SeqCst) {
            drop(raw.take());
            eprintln!("\ncodex-ctr: detached; {name} runs on (codex-ctr attach {name} to return)");
            if remove {
                eng.remove_when_ended(id)?;
            }
            return Ok(0);
        }
        while let Some(sig) = forward.pending() {
            match (&master, sig) {
                (Some(m), libc::SIGWINCH) => {
                    if let Some((rows, cols)) = terminal::local_size() {
                        let _ = set_terminal_size(m, rows, cols);
                    }
                }
                _ => {
                    let _ = eng.kill(id, sig);
                }
            }
        }
    }
    drop(raw);
    codex_engine::trace::phase("attach: ended");
    // Made to be removed by whoever records its end (`run --rm`, or a `create --rm`
    // started with -a): that removal is waited for. Otherwise, with `remove`, this
    // command removes it once it has read the exit code, unless its supervisor removed
    // it with its end.
    let (exit_code, error) = if cfg.auto_remove {
        let end = follow.await_removal(cfg)?;
        codex_engine::trace::phase("attach: removed");
        (end.exit_code, end.error)
    } else {
        match follow.at_end()? {
            // Removed by its supervisor with its end: an attached `run --rm`'s container
            // whose removal frees nothing but its directory (this command may be that
            // `run`, or an `attach` to it).
            AtEnd::Removed(end) => {
                codex_engine::trace::phase("attach: removed");
                (end.exit_code, end.error)
            }
            AtEnd::Present(rec) => {
                if remove {
                    codex_engine::trace::phase("attach: removing");
                    match eng.remove(id, true, true) {
                        // Its supervisor removed it with its end just after the look
                        // above: gone, as asked, and the record read said how it ended.
                        Ok(()) | Err(codex_engine::error::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                    codex_engine::trace::phase("attach: removed");
                }
                (rec.exit_code, rec.error)
            }
        }
    };
    // The last close of the follower's inotify instance waits 5-18 ms for the kernel
    // to free its watch (an SRCU grace period): as a drop here, or at our exit, it
    // delayed the end of every attached run by that much.
    follow.close_in_background();
    if exit_code == Some(TIMED_OUT) {
        // Otherwise a timeout looks like the program's own failure. (The record that
        // says why may be gone: its removal can be faster than this command.)
        let why = error.unwrap_or_else(|| match cfg.timeout {
            Some(secs) => format!("timed out after {secs} s"),
            None => "timed out".into(),
        });
        eprintln!("codex-ctr: {name}: {why} (--timeout): stopped");
        return Ok(TIMED_OUT);
    }
    match exit_code {
        Some(code) => Ok(code),
        None => bail!(
            "the exit code is unknown: {}",
            error.as_deref().unwrap_or("no exit was recorded")
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
        match eng.remove_when_ended(id) {
            // Removed with its end by its supervisor meanwhile: gone, as asked.
            Ok(_) | Err(codex_engine::error::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(128 + libc::SIGPIPE)
}

/// The next lines of a followed log, or None when the container has ended.
pub(super) fn next_lines(f: &mut LogFollow, wait: Duration) -> Result<Option<Vec<LogLine>>> {
    loop {
        match f.poll(wait)? {
            Followed::Lines(l) => return Ok(Some(l)),
            Followed::Idle => {}
            Followed::Ended => return Ok(None),
        }
    }
}

/// SIGINT/SIGTERM/SIGHUP/SIGQUIT to `run` are passed on to the container; with a
/// terminal, SIGWINCH (a resize of ours) too, as a resize of its.
struct Forward(nix::sys::signalfd::SignalFd);

fn forward_signals(winch: bool) -> Result<Forward> {
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
    if winch {
        set.add(Signal::SIGWINCH);
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
