//! Talking to another network namespace: a netlink socket belongs to the namespace it
//! was opened in, so the calling thread enters the target just long enough to open one.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::socket::Netlink;

/// A network namespace, the way the engine knows it.
#[derive(Clone, Copy, Debug)]
pub enum Netns<'a> {
    /// The namespace of this process (`/proc/PID/ns/net`), opened once per call so a
    /// recycled pid is seen at most at the call's start.
    Pid(i32),
    /// An fd on an nsfs file (`/proc/PID/ns/net` or a bind mount of one).
    Fd(BorrowedFd<'a>),
    /// A path to an nsfs file (`/run/netns/NAME`, a bind mount, `/proc/PID/ns/net`).
    Path(&'a Path),
}

impl Netns<'_> {
    /// An fd of our own on the namespace.
    pub fn open(&self) -> Result<OwnedFd> {
        match *self {
            Netns::Pid(pid) => open_path(Path::new(&format!("/proc/{pid}/ns/net"))),
            Netns::Path(p) => open_path(p),
            Netns::Fd(fd) => fd
                .try_clone_to_owned()
                .map_err(|e| Error::kernel("duplicating the netns fd", e)),
        }
    }
}

fn open_path(p: &Path) -> Result<OwnedFd> {
    File::open(p)
        .map(OwnedFd::from)
        .map_err(|e| Error::kernel(format!("opening network namespace {}", p.display()), e))
}

/// A netlink socket inside the namespace `ns`. Only the calling thread moves, and only
/// for the socket() call: the netns is per thread, so other threads never see it.
pub fn netlink_in(ns: BorrowedFd) -> Result<Netlink> {
    let home = open_path(Path::new("/proc/thread-self/ns/net"))?;
    setns(ns, "entering the container's network namespace")?;
    let sock = Netlink::open();
    // Going back cannot fail for lack of privilege (we just entered another netns with
    // the same capability). If it ever failed, the thread would stay in the container's
    // namespace: the error says so, and the socket is not handed out.
    setns(
        home.as_fd(),
        "returning to the caller's network namespace (this thread is left in the \
         container's)",
    )?;
    sock
}

fn setns(fd: BorrowedFd, what: &str) -> Result<()> {
    // SAFETY: setns on an fd we hold; CLONE_NEWNET makes the kernel check it is a netns.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(Error::kernel(what, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A namespace's identity: the (device, inode) of its nsfs file.
pub type NsId = (u64, u64);

pub fn id_of(fd: BorrowedFd) -> Result<NsId> {
    let f = File::from(
        fd.try_clone_to_owned()
            .map_err(|e| Error::kernel("duplicating a netns fd", e))?,
    );
    let m = f
        .metadata()
        .map_err(|e| Error::kernel("reading a network namespace's identity", e))?;
    use std::os::unix::fs::MetadataExt;
    Ok((m.dev(), m.ino()))
}
