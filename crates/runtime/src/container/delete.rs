//! `delete`: removes a stopped container (with `force`, kills a running one first),
//! runs the poststop hooks and leaves no process, cgroup or state behind.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::Runtime;
use crate::error::{Context, Error, Result};
use crate::hooks::{self, HookKind};
use crate::state::Status;

impl Runtime {
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        self.delete_loaded(self.load(id)?, force)
    }

    /// [`Runtime::delete`] of a container this process has created or loaded: its
    /// state is not read again (what it says of the container's cgroups, init and hooks
    /// does not change after the create).
    pub fn delete_loaded(&self, c: super::Container, force: bool) -> Result<()> {
        match c.status() {
            Status::Stopped | Status::Created => {}
            Status::Running | Status::Paused | Status::Creating if !force => {
                return Err(c.wrong_state("delete", "needs a stopped container (or --force)"));
            }
            _ => {}
        }
        self.kill_everything(&c.state);
        codex_sys::trace::phase("rt: delete: processes gone");
        let mut st = c.state.oci_state(&c.dir);
        st["status"] = "stopped".into();
        if let Some(h) = c.state.config.hooks().as_ref() {
            // The spec: a failing poststop hook is a warning; the other hooks still
            // run and deletion goes on.
            for e in hooks::run_all(HookKind::Poststop, h, &st) {
                self.warn(&e.to_string());
            }
        }
        c.state.cgroups.remove()?;
        codex_sys::trace::phase("rt: delete: cgroups removed");
        std::fs::remove_dir_all(&c.dir).ctx(|| format!("removing {}", c.dir.display()))?;
        codex_sys::trace::phase("rt: delete: state removed");
        Ok(())
    }

    /// For `delete --force` of an id with no state (runc's answer is success: containerd's
    /// shim runs it after every exit, on a container that is usually gone already). The
    /// library's `delete` still says `NotFound`, which the engine acts on.
    ///
    /// The directory of a create killed before it wrote its state holds nothing: removed
    /// when empty (an aborted create), left alone otherwise: the first file a create puts
    /// there is its state (through a temp file renamed into place), so a directory with
    /// files and no state is a create in progress, not ours to remove.
    pub fn remove_stateless_dir(&self, id: &str) -> Result<()> {
        let dir = self.container_dir(id)?;
        match std::fs::remove_dir(&dir) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTEMPTY | libc::EEXIST)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e).ctx(|| format!("removing {}", dir.display())),
        }
    }

    /// For `delete --force` of a container whose state.json is no record
    /// ([`Error::CorruptState`]): removes its directory. A record is replaced whole by a
    /// rename, so it is cut short only by a host crash that came before its data reached
    /// the disk (a foreground `run`'s and a create's record are written unsynced), and
    /// the container's processes and cgroups died with that host. The record is read
    /// again first: one that reads whole now is deleted as any other, never removed
    /// blind.
    pub fn remove_unreadable(&self, id: &str) -> Result<()> {
        match self.load(id) {
            Err(Error::CorruptState { .. }) => {}
            Ok(c) => return self.delete_loaded(c, true),
            Err(e) => return Err(e),
        }
        let dir = self.container_dir(id)?;
        match std::fs::remove_dir_all(&dir) {
            // A concurrent delete got there first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.ctx(|| format!("removing {}", dir.display())),
        }
    }

    /// SIGKILL to every process (thawing a frozen cgroup first), then waits until the
    /// cgroup is empty and the init is gone.
    fn kill_everything(&self, state: &crate::state::ContainerState) {
        for d in &state.cgroups.dirs {
            if d.has("freezer") {
                let _ = std::fs::write(d.path.join("freezer.state"), "THAWED");
            } else if d.is_v2() {
                let _ = std::fs::write(d.path.join("cgroup.freeze"), "0");
            }
        }
        // The init may not be in the cgroup (a crashed create): signal it by pidfd.
        if let Some(fd) = super::kill::init_pidfd(state) {
            let _ = crate::sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut delay = Duration::from_micros(200);
        loop {
            let _ = state.cgroups.signal_all(libc::SIGKILL);
            let pids = state.cgroups.pids();
            // The init may be our child (foreground run) and a zombie: reap it if so.
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(state.pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            if (pids.is_empty() && !state.init_alive()) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }
}
