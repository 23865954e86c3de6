//! The end of a run: record how the container ended and clean up, in the supervisor
//! (worker or full binary) or when the shim runs `__supervise ... --finish`.

use std::path::Path;
use std::sync::atomic::Ordering;

use codex_shim::handoff::Finish;
use codex_shim::pump::Outcome;
use codex_sys::ProcessId;

use super::{abandon, load_config, unmount_rootfs, REPORTED};
use crate::config::ContainerConfig;
use crate::error::Result;
use crate::registry::{ContainerStatus, Registry};

/// Records how the container ended, deletes the runtime container, unmounts its
/// rootfs and removes it if it was started with `--rm`.
pub(super) fn complete(
    rt: &codex_runtime::Runtime,
    registry: &Registry,
    id: &str,
    dir: &Path,
    cfg: &ContainerConfig,
    outcome: Outcome,
) -> Result<()> {
    let (code, timeout_note) = if outcome.timed_out {
        let secs = cfg.timeout.unwrap_or_default();
        (124, Some(format!("timed out after {secs} s")))
    } else {
        (outcome.code, None)
    };
    let oom = rt
        .load(id)
        .map(|c| c.state.cgroups.oom_kills() > 0)
        .unwrap_or(false);
    let deleted = rt.delete(id, true);
    unmount_rootfs(dir);
    registry.update_container(id, |r| {
        r.status = if r.stop_requested {
            ContainerStatus::Stopped
        } else {
            ContainerStatus::Exited
        };
        r.exit_code = Some(code);
        r.signal = outcome.signal;
        r.oom_killed = oom;
        r.pid = None;
        r.set_supervisor(None);
        r.finished_at = Some(codex_runtime::state::now_rfc3339());
        r.error = timeout_note
            .clone()
            .or_else(|| deleted.as_ref().err().map(|e| format!("cleaning up: {e}")));
        Ok(())
    })?;
    // Its published ports end with the run (a failure here leaves a binding the rules
    // ignore: the container is no longer running).
    crate::network::publish::release(registry, id);
    if cfg.auto_remove {
        registry.remove_container(id)?;
        // As `rm` does; a crash here leaves them to the next reconcile.
        let _ = crate::network::release_container(registry, id);
        crate::volume::remove_anonymous(registry, cfg)?;
    }
    Ok(())
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
            complete(&rt, &registry, id, &dir, &cfg, outcome)
        })()
        .map_err(|e| e.to_string()),
        Ok(Finish::Failed(msg)) => Err(msg),
        Err(e) => Err(format!("the supervisor's shim: {e}")),
    };
    match done {
        Ok(()) => 0,
        Err(msg) => {
            // Supervision failed: the container may still run, with nobody pumping its
            // output or waiting for it. The shim that runs this is its supervisor.
            let shim = ProcessId::of(nix::unistd::getppid().as_raw()).ok();
            abandon::abandon(root, &registry, id, &msg, shim);
            1
        }
    }
}
