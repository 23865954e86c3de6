//! The end of a run: record how the container ended and clean up, in the supervisor
//! (worker or full binary) or when the shim runs `__supervise ... --finish`.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use codex_shim::handoff::Finish;
use codex_shim::pump::Outcome;
use codex_sys::ProcessId;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{abandon, load_config, unmount_rootfs, REPORTED};
use crate::config::ContainerConfig;
use crate::error::{Error, Result};
use crate::registry::{ContainerStatus, Intent, Registry};
use crate::restart::next_delay;

/// What the supervisor does once a run has ended and is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing: the supervisor exits.
    Done,
    /// The restart policy runs it again after this delay; the record says
    /// `restarting` and still names this supervisor.
    Restart(Duration),
}

/// Records how the container ended, deletes the runtime container, unmounts its
/// rootfs and removes it if it was started with `--rm`; or, if its restart policy
/// says so, marks it `restarting` and says when to start it again.
///
/// `removed_with_end`: the container is expected to be removed in the step that records
/// its end (an attached `run --rm`: see below). Its runtime container is then deleted
/// after that step instead of before it, so that the command, which waits for that
/// removal, does not wait for the deletion (0.6 ms) too: a removed container cannot be
/// started again, and its id is never reused. Should the removal not happen after all,
/// the deletion runs in the step itself, under the lock, before anyone could start it
/// again. A supervisor killed in between leaves its removal's intent abandoned: the
/// next command's reconcile deletes the files and the runtime container
/// (`Engine::check_due`).
#[allow(clippy::too_many_arguments)]
pub(super) fn complete(
    rt: &codex_runtime::Runtime,
    registry: &Registry,
    id: &str,
    dir: &Path,
    cfg: &ContainerConfig,
    outcome: Outcome,
    created: Option<codex_runtime::Container>,
    removed_with_end: bool,
) -> Result<Next> {
    let (code, timeout_note) = if outcome.memory_stopped {
        // Killed as the kernel's OOM killer kills, and reported with its exit code,
        // whatever the processes made of it: the policy sees a failed run.
        let limit = cfg.monitor.stop_on_memory.unwrap_or_default();
        (
            137,
            Some(format!(
                "killed: its memory use crossed --stop-on-memory ({limit} bytes)"
            )),
        )
    } else if outcome.timed_out {
        let secs = cfg.timeout.unwrap_or_default();
        (124, Some(format!("timed out after {secs} s")))
    } else {
        (outcome.code, None)
    };
    // The container this process created, or read now (the shim's finishing run).
    let loaded = created.map(Ok).unwrap_or_else(|| rt.load(id));
    let oom = loaded
        .as_ref()
        .is_ok_and(|c| c.state.cgroups.oom_kills() > 0);
    let mut pending = None;
    let deleted = match removed_with_end {
        true => {
            pending = loaded.ok();
            Ok(())
        }
        false => loaded.and_then(|c| rt.delete_loaded(c, true)),
    };
    // A container removed with its end is unmounted after that step (it is on its
    // command's path, and nobody can mount it again once it is removed); any other
    // before the end is recorded, when a start may come at it.
    if !removed_with_end {
        unmount_rootfs(dir);
    }
    let mut next = Next::Done;
    let mut auto_remove = cfg.auto_remove;
    let mut remover = None;
    let mut deleter = None;
    let root = registry.root();
    let (rec, retired) = registry.update_container_then_retire(id, |r| {
        let now = SystemTime::now();
        // Read under the same lock that records the end, so an
        // `Engine::remove_when_ended` racing with it either sees the container ended
        // (and removes it itself) or is seen here.
        auto_remove |= crate::removal::auto_remove_requested(r);
        remover = r.remover();
        // Decided under the lock: a user's stop or kill recorded its intent here
        // before it signalled, so the policy never undoes it.
        let user_ended = r.stop_requested || r.manually_stopped;
        let restart = !auto_remove
            && r.status != ContainerStatus::Removing
            && cfg
                .restart
                .restarts_after(code, r.restart_count, user_ended, outcome.timed_out);
        r.exit_code = Some(code);
        r.signal = outcome.signal;
        r.oom_killed = oom;
        r.pid = None;
        r.finished_at = Some(codex_runtime::state::now_rfc3339());
        r.error = timeout_note
            .clone()
            .or_else(|| deleted.as_ref().err().map(|e| format!("cleaning up: {e}")));
        if restart {
            let ran_for = r
                .started_at
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            let delay = next_delay(r.restart_delay_ms.map(Duration::from_millis), ran_for);
            r.status = ContainerStatus::Restarting;
            r.restart_count = r.restart_count.saturating_add(1);
            r.restart_delay_ms = Some(delay.as_millis().try_into().unwrap_or(u64::MAX));
            r.restart_at = Some(humantime::format_rfc3339_nanos(now + delay).to_string());
            // The supervisor stays named: it is the one that starts it again.
            next = Next::Restart(delay);
        } else {
            r.status = if r.stop_requested {
                ContainerStatus::Stopped
            } else {
                ContainerStatus::Exited
            };
            r.restart_at = None;
            r.set_supervisor(None);
        }
        // The remover (an attached `run --rm`) may leave the deletion of the container's
        // files to this process, which waits for it anyway: declared before the end is
        // recorded, so that the remover, who reads the end first, always finds it
        // declared.
        deleter = match (&remover, restart || auto_remove) {
            (Some(_), false) => Deleter::declare(registry),
            _ => None,
        };
        r.set_deleter(deleter.as_ref().map(|d| d.process));
        // Written under the lock that records the end: a removal (which takes this
        // lock) comes after it, so whoever finds the container gone reads its exit code
        // in the events (the Docker API's wait with `condition=removed` does).
        // Otherwise an `Engine::remove_when_ended` could remove it in between, and a
        // `docker run --rm` would get 0 for a run that failed.
        let mut details = vec![("exit_code", code.to_string())];
        if let Some(sig) = outcome.signal {
            details.push(("signal", sig.to_string()));
        }
        if outcome.memory_stopped {
            details.push(("stopped_by", "stop-on-memory".into()));
        }
        if oom {
            details.push(("oom_killed", "true".into()));
            crate::events::emit_about(root, r, "oom", &[]);
        }
        crate::events::emit_about(root, r, "die", &details);
        // The container of an attached `run --rm` is removed here, in the same step:
        // its command, which has its log open, reads the end from the removed record
        // and exits without a removal of its own. Not when the removal frees more than
        // the directory (addresses, anonymous volumes): the command frees those before
        // it returns.
        let retire = deleter.is_some() && !crate::run_end::frees_more_than_its_directory(cfg);
        if !retire {
            // Expected to be removed here, and it is not: its runtime container goes
            // now, before this lock lets a start at it.
            if let Some(Err(e)) = pending.take().map(|c| rt.delete_loaded(c, true)) {
                r.error.get_or_insert_with(|| format!("cleaning up: {e}"));
            }
        }
        Ok(retire)
    })?;
    if retired {
        crate::trace::phase("sup: ended and removed");
    }
    if removed_with_end {
        // Renamed by its removal. Should the removal not have happened after all, a
        // start that came in between mounted in its own namespace; this idle mount of
        // the ended run goes now all the same.
        let now_at = match retired {
            true => registry.retired_dir(id),
            false => dir.to_path_buf(),
        };
        unmount_rootfs(&now_at);
    }
    crate::testhook::pause("end-recorded");
    crate::testhook::die("end-recorded");
    // Removed with its end (or its removal failed after the step): nobody can start it
    // again, so its runtime container goes now, after the command was let go.
    if let Some(c) = pending.take() {
        if let Err(e) = rt.delete_loaded(c, true) {
            crate::trace::phase(&format!("sup: runtime container left: {e}"));
        }
    }
    if let Next::Restart(delay) = next {
        let details = [
            ("restart_count", rec.restart_count.to_string()),
            ("delay_ms", delay.as_millis().to_string()),
        ];
        crate::events::emit_about(root, &rec, "restart", &details);
    }
    if auto_remove || retired {
        crate::events::emit_about(root, &rec, "destroy", &[]);
    }
    // Its published ports end with the run (a failure here leaves a binding the rules
    // ignore: the container is no longer running).
    crate::network::publish::release(registry, id);
    if auto_remove {
        remove_ended(registry, id, cfg)?;
    } else if let (Some(remover), Next::Done) = (remover, next) {
        remove_if_left(registry, id, cfg, remover, deleter)?;
    }
    Ok(next)
}

