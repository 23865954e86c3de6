//! A container with a terminal (`-t`): its init gets a pty of the container's own
//! devpts, and the supervisor keeps the master. The master is the container's only
//! output (the log takes it as stdout, unterminated output written at once), and
//! `attach` writes input to it, taking a copy with `pidfd_getfd` from whichever
//! supervisor process holds it (see `crate::attach`).
//!
//! The master reaches the supervisor over a socket pair made before the worker is
//! forked: the runtime hands one end to the init, which sends the master on it; the
//! worker receives it on the other end and, when it hands the container to the shim,
//! sends it again on the first end, so that it waits on the other end for the shim
//! (which holds that end across its exec) to receive it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::error::{Context, Result};

pub(super) struct Console {
    /// Where the master arrives (from the init, then from the worker).
    ours: OwnedFd,
    /// The init's end, and the worker's to pass the master on.
    theirs: OwnedFd,
}

impl Console {
    /// A new pair, close-on-exec (the shim is handed [`Console::shim_fd`] by name).
    pub(super) fn new() -> Result<Console> {
        let (a, b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .ctx(|| "creating the console socket pair")?;
        Ok(Console { ours: a, theirs: b })
    }

    /// Creates the container, its init sending the master on this pair; the master.
    pub(super) fn create(
        &self,
        rt: &codex_runtime::Runtime,
        id: &str,
        opts: &codex_runtime::CreateOptions,
    ) -> Result<(codex_runtime::Attached, OwnedFd)> {
        let init_end = self
            .theirs
            .try_clone()
            .ctx(|| "duplicating the console socket")?;
        let container = rt.create_attached_with_console(id, opts, init_end)?;
        match codex_runtime::terminal::receive_master(self.ours.as_fd()) {
            Ok(master) => Ok((container, master)),
            Err(e) => {
                let _ = rt.delete(id, true);
                Err(e.into())
            }
        }
    }

    /// The worker passes `master` on to the shim before it hands the container over.
    pub(super) fn pass_on(&self, master: BorrowedFd) -> Result<()> {
        codex_shim::fdpass::send_fd(self.theirs.as_fd(), master)
            .ctx(|| "passing the container's terminal to the shim")
    }

    /// What the worker passed on (when the exec of the shim failed and this process
    /// does its part).
    pub(super) fn take_passed(&self) -> Result<OwnedFd> {
        codex_shim::fdpass::recv_fd(self.ours.as_fd())
            .ctx(|| "receiving the container's terminal from the worker")
    }

    /// The end the shim receives the master on.
    pub(super) fn shim_fd(&self) -> BorrowedFd<'_> {
        self.ours.as_fd()
    }

    pub(super) fn shim_raw_fd(&self) -> RawFd {
        self.ours.as_raw_fd()
    }
}
