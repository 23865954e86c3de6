//! The end of an attached container that its supervisor removes (`auto_remove`: a
//! `create --rm` started with `start -a`, or an `attach` to a `run -d --rm` one): the
//! command waits for that removal, and returns how the container ended.
//!
//! The command waits on an inotify watch of the container's directory (renamed away by
//! the removal) and a pidfd of its supervisor. It returns once the container is gone for
//! everyone (its name unlinked, under the registry lock), while the supervisor deletes
//! its files; a container whose removal frees more than its directory (network
//! addresses, published ports, anonymous volumes, all freed after the rename) is waited
//! for to its supervisor's end, so that whatever it held is free when the command
//! returns. Should the supervisor die before it has removed the container (its pidfd
//! says so while the record is still there), the command removes it, as `rm -f` would.
//! The exit code comes from the record the follow read ended, or, if the removal was
//! faster than the command's look, from the `die` event that the end wrote under the
//! lock of its record.
//!
//! An attached `run --rm` is another case ([`LogFollow::at_end`]): its supervisor
//! removes the container in the step that records its end when the removal frees
//! nothing but its directory, but deletes the files only once the command has exited,
//! so the command reads the log and the end from them; otherwise the command removes it
//! itself (docs/engine.md, "The end of an attached `run --rm`"). The containers waited
//! for here have a limit: one that ends and is removed before the command has opened its
//! log loses its output to the command (its supervisor deletes the files at once).
//! Before this wait the command failed with "not found" at such a container's end.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::config::ContainerConfig;
use crate::engine::{is_live, starting, LogFollow};
use crate::error::{Context, Error, Result};
use crate::registry::ContainerRecord;

/// Whether removing a container made with `cfg` frees more than its directory, after the
/// directory is gone: network addresses (and with them published ports and its peers'
/// hosts entries), anonymous volumes.
pub(crate) fn frees_more_than_its_directory(cfg: &ContainerConfig) -> bool {
    crate::network::mode::effective(cfg)
        .network_name()
        .is_some()
        || cfg.volumes.iter().any(|v| v.anonymous)
}

/// What [`LogFollow::at_end`] finds.
#[derive(Debug)]
pub enum AtEnd {
    /// The container is still there: its record.
    Present(Box<ContainerRecord>),
    /// It has been removed: how it ended.
    Removed(RunEnd),
}

/// How an attached `--rm` container ended, once it is removed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    /// Its exit code, if one was recorded.
    pub exit_code: Option<i32>,
    /// Why it ended as it did, if the end says (a timeout, a failed start...).
    pub error: Option<String>,
}

/// A look again after this long without a wake-up: only a safety net, every change this
/// waits for wakes it.
const RECHECK: Duration = Duration::from_secs(1);

impl LogFollow<'_> {
    /// Once [`LogFollow::poll`] said `Ended` for a container made with `auto_remove`:
    /// waits until its removal is done, and returns how it ended (see the module doc).
    pub fn await_removal(&mut self, cfg: &ContainerConfig) -> Result<RunEnd> {
        let frees_more = frees_more_than_its_directory(cfg);
        // As the follow saw it end: a removal faster than this command's next look
        // leaves nothing else to read it from but the events.
        let mut ended: Option<ContainerRecord> = self.ended.take().filter(|r| !starting(r));
        // Opened once: a supervisor that has exited may stay a zombie for a while (until
        // init reaps it), and a pidfd of it then reads as exited, not as running.
        let supervisor = self.supervisor.and_then(|p| p.open().ok().flatten());
        loop {
            let rec = match self.engine.get(&self.id) {
                Ok(r) => Some(r),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            let sup_live = supervisor.as_ref().filter(|fd| !has_exited(fd.as_fd()));
            let Some(rec) = rec else {
                if let (true, Some(pidfd)) = (frees_more, sup_live) {
                    // Gone for everyone; what it held is freed before its
                    // supervisor's end.
                    wait_readable(&[pidfd.as_fd()], RECHECK)?;
                    continue;
                }
                return Ok(self.end_of(ended));
            };
            // The first record with the exit code is kept (a dying supervisor's repair
            // may write one without it afterwards).
            let has_code = ended.as_ref().is_some_and(|e| e.exit_code.is_some());
            if !is_live(rec.status) && !starting(&rec) && !has_code {
                ended = Some(rec.clone());
            }
            let Some(pidfd) = sup_live else {
                // Nobody will remove it (its supervisor died, or none was ever seen):
                // this command does, unless it went just now.
                match self.engine.remove(&self.id, true, true) {
                    Ok(()) | Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
                return Ok(self.end_of(ended));
            };
            wait_readable(&[self.follower.wake_fd(), pidfd.as_fd()], RECHECK)?;
            self.follower.drain();
        }
    }

    /// For an attached command, once [`LogFollow::poll`] said `Ended`: the container's
    /// record, or how it ended if it is gone: an attached `run --rm`'s supervisor
    /// removes it with its end when it frees nothing but its directory
    /// (`supervisor::finish`), and its removed record stays until that command has
    /// exited.
    pub fn at_end(&mut self) -> Result<AtEnd> {
        match self.engine.get(&self.id) {
            Ok(rec) => return Ok(AtEnd::Present(Box::new(rec))),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let ended = match self.ended.take().filter(|r| r.exit_code.is_some()) {
            Some(rec) => Some(rec),
            // Deleted already (by a full reconcile of another command's), or removed
            // by someone else: the events say.
            None => self
                .engine
                .registry()
                .retired_record(&self.id)
                .ok()
                .flatten(),
        };
        Ok(AtEnd::Removed(
            self.end_of(ended.filter(|r| !is_live(r.status))),
        ))
    }

    /// The end as recorded: the record read ended, or the `die` event of the end.
    fn end_of(&self, ended: Option<ContainerRecord>) -> RunEnd {
        if let Some(rec) = ended.filter(|r| r.exit_code.is_some()) {
            return RunEnd {
                exit_code: rec.exit_code,
                error: rec.error,
            };
        }
        let exit_code = crate::events::newest_about(self.engine.root(), &self.id, "die")
            .and_then(|e| e.attributes.get("exit_code").and_then(|c| c.parse().ok()));
        RunEnd {
            exit_code,
            error: None,
        }
    }
}

/// Whether the process of `pidfd` has exited (its pidfd reads as readable).
fn has_exited(pidfd: std::os::fd::BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// Sleeps until one of `fds` is readable, or `timeout` passes.
fn wait_readable(fds: &[std::os::fd::BorrowedFd<'_>], timeout: Duration) -> Result<()> {
    let mut polled: Vec<PollFd> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let t = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    match poll(&mut polled, t) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(e).ctx(|| "waiting for the container's removal"),
    }
}