/// This process, as the one that deletes an ended container's files once its remover
/// has removed it ([`crate::registry::ContainerRecord::deleter_pid`]), with the intent
/// that hands them to the full reconcile should it die first.
struct Deleter {
    process: ProcessId,
    intent: Intent,
}

impl Deleter {
    /// `None` when either cannot be had: the remover then deletes the files itself.
    fn declare(registry: &Registry) -> Option<Deleter> {
        let process = ProcessId::of(std::process::id().try_into().ok()?).ok()?;
        let intent = registry.intent("delete-removed").ok()?;
        Some(Deleter { process, intent })
    }

    /// Deletes what a removal of `id` left: called once the remover has exited. First
    /// the record, if the container is still there (`rm` failed, or it was started
    /// again), stops naming this process, so whoever removes it later deletes the files
    /// itself; a removal before that (under the same lock) left them here. Should
    /// either step fail, the files are left to the next command's full reconcile.
    fn finish(self, registry: &Registry, id: &str) {
        crate::testhook::die("delete-removed");
        let me = self.process;
        let renounced = registry.update_container(id, |r| {
            if r.deleter_pid == Some(me.pid) && r.deleter_start == Some(me.start_time) {
                r.set_deleter(None);
            }
            Ok(())
        });
        let deleted = match renounced {
            Ok(_) | Err(Error::NotFound { .. }) => registry.delete_retired(id),
            Err(e) => Err(e),
        };
        match deleted {
            Ok(true) => crate::trace::phase("sup: removed files deleted"),
            Ok(false) => {}
            Err(_) => self.intent.abandon(),
        }
    }
}

