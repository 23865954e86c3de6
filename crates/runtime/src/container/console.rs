//! A foreground `run` with `process.terminal` and no `--console-socket`: the runtime
//! itself receives the pty master and connects it to its own stdin and stdout (in raw
//! mode when stdin is a terminal), like `runc run` does.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};

use crate::error::{Context, Error, Result};

pub(super) struct ConsoleProxy {
    master: OwnedFd,
    saved: Option<Termios>,
    stdin_open: bool,
    /// Input read from stdin that the pty has not taken yet (it is non-blocking and
    /// its buffer is small): kept until the master is writable again.
    pending: Vec<u8>,
}

/// Receives the pty master the container's init sends over `sock`.
pub fn receive_master(sock: BorrowedFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ctx(|| "receiving the pty master")?;
    for c in msg.cmsgs().ctx(|| "reading the pty master message")? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: SCM_RIGHTS gave this process a new fd that nothing else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(Error::Container("the container sent no pty master".into()))
}

impl ConsoleProxy {
    pub fn new(master: OwnedFd) -> ConsoleProxy {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        // Non-blocking: a spurious wakeup must never park the runtime in read().
        let flags = nix::fcntl::fcntl(master.as_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap_or(0);
        let nonblock = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        let _ = nix::fcntl::fcntl(master.as_fd(), nix::fcntl::FcntlArg::F_SETFL(nonblock));
        let proxy = ConsoleProxy {
            master,
            saved,
            stdin_open: true,
            pending: Vec::new(),
        };
        proxy.resize();
        proxy
    }

    /// Copies the size of the caller's terminal to the container's.
    pub fn resize(&self) {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ/TIOCSWINSZ read and write a winsize through valid pointers.
        unsafe {
            if libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 {
                libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
            }
        }
    }

    /// Connects only the output (`exec -t` without `-i`): stdin is never read.
    pub fn without_input(mut self) -> ConsoleProxy {
        self.stdin_open = false;
        self
    }

    pub fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// Whether stdin should be read now (open, and the last input has been delivered).
    pub fn wants_input(&self) -> bool {
        self.stdin_open && self.pending.is_empty()
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// stdin -> master. On EOF, stops reading stdin.
    pub fn pump_stdin(&mut self) {
        let mut buf = [0u8; 4096];
        match nix::unistd::read(std::io::stdin().as_fd(), &mut buf) {
            Ok(0) | Err(_) => self.stdin_open = false,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                self.flush_pending();
            }
        }
    }

    /// Writes as much pending input as the pty takes now.
    pub fn flush_pending(&mut self) {
        while !self.pending.is_empty() {
            match nix::unistd::write(self.master.as_fd(), &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return,
                // The container side is gone: the input has nowhere to go.
                Err(_) => {
                    self.pending.clear();
                    self.stdin_open = false;
                    return;
                }
            }
        }
    }

    /// master -> stdout. Returns false when the pty has no writer left.
    pub fn pump_output(&self) -> bool {
        let mut buf = [0u8; 4096];
        match nix::unistd::read(self.master.as_fd(), &mut buf) {
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => true,
            Ok(0) | Err(_) => false,
            Ok(n) => {
                write_all(std::io::stdout().as_fd(), &buf[..n]);
                true
            }
        }
    }

    /// Everything still buffered in the pty after the process exited.
    pub fn drain(&self) {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = nix::unistd::read(self.master.as_fd(), &mut buf) {
            write_all(std::io::stdout().as_fd(), &buf[..n]);
        }
    }
}

fn write_all(fd: BorrowedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

impl Drop for ConsoleProxy {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}
