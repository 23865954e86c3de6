//! When supervision ends while the container may still run.
//!
//! The worker can die (killed, out of memory) or fail (the registry is unwritable) after
//! it started the container; the shim's pump can fail (the log's disk is full). Then
//! nothing would log the container's output or record its exit, while the record says
//! it failed or, worse, still names a dead supervisor. Nothing of it may run on
//! unsupervised: every process of it is killed, its rootfs unmounted, and the record
//! says `failed`, keeping the reason the worker gave if it gave one.
//!
//! Killing rather than adopting: an adopted container would need its pipes, timeout and
//! log position rebuilt in a process that is already ending badly; a clean `failed`
//! record the user (or a restart policy) can act on is the state to be in.

use std::path::Path;

use codex_sys::ProcessId;

use crate::registry::{ContainerStatus, Registry};

/// Kills and cleans up whatever runs of container `id`, and records it failed with
/// `reason` (or the reason already recorded by the worker). `ours` is the supervisor on
/// whose behalf this runs: if the record names another live one (a new start claimed
/// the container meanwhile), or an `rm` has claimed it, nothing is touched.
pub(super) fn abandon(
    root: &Path,
    registry: &Registry,
    id: &str,
    reason: &str,
    ours: Option<ProcessId>,
) {
    let Ok(rec) = registry.get(id) else {
        return;
    };
    let theirs = rec.live_supervisor().filter(|p| Some(*p) != ours);
    if theirs.is_some() || rec.status == ContainerStatus::Removing {
        return;
    }
    let rt = codex_runtime::Runtime::new(root.join("runtime"));
    let was_running = rt.load(id).is_ok_and(|c| c.state.init_alive());
    // delete --force: every process in the container's cgroup, then its state.
    let cleaned = rt.delete(id, true);
    if let Ok(dir) = registry.container_dir(id) {
        super::unmount_rootfs(&dir);
    }
    let _ = registry.update_container(id, |r| {
        if r.status == ContainerStatus::Removing {
            return Ok(());
        }
        let mut why = match (&r.status, &r.error) {
            (ContainerStatus::Failed, Some(e)) => e.clone(),
            _ => reason.to_string(),
        };
        if was_running {
            why.push_str("; it was running unsupervised and was killed");
        }
        if let Err(e) = &cleaned {
            why.push_str(&format!("; cleaning up: {e}"));
        }
        r.status = ContainerStatus::Failed;
        r.error = Some(why);
        r.pid = None;
        r.set_supervisor(None);
        r.finished_at
            .get_or_insert_with(codex_runtime::state::now_rfc3339);
        Ok(())
    });
}