/// Removes the ended container `id` (its runtime container and rootfs are already gone),
/// as `rm` would.
fn remove_ended(registry: &Registry, id: &str, cfg: &ContainerConfig) -> Result<()> {
    // Abandoned if this dies before the addresses are freed (see `registry::intent`).
    let _intent = registry.intent("auto-rm")?;
    registry.remove_container(id)?;
    // As `rm` does; a crash here leaves them to the reconcile its intent calls for.
    let _ = crate::network::release_container(registry, id);
    crate::volume::remove_anonymous(registry, cfg)
}

/// The end of an attached `run --rm`'s container: that command removes it once it has
/// read the exit code just recorded. This waits for the command to exit (a few
/// milliseconds from now, as a rule) and removes what it left: the container of a
/// command that was killed goes all the same, as Docker's daemon removes it. A container
/// started again meanwhile (a user's `start`) is left alone.
fn remove_if_left(
    registry: &Registry,
    id: &str,
    cfg: &ContainerConfig,
    remover: ProcessId,
    deleter: Option<Deleter>,
) -> Result<()> {
    let exited = match remover.open() {
        // It has exited already (whether or not its pid is in use again).
        Ok(None) => true,
        Ok(Some(pidfd)) => loop {
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => break true,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break false,
            }
        },
        Err(_) => false,
    };
    if !exited {
        // When it exits cannot be told: it may still be about to read the exit code, so
        // the container is left to it, as before this wait existed; and the deletion of
        // the files it may leave to this process, to the next command's full reconcile.
        if let Some(d) = deleter {
            d.intent.abandon();
        }
        return Ok(());
    }
    let removed = remove_left(registry, id, cfg);
    // Whoever removed it (the remover, or a user's `rm` meanwhile) may have left its
    // files: after the remover's exit and the removal above, no removal of this run's
    // container is still to come.
    if let Some(d) = deleter {
        d.finish(registry, id);
    }
    removed
}

/// The removal of [`remove_if_left`], once the remover has exited.
fn remove_left(registry: &Registry, id: &str, cfg: &ContainerConfig) -> Result<()> {
    let rec = match registry.get(id) {
        Ok(rec) => rec,
        Err(crate::error::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    if crate::engine::is_live(rec.status) || crate::engine::starting(&rec) {
        return Ok(());
    }
    crate::events::emit_about(registry.root(), &rec, "destroy", &[]);
    remove_ended(registry, id, cfg)
}

/// `--finish ...`, run by the shim: the init has exited (or supervision failed);
/// record it and clean up as [`complete`] does. Returns the process exit code.
pub(super) fn finish(root: &Path, id: &str, args: &[String]) -> i32 {
    // The start was reported long ago: fd 3 is not ours in this mode.
    REPORTED.store(true, Ordering::SeqCst);
    let Ok(registry) = Registry::open(root) else {
        return 1;
    };
    let done = match Finish::parse(args) {
        Ok(Finish::Exited(outcome)) => (|| {
            let dir = registry.container_dir(id)?;
            let cfg = load_config(&registry, id);
            let rt = codex_runtime::Runtime::new(root.join("runtime"));
            complete(&rt, &registry, id, &dir, &cfg, outcome, None, false)
        })()
        .map_err(|e| e.to_string()),
        Ok(Finish::Failed(msg)) => Err(msg),
        Err(e) => Err(format!("the supervisor's shim: {e}")),
    };
    match done {
        Ok(Next::Done) => 0,
        Ok(Next::Restart(delay)) => {
            // The shim sleeps the backoff and execs the restart.
            let notice = codex_shim::handoff::encode_restart(delay);
            match std::io::Write::write_all(&mut std::io::stdout(), &notice) {
                Ok(()) => 0,
                Err(_) => 1,
            }
        }
        Err(msg) => {
            // Supervision failed: the container may still run, with nobody pumping its
            // output or waiting for it. The shim that runs this is its supervisor.
            let shim = ProcessId::of(nix::unistd::getppid().as_raw()).ok();
            abandon::abandon(root, &registry, id, &msg, shim);
            1
        }
    }
}
