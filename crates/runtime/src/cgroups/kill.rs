//! Signalling every process of a container (`kill --all`, `delete --force`).
//!
//! A pid list read from `cgroup.procs` goes stale while it is used: a process forked
//! after the read is missed, and a listed process may exit and its pid be reused by a
//! process outside the container. So SIGKILL goes through `cgroup.kill` where the kernel
//! has it (one write, and forks racing it die too); otherwise the cgroup is frozen (no
//! fork, no exit while we signal), and each pid is signalled through a pidfd that is
//! kept only if the pid was still in the cgroup after the pidfd was opened.

use std::collections::HashSet;
use std::os::fd::{AsFd, OwnedFd};

use super::Cgroups;
use crate::error::{Context, Result};

impl Cgroups {
    /// Sends `sig` to every process in the container's cgroups.
    pub fn signal_all(&self, sig: i32) -> Result<()> {
        if sig == libc::SIGKILL {
            if let Some(d) = self.dirs.iter().find(|d| d.is_v2()) {
                // Absent (kernels before 5.14) or refused (a threaded cgroup says
                // EOPNOTSUPP): the slower way below. Never created: no O_CREAT.
                let killed = std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.path.join("cgroup.kill"))
                    .and_then(|mut f| std::io::Write::write_all(&mut f, b"1"));
                if killed.is_ok() {
                    return Ok(());
                }
            }
        }
        // An empty cgroup cannot fill up by forking: only a write to cgroup.procs adds
        // a process, which freezing does not stop either. Nothing to freeze or signal
        // (the usual case at `delete`: four freezer writes and reads saved).
        if self.pids().is_empty() {
            return Ok(());
        }
        // A paused container stays paused; the signals arrive when it is resumed.
        let thaw = !self.is_frozen();
        if thaw {
            // Without a freezer (no v1 freezer, no v2 hierarchy) the pidfd check still
            // keeps the signal inside the container; only racing forks can be missed.
            let _ = self.freeze();
        }
        let sent = self.signal_listed(sig);
        if thaw {
            let _ = self.thaw();
        }
        sent
    }

    fn is_frozen(&self) -> bool {
        if let Some(d) = self.dirs.iter().find(|d| d.has("freezer")) {
            return std::fs::read_to_string(d.path.join("freezer.state"))
                .is_ok_and(|s| s.trim() == "FROZEN");
        }
        self.dirs.iter().find(|d| d.is_v2()).is_some_and(|d| {
            std::fs::read_to_string(d.path.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        })
    }

    /// One pass over `cgroup.procs`: pidfds first, then a second read that proves each
    /// pidfd's process was (while alive) in the cgroup, then the signals.
    fn signal_listed(&self, sig: i32) -> Result<()> {
        let opened: Vec<(i32, OwnedFd)> = self
            .pids()
            .into_iter()
            .filter_map(|pid| crate::sys::pidfd_open(pid).ok().map(|fd| (pid, fd)))
            .collect();
        // A pidfd's process that is alive now holds its pid, so a pid still listed is
        // that process; one that died meanwhile makes the signal fail with ESRCH.
        let members: HashSet<i32> = self.pids().into_iter().collect();
        for (pid, fd) in opened.iter().filter(|(pid, _)| members.contains(pid)) {
            match crate::sys::pidfd_send_signal(fd.as_fd(), sig) {
                Err(e) if e.raw_os_error() != Some(libc::ESRCH) => {
                    return Err(e).ctx(|| format!("sending signal {sig} to {pid}"));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
