//! Restarts by the restart policy: `__supervise --root ROOT ID --restart` (what the
//! shim execs after the backoff, in place) and the loop of runs of a supervisor. See
//! docs/supervisor.md, "Restarts".

use std::path::Path;
use std::sync::atomic::Ordering;

use codex_sys::ProcessId;

use super::{
    record_failure, report, shim, supervise, supervise_with_shim, Next, REPORTED, STATUS_FD,
};
use crate::error::{Context, Result};
use crate::registry::{ContainerStatus, Registry};

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
                record_failure(registry, id, &msg);
                report(serde_json::json!({"error": msg}));
                return 1;
            }
        }
    }
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
