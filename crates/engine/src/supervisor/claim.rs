//! Which supervisor has a container: the id a supervisor started ahead is told, and the
//! claim that makes it the container's only supervisor (or the record that already
//! names it, for one a `run` forked).

use std::os::fd::{FromRawFd, OwnedFd};

use codex_sys::ProcessId;

use crate::error::{Context, Error, Result};
use crate::registry::{ContainerStatus, Registry};

/// The id a starter writes to `fd` (then closed): a full container id, or `None` at
/// an end without one.
pub(super) fn read_id(fd: i32) -> Option<String> {
    use std::io::Read;
    // SAFETY: the starter handed us `fd`, and nothing else in this process uses it (a
    // fresh exec, or a fork that moved it there).
    let pipe = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut text = String::new();
    pipe.take(crate::registry::ID_LEN as u64 + 2)
        .read_to_string(&mut text)
        .ok()?;
    let id = text.trim();
    crate::registry::is_full_id(id).then(|| id.to_string())
}

/// [`claim`], unless the record already names this process as the supervisor of the
/// created container (a `run` that forked it named it at the create,
/// `Engine::create_for`): then one read instead of a locked write. True if it claimed.
pub(super) fn claim_unless_named(registry: &Registry, id: &str) -> Result<bool> {
    let me =
        ProcessId::of(std::process::id() as i32).ctx(|| "reading this process's start time")?;
    let named = registry.get(id).is_ok_and(|r| {
        r.status == ContainerStatus::Created
            && r.supervisor_pid == Some(me.pid)
            && r.supervisor_start == Some(me.start_time)
    });
    if named {
        return Ok(false);
    }
    claim(registry, id).map(|()| true)
}

/// Records this process as the container's supervisor, unless the container is not
/// startable or another live supervisor has it.
fn claim(registry: &Registry, id: &str) -> Result<()> {
    let me =
        ProcessId::of(std::process::id() as i32).ctx(|| "reading this process's start time")?;
    registry.update_container(id, |r| {
        if let Some(p) = r.live_supervisor().filter(|p| *p != me) {
            return Err(Error::wrong_state(
                &r.name,
                r.status,
                format!(
                    "its supervisor (process {}) is starting or running it",
                    p.pid
                ),
            ));
        }
        if !matches!(
            r.status,
            ContainerStatus::Created
                | ContainerStatus::Exited
                | ContainerStatus::Stopped
                | ContainerStatus::Failed
        ) {
            return Err(Error::wrong_state(
                &r.name,
                r.status,
                "start needs it created or exited",
            ));
        }
        if r.status != ContainerStatus::Created {
            // The attached `run --rm` that made it removes only what its own start ran:
            // a container it left behind (both it and the supervisor died) and that is
            // started again stays until it is removed, like any other.
            r.remover_pid = None;
            r.remover_start = None;
        }
        r.set_deleter(None);
        r.set_supervisor(Some(me));
        Ok(())
    })?;
    Ok(())
}
