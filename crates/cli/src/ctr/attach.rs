//! The attached `run` and `start -a`: stream the container's output while it runs, pass
//! signals on, and end as a pipeline member would when the reader goes away.

use std::time::Duration;

use anyhow::{bail, Result};
use codex_engine::engine::{Engine, LogFollow};
use codex_engine::logread::{Followed, LogQuery};
use codex_engine::supervisor::logs::LogLine;

use super::args::CreateArgs;
use super::commands::{print_log, TIMED_OUT};
use super::create::config_from;

/// `run`: create + start; attached, it streams the log and exits with the container's
/// code (signals to `run` are passed to the container).
pub(super) fn run(eng: &Engine, a: &CreateArgs, detach: bool) -> Result<i32> {
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
pub(super) fn attach_and_start(eng: &Engine, id: &str, remove: bool) -> Result<i32> {
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
    codex_engine::trace::phase("attach: ended");
    let rec = eng.get(id)?;
    if rec.exit_code == Some(TIMED_OUT) {
        // Otherwise a timeout looks like the program's own failure.
        let why = rec.error.as_deref().unwrap_or("timed out");
        eprintln!("codex-ctr: {}: {why} (--timeout): stopped", rec.name);
    }
    if remove {
        eng.remove(id, true, true)?;
        codex_engine::trace::phase("attach: removed");
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
pub(super) fn next_lines(f: &mut LogFollow, wait: Duration) -> Result<Option<Vec<LogLine>>> {
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
