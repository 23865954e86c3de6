//! Foreground `run` and `exec`: the runtime stays, forwards signals to the container
//! process and exits with its status. Signals (and SIGCHLD) are blocked *before* the
//! process is forked, so neither an early exit nor an early signal can be missed.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::create::CreateOptions;
use super::Runtime;
use crate::error::{Context, Error, Result};
use crate::process::sync::Msg;

/// Signals blocked (and then read from a signalfd) while a container runs in front.
pub(super) struct SignalGuard {
    old: SigSet,
    fd: SignalFd,
}

impl SignalGuard {
    pub fn block() -> Result<SignalGuard> {
        let mut set = SigSet::empty();
        for sig in Signal::iterator() {
            if !matches!(
                sig,
                Signal::SIGKILL
                    | Signal::SIGSTOP
                    | Signal::SIGSEGV
                    | Signal::SIGBUS
                    | Signal::SIGILL
                    | Signal::SIGFPE
            ) {
                set.add(sig);
            }
        }
        let mut old = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .ctx(|| "blocking signals")?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).ctx(|| "creating a signalfd")?;
        Ok(SignalGuard { old, fd })
    }

    /// Forwards signals to `pid` until it exits; returns its shell-style exit code
    /// (128+N when killed by signal N).
    pub fn wait_forwarding(&self, pid: i32) -> Result<i32> {
        loop {
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) => {}
                Err(nix::errno::Errno::ECHILD) => {
                    return Err(Error::Other(format!(
                        "process {pid} is not a child of the runtime"
                    )));
                }
                Err(e) => return Err(e).ctx(|| format!("waiting for {pid}")),
            }
            let info = match self.fd.read_signal() {
                Ok(Some(i)) => i,
                Ok(None) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "reading signals"),
            };
            let sig = info.ssi_signo as i32;
            if sig != libc::SIGCHLD && sig != libc::SIGURG && sig != libc::SIGPIPE {
                // SAFETY: kill with integer arguments.
                unsafe { libc::kill(pid, sig) };
            }
        }
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}

impl Runtime {
    /// `run` without `-d`: create, start, wait (forwarding signals), delete. Returns
    /// the container's exit code.
    pub fn run(&self, id: &str, opts: &CreateOptions) -> Result<i32> {
        let signals = SignalGuard::block()?;
        let created = self.create_inner(id, opts, true)?;
        let c = &created.container;
        let started = created
            .channel
            .send(&Msg::Start)
            .ctx(|| "starting the container")
            .and_then(|()| match created.channel.recv() {
                Ok(None) => Ok(()),
                Ok(Some(Msg::Error(e))) => Err(Error::Container(e)),
                Ok(Some(m)) => Err(Error::Other(format!(
                    "unexpected message from the container: {m:?}"
                ))),
                Err(e) => Err(e).ctx(|| "waiting for the container to start"),
            });
        let result = started.and_then(|()| {
            self.poststart(&c.state, &c.dir);
            signals.wait_forwarding(c.state.pid)
        });
        let deleted = self.delete(id, true);
        drop(signals);
        let code = result?;
        deleted?;
        Ok(code)
    }

    /// `run -d`: create and start; the container outlives the command.
    pub fn run_detached(&self, id: &str, opts: &CreateOptions) -> Result<()> {
        self.create(id, opts)?;
        if let Err(e) = self.start(id) {
            let _ = self.delete(id, true);
            return Err(e);
        }
        Ok(())
    }
}
