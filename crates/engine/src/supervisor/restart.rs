//! Restarts by the restart policy: `__supervise --root ROOT ID --restart` (what the
//! shim execs after the backoff, in place) and the loop of runs of a supervisor. See
//! docs/supervisor.md, "Restarts".

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use codex_sys::ProcessId;

use super::{load_config, report, shim, supervise, supervise_with_shim, Next, REPORTED, STATUS_FD};
use crate::error::{Context, Result};
use crate::registry::{ContainerStatus, Registry};
use crate::restart::next_delay;

/// `__supervise --root ROOT ID --restart`: the shim of a container whose restart
/// policy runs it again has slept the backoff and exec'd this (same pid, the one
/// the record names). Nobody waits for a report. Starts the container again unless
/// a user stopped it (or removed it) meanwhile.
pub(super) fn restart_main(root: &Path, id: &str) -> i32 {
    REPORTED.store(true, Ordering::SeqCst);
    // Nothing but stdio is ours (the shim's fds were close-on-exec).
    let _ = codex_shim::sys::close_from(STATUS_FD as u32);
    let Ok(registry) = Registry::open(root) else {
        return 1;
    };
    match claim_restart(&registry, id) {
        Ok(true) => supervise_runs(root, &registry, id, true),
        Ok(false) => 0,
        Err(_) => 1,
    }
}

/// Supervises runs of the container until one ends without a restart. With the
/// shim this process becomes the shim and this returns only if that failed; a
/// restart then comes back here (in one process, the backoff is slept here too).
pub(super) fn supervise_runs(root: &Path, registry: &Registry, id: &str, use_shim: bool) -> i32 {
    loop {
        let supervised = match use_shim.then(shim::Shim::find).flatten() {
            Some(shim) => supervise_with_shim(root, registry, id, shim),
            None => supervise(root, registry, id),
        };
        match supervised {
            Ok(Next::Done) => return 0,
            Ok(Next::Restart(delay)) => {
                codex_shim::handoff::sleep(delay);
                match claim_restart(registry, id) {
                    Ok(true) => continue,
                    Ok(false) => return 0,
                    Err(_) => return 1,
                }
            }
            Err(e) => {
                let msg = e.to_string();
                if let Some(delay) = retry_or_fail(registry, id, &msg) {
                    codex_shim::handoff::sleep(delay);
                    match claim_restart(registry, id) {
                        Ok(true) => continue,
                        Ok(false) => return 0,
                        Err(_) => return 1,
                    }
                }
                report(super::failure(&e));
                return 1;
            }
        }
    }
}

/// A start failed (its rootfs, a volume, the runtime...). During a restart, while
/// the policy allows, another attempt comes after the next backoff (the record stays
/// `restarting`, with the error; a transient failure does not end an `always`
/// service): returns that delay. Otherwise (a first start, or the policy is spent)
/// the container is `failed` with the error, as before.
pub(super) fn retry_or_fail(registry: &Registry, id: &str, msg: &str) -> Option<Duration> {
    let cfg = load_config(registry, id);
    let mut delay = None;
    let updated = registry.update_container(id, |r| {
        let restarting = r.status == ContainerStatus::Restarting && r.restart_at.is_none();
        let user_ended = r.stop_requested || r.manually_stopped;
        if restarting
            && !cfg.auto_remove
            && cfg
                .restart
                .restarts_after(1, r.restart_count, user_ended, false)
        {
            // A start that failed ran for no time: the backoff keeps doubling.
            let d = next_delay(
                r.restart_delay_ms.map(Duration::from_millis),
                Duration::ZERO,
            );
            r.restart_count = r.restart_count.saturating_add(1);
            r.restart_delay_ms = Some(d.as_millis().try_into().unwrap_or(u64::MAX));
            r.restart_at = Some(humantime::format_rfc3339_nanos(SystemTime::now() + d).to_string());
            r.error = Some(format!("restarting it failed: {msg}"));
            r.pid = None;
            delay = Some(d);
        } else {
            r.status = ContainerStatus::Failed;
            r.error = Some(msg.to_string());
            r.pid = None;
            r.restart_at = None;
            r.set_supervisor(None);
        }
        Ok(())
    });
    if let (Ok(rec), Some(d)) = (&updated, delay) {
        let details = [
            ("restart_count", rec.restart_count.to_string()),
            ("delay_ms", d.as_millis().to_string()),
            ("error", msg.to_string()),
        ];
        crate::events::emit_about(registry.root(), rec, "restart", &details);
    }
    delay
}

/// The restart policy's start: goes ahead (true) only if the container is still
/// `restarting` under this supervisor and no user has stopped it. A user's stop
/// that came first is finished here: the record ends as the user asked.
fn claim_restart(registry: &Registry, id: &str) -> Result<bool> {
    let me =
        ProcessId::of(std::process::id() as i32).ctx(|| "reading this process's start time")?;
    let mut go = false;
    registry.update_container(id, |r| {
        if r.status != ContainerStatus::Restarting || r.live_supervisor() != Some(me) {
            return Ok(());
        }
        if r.stop_requested || r.manually_stopped {
            r.status = if r.stop_requested {
                ContainerStatus::Stopped
            } else {
                ContainerStatus::Exited
            };
            r.set_supervisor(None);
        } else {
            go = true;
        }
        // None while restarting: being started now (a `stop` waits for it).
        r.restart_at = None;
        Ok(())
    })?;
    Ok(go)
}
