//! `process.terminal`: a PTY from the container's own devpts, its slave as the
//! process's controlling terminal and /dev/console, its master handed to the caller
//! over `--console-socket` with SCM_RIGHTS (the protocol runc established).

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::error::{Context, Error, Result};
use crate::rootfs::resolve;
use crate::sys;

const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub number: u32,
}

/// Opens a new PTY pair from the devpts mounted at `<root>/dev/pts`.
///
/// Nothing is opened for I/O before it is checked: the image decides what sits at
/// /dev/pts/ptmx when no devpts is mounted there, and a read-write open of a FIFO wakes
/// its writer, of a device acts on the device (a watchdog arms). So /dev/pts must be a
/// devpts directory and its `ptmx` the 5:2 node on that same devpts, which nothing can
/// replace between the check and the open (devpts has no rename or create, and
/// RESOLVE_NO_XDEV refuses a mount over the entry).
pub fn open_pty(root: BorrowedFd) -> Result<Pty> {
    let pts = resolve::open(
        root,
        Path::new("/dev/pts"),
        libc::O_PATH | libc::O_DIRECTORY,
    )
    .ctx(|| "opening /dev/pts in the container (is devpts mounted at /dev/pts?)")?;
    let st = nix::sys::statfs::fstatfs(pts.as_fd()).ctx(|| "checking /dev/pts")?;
    if st.filesystem_type().0 as i64 != DEVPTS_SUPER_MAGIC {
        return Err(Error::Other(
            "/dev/pts in the container is not a devpts filesystem (process.terminal needs one)"
                .into(),
        ));
    }
    let open_ptmx = |flags| {
        sys::openat2(
            pts.as_fd(),
            Path::new("ptmx"),
            flags,
            0,
            libc::RESOLVE_BENEATH
                | libc::RESOLVE_NO_SYMLINKS
                | libc::RESOLVE_NO_MAGICLINKS
                | libc::RESOLVE_NO_XDEV,
        )
    };
    let node = open_ptmx(libc::O_PATH).ctx(|| "opening /dev/pts/ptmx")?;
    let meta = nix::sys::stat::fstat(&node).ctx(|| "checking /dev/pts/ptmx")?;
    let is_chr = meta.st_mode & libc::S_IFMT == libc::S_IFCHR;
    if !is_chr || meta.st_rdev != nix::sys::stat::makedev(5, 2) {
        return Err(Error::Other(
            "/dev/pts/ptmx in the container is not the ptmx device (5:2)".into(),
        ));
    }
    let master = open_ptmx(libc::O_RDWR | libc::O_NOCTTY).ctx(|| "opening /dev/pts/ptmx")?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int from a valid pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "unlocking the pty");
    }
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int to a valid pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) } < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "reading the pty number");
    }
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "opening the pty slave");
    }
    Ok(Pty {
        master,
        // SAFETY: the ioctl returned a new fd that nothing else owns.
        slave: unsafe { OwnedFd::from_raw_fd(slave) },
        number,
    })
}

pub fn set_size(pty: &Pty, height: u64, width: u64) -> Result<()> {
    let ws = libc::winsize {
        ws_row: height as u16,
        ws_col: width as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    if unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "setting the console size");
    }
    Ok(())
}

/// Binds the slave over `<root>/dev/console`. Whatever the image put at that name (a
/// symlink into /proc, say) is replaced by a fresh regular file first, so the bind
/// lands on the container's /dev and nowhere else.
pub fn bind_console(root: BorrowedFd, pty: &Pty) -> Result<()> {
    let dev = resolve::mkdir_all(root, Path::new("/dev"), 0o755).ctx(|| "creating /dev")?;
    let dev = sys::openat2(dev.as_fd(), Path::new("."), libc::O_DIRECTORY, 0, 0)
        .ctx(|| "opening /dev")?;
    match nix::unistd::unlinkat(
        dev.as_fd(),
        "console",
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    ) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e).ctx(|| "replacing /dev/console"),
    }
    let target = sys::openat2(
        dev.as_fd(),
        Path::new("console"),
        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
        0o600,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    )
    .ctx(|| "creating /dev/console")?;
    let tree = sys::clone_tree(pty.slave.as_fd(), false).ctx(|| "cloning the pty slave")?;
    sys::move_mount_to_fd(tree.as_fd(), target.as_fd()).ctx(|| "binding the pty over /dev/console")
}

pub use crate::container::console::receive_master;

/// Sends the master to the console socket (data: the slave's path, fd: the master).
pub fn send_master(socket: BorrowedFd, pty: &Pty) -> Result<()> {
    let name = format!("/dev/pts/{}", pty.number);
    let fds = [pty.master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .ctx(|| "sending the pty master to the console socket")?;
    Ok(())
}

/// Makes the slave the calling process's controlling terminal and stdio.
pub fn make_controlling(slave: BorrowedFd) -> Result<()> {
    // SAFETY: TIOCSCTTY with an integer argument on a valid fd.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(std::io::Error::last_os_error())
            .ctx(|| "making the pty the controlling terminal");
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard fds, which the process owns.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| "connecting stdio to the pty");
        }
    }
    Ok(())
}
