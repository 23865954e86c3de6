//! The protocol between the runtime and the processes it forks: small JSON messages
//! over a `SOCK_SEQPACKET` socketpair, one message per packet. Every synchronisation
//! point has a name here.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{BorrowedFd, FromRawFd, RawFd};

use nix::sys::socket::{
    recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    /// Runtime -> container process: you are in the container's cgroups.
    Placed,
    /// First child -> runtime: I made a user namespace, write my id maps.
    UsernsReady,
    /// Runtime -> first child: the maps are written.
    MapsWritten,
    /// First child -> runtime: the container process has this (host) pid.
    InitPid(i32),
    /// Init -> runtime: namespaces and mounts exist; run prestart/createRuntime hooks.
    RuntimeHooks,
    /// Runtime -> init: hooks ran.
    HooksDone,
    /// Init -> runtime: everything is set up; waiting for start.
    Created,
    /// Runtime -> init: the container is recorded; it now outlives the runtime.
    Committed,
    /// Runtime -> init (foreground `run` only): start the program now.
    Start,
    /// Either side: the operation failed, with the whole error chain.
    Error(String),
    /// Init -> runtime: the seccomp notify fd of the filter just loaded rides along
    /// (SCM_RIGHTS); the runtime hands it to `linux.seccomp.listenerPath`.
    SeccompNotifyFd,
    /// Runtime -> exec'd process: the notify fd reached the listener; exec now.
    SeccompForwarded,
    /// Init -> runtime: the program could not be run (see [`crate::Error::Exec`]).
    ExecFailed { code: i32, message: String },
    /// Exec trampoline -> runtime: the program's exec failed with this errno. Sent as
    /// the trampoline's own packet (see [`crate::trampoline`]), never as JSON.
    ProgramExecFailed(i32),
}

impl Msg {
    /// The message that reports `err` to the other side.
    pub fn failure(err: &crate::Error) -> Msg {
        match err {
            crate::Error::Exec { code, message } => Msg::ExecFailed {
                code: *code,
                message: message.clone(),
            },
            e => Msg::Error(e.to_string()),
        }
    }

    /// The error a failure message stands for (`None` for other messages).
    pub fn into_error(self) -> Option<crate::Error> {
        match self {
            Msg::Error(e) => Some(crate::Error::Container(e)),
            Msg::ExecFailed { code, message } => Some(crate::Error::Exec { code, message }),
            _ => None,
        }
    }
}

