//! Foreground `run` and `exec`: the runtime stays, forwards signals to the container
//! process and exits with its status. Signals (and SIGCHLD) are blocked *before* the
//! process is forked, so neither an early exit nor an early signal can be missed.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::console::{receive_master, ConsoleProxy};
use super::create::CreateOptions;
use super::Runtime;
use crate::error::{Context, Error, Result};

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
    /// (128+N when killed by signal N). With a console, also connects it to stdio.
    pub fn wait_forwarding(&self, pid: i32, mut console: Option<&mut ConsoleProxy>) -> Result<i32> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut output_open = true;
        loop {
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(finish(console, code)),
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    return Ok(finish(console, 128 + sig as i32))
                }
                Ok(_) => {}
                Err(nix::errno::Errno::ECHILD) => {
                    return Err(Error::Other(format!(
                        "process {pid} is not a child of the runtime"
                    )));
                }
                Err(e) => return Err(e).ctx(|| format!("waiting for {pid}")),
            }
            let stdin = std::io::stdin();
            let (sig_ready, master_events, in_ready) = {
                let mut fds = vec![PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
                let (mut master_at, mut stdin_at) = (None, None);
                if let Some(c) = console.as_deref() {
                    let mut want = PollFlags::empty();
                    if output_open {
                        want |= PollFlags::POLLIN;
                    }
                    if c.has_pending() {
                        want |= PollFlags::POLLOUT;
                    }
                    if !want.is_empty() {
                        master_at = Some(fds.len());
                        fds.push(PollFd::new(c.master(), want));
                    }
                    if c.wants_input() {
                        stdin_at = Some(fds.len());
                        fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                    }
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e).ctx(|| "waiting for the container"),
                }
                let events = |i: Option<usize>| {
                    i.and_then(|i| fds[i].revents())
                        .unwrap_or(PollFlags::empty())
                };
                (
                    !events(Some(0)).is_empty(),
                    events(master_at),
                    !events(stdin_at).is_empty(),
                )
            };
            if let Some(c) = console.as_deref_mut() {
                if master_events.contains(PollFlags::POLLOUT) {
                    c.flush_pending();
                }
                let readable = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
                if output_open && master_events.intersects(readable) && !c.pump_output() {
                    output_open = false;
                }
                if in_ready {
                    c.pump_stdin();
                }
            }
            if !sig_ready {
                continue;
            }
            let info = match self.fd.read_signal() {
                Ok(Some(i)) => i,
                Ok(None) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "reading signals"),
            };
            let sig = info.ssi_signo as i32;
            if sig == libc::SIGWINCH {
                if let Some(c) = console.as_deref() {
                    c.resize();
                    continue;
                }
            }
            if sig != libc::SIGCHLD && sig != libc::SIGURG && sig != libc::SIGPIPE {
                // SAFETY: kill with integer arguments.
                unsafe { libc::kill(pid, sig) };
            }
        }
    }
}

fn finish(console: Option<&mut ConsoleProxy>, code: i32) -> i32 {
    if let Some(c) = console {
        c.drain();
    }
    code
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
        let bundle = crate::spec::Bundle::load(&opts.bundle)?;
        // A terminal without --console-socket: the runtime is the console itself.
        let wants_tty = opts.console_socket.is_none()
            && bundle
                .spec
                .process()
                .as_ref()
                .and_then(|p| p.terminal())
                .unwrap_or(false);
        let (ours, theirs) = if wants_tty {
            let (a, b) = std::os::unix::net::UnixStream::pair().ctx(|| "console socketpair")?;
            (Some(OwnedFd::from(a)), Some(OwnedFd::from(b)))
        } else {
            (None, None)
        };
        let created = self.create_inner(id, opts, bundle, Some("run"), theirs)?;
        let c = &created.container;
        let mut console = match &ours {
            Some(sock) => match receive_master(sock.as_fd()) {
                Ok(m) => Some(ConsoleProxy::new(m)),
                Err(e) => {
                    let _ = self.delete(id, true);
                    return Err(e);
                }
            },
            None => None,
        };
        // The record is not synced: this run deletes its container when the program
        // ends (crun and runc sync none either). A host crash kills the container with
        // it and may leave the record cut short, which `delete --force` removes
        // (`Runtime::remove_unreadable`). Its fsync was 1-3 ms of a `run` on a
        // disk-backed root, on the command's path when the program is quick.
        let started = super::attached::start_over_channel(self, &created, false);
        let result = started.and_then(|()| {
            codex_sys::trace::phase("rt: started");
            self.poststart(&c.state, &c.dir);
            signals.wait_forwarding(c.state.pid, console.as_mut())
        });
        codex_sys::trace::phase("rt: exited");
        drop(console);
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