/// One end of the socketpair.
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    /// A listening `SOCK_SEQPACKET` unix socket at `path`, so that a connection speaks
    /// the same packet protocol as the socketpair.
    pub fn listen(path: &std::path::Path) -> io::Result<OwnedFd> {
        use nix::sys::socket::{bind, listen, socket, Backlog, UnixAddr};
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
        listen(&fd, Backlog::new(4).map_err(io::Error::from)?)?;
        Ok(fd)
    }

    pub fn connect(path: &std::path::Path) -> io::Result<Channel> {
        use nix::sys::socket::{connect, socket, UnixAddr};
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
        Ok(Channel { fd })
    }

    /// The bytes [`Channel::send_encoded_with_fd`] sends for `msg`.
    pub fn encode(msg: &Msg) -> io::Result<Vec<u8>> {
        serde_json::to_vec(msg).map_err(io::Error::other)
    }

    pub fn send(&self, msg: &Msg) -> io::Result<()> {
        let data = Self::encode(msg)?;
        loop {
            match send(self.fd.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends an already encoded message with `fd` attached (SCM_RIGHTS). The caller
    /// encodes first so that this path serialises nothing (see `seccomp::Filter::load`).
    pub fn send_encoded_with_fd(&self, data: &[u8], fd: BorrowedFd) -> io::Result<()> {
        let fds = [fd.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let iov = [IoSlice::new(data)];
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                &cmsg,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next message, or `None` when the other side closed (or exec'd: the
    /// socket is close-on-exec, so EOF after `Start` means the program is running).
    /// A file descriptor attached to any other message than the one that carries one
    /// is closed here.
    pub fn recv(&self) -> io::Result<Option<Msg>> {
        Ok(self.recv_with_fd()?.map(|(m, _)| m))
    }

    /// [`Channel::recv`], keeping the file descriptor a message carries (at most one).
    pub fn recv_with_fd(&self) -> io::Result<Option<(Msg, Option<OwnedFd>)>> {
        let mut reset = false;
        // The next packet's length first (MSG_PEEK | MSG_TRUNC answer the whole length
        // of a SOCK_SEQPACKET packet and take nothing, fds included), then a buffer of
        // that size: a 64 KiB zeroed buffer per message was 16 pages written, each a
        // copy-on-write fault in a process that had just forked.
        let len = loop {
            match nix::sys::socket::recv(
                self.fd.as_raw_fd(),
                &mut [],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Ok(len) => break len,
                Err(nix::errno::Errno::EINTR) => continue,
                // As below: reported once, what the peer sent before exiting follows.
                Err(nix::errno::Errno::ECONNRESET) if !reset => reset = true,
                Err(e) => return Err(e.into()),
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; len];
        let (n, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!([RawFd; 1]);
            let res = recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            );
            match res {
                Ok(msg) => {
                    let mut fd = None;
                    for c in msg.cmsgs().map_err(io::Error::from)? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for raw in fds {
                                // SAFETY: SCM_RIGHTS gave this process a new fd that
                                // nothing else owns; extra ones are closed on drop.
                                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                                fd.get_or_insert(owned);
                            }
                        }
                    }
                    break (msg.bytes, fd);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                // The peer exited with a message of ours unread (it failed before it
                // waited for it). The error is reported once; what the peer sent
                // before exiting (its Error) is still queued behind it.
                Err(nix::errno::Errno::ECONNRESET) if !reset => reset = true,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        if let Some(errno) = crate::trampoline::failure_errno(&buf[..n]) {
            return Ok(Some((Msg::ProgramExecFailed(errno), fd)));
        }
        let msg = serde_json::from_slice(&buf[..n]).map_err(io::Error::other)?;
        Ok(Some((msg, fd)))
    }

    /// Waits for `want`; an `Error` message or EOF becomes an error.
    pub fn wait_for(&self, want: &Msg, what: &str) -> Result<(), String> {
        match self.recv() {
            Ok(Some(m)) if &m == want => Ok(()),
            Ok(Some(Msg::Error(e))) => Err(e),
            Ok(Some(Msg::ExecFailed { message, .. })) => Err(message),
            Ok(Some(m)) => Err(format!("{what}: unexpected message {m:?}")),
            Ok(None) => Err(format!("{what}: the other side exited")),
            Err(e) => Err(format!("{what}: {e}")),
        }
    }
}

impl std::os::fd::AsFd for Channel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn messages_arrive_whole_in_order_then_eof() {
        let (a, b) = Channel::pair().unwrap();
        // Larger than the 64 KiB buffer a receive used to allocate.
        let long = "x".repeat(100_000);
        a.send(&Msg::Placed).unwrap();
        a.send(&Msg::Error(long.clone())).unwrap();
        a.send(&Msg::InitPid(42)).unwrap();
        drop(a);
        assert_eq!(b.recv().unwrap(), Some(Msg::Placed));
        assert_eq!(b.recv().unwrap(), Some(Msg::Error(long)));
        assert_eq!(b.recv().unwrap(), Some(Msg::InitPid(42)));
        assert_eq!(b.recv().unwrap(), None);
    }

    #[test]
    fn an_attached_fd_arrives_with_its_message_and_only_once() {
        let (a, b) = Channel::pair().unwrap();
        let (mut r, mut w) = std::io::pipe().unwrap();
        let data = Channel::encode(&Msg::SeccompNotifyFd).unwrap();
        a.send_encoded_with_fd(&data, std::os::fd::AsFd::as_fd(&w))
            .unwrap();
        a.send(&Msg::Created).unwrap();
        let (msg, fd) = b.recv_with_fd().unwrap().unwrap();
        assert_eq!(msg, Msg::SeccompNotifyFd);
        let mut sent = std::fs::File::from(fd.expect("the fd rides along"));
        sent.write_all(b"ok").unwrap();
        drop(sent);
        w.flush().unwrap();
        drop(w);
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "ok");
        let (msg, fd) = b.recv_with_fd().unwrap().unwrap();
        assert_eq!(msg, Msg::Created);
        assert!(fd.is_none(), "no fd installed twice");
    }
}
