//! pidfds, and a process identity that survives pid reuse.
//!
//! A pid read from a file may name another process by the time it is used: the one it
//! named has exited and the number was handed out again. [`ProcessId`] pairs the pid with
//! the process's start time (field 22 of `/proc/PID/stat`, clock ticks since boot), and
//! [`ProcessId::open`] returns a pidfd only when the process behind the pid still has that
//! start time, checked *after* the pidfd pins it, so a signal sent through that pidfd can
//! only reach the process that was recorded.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::check;

/// `pidfd_open(2)`.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: the kernel returned a new fd that nothing else owns.
    check(ret).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `sig` through a pidfd, so a recycled pid can never be hit.
pub fn pidfd_send_signal(pidfd: BorrowedFd, sig: i32) -> io::Result<()> {
    // SAFETY: plain fd and integer arguments, null siginfo is allowed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check(ret).map(|_| ())
}

/// `pidfd_getfd(2)`: a copy, in this process and close-on-exec, of the other
/// process's fd `target` (needs ptrace access to it: root, here).
pub fn pidfd_getfd(pidfd: BorrowedFd, target: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain fd and integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    // SAFETY: the kernel returned a new fd that nothing else owns.
    check(ret).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A process as (pid, start time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: i32,
    /// Clock ticks after boot at which it started (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

impl ProcessId {
    /// The identity of the live process `pid`; `NotFound` if there is none.
    pub fn of(pid: i32) -> io::Result<ProcessId> {
        Ok(ProcessId {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// A pidfd of this very process, or `None` when it has exited (whether or not its pid
    /// has been reused).
    pub fn open(&self) -> io::Result<Option<OwnedFd>> {
        if self.pid <= 0 {
            return Ok(None);
        }
        let fd = match pidfd_open(self.pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
            Err(e) => return Err(e),
        };
        // The pidfd now pins whatever process holds the pid: if its start time is the
        // recorded one, it is the recorded process, and stays so for the fd's life.
        match start_time(self.pid) {
            Ok(t) if t == self.start_time => Ok(Some(fd)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Is this very process alive (a zombie counts as alive until reaped)?
    pub fn is_alive(&self) -> bool {
        start_time(self.pid).is_ok_and(|t| t == self.start_time)
    }

    /// Is this very process alive and not a zombie (it can still do its work)?
    pub fn is_running(&self) -> bool {
        stat(self.pid).is_ok_and(|(state, t)| t == self.start_time && !matches!(state, 'Z' | 'X'))
    }
}

/// Field 22 of `/proc/PID/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn start_time(pid: i32) -> io::Result<u64> {
    stat(pid).map(|(_, t)| t)
}

/// The text of `/proc/PID/stat`. The kernel formats the whole line on every read, and
/// its size shows as 0, so `fs::read` would read it six times in growing pieces: one
/// buffer that holds any stat line takes one read (and one more that sees the end).
pub fn read_proc_stat(pid: i32) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut text = Vec::with_capacity(1024);
    // `take`: a plain read loop, without the size and position queries of
    // `File::read_to_end` (a proc file has no size to ask); `ps` reads one per container.
    std::fs::File::open(format!("/proc/{pid}/stat"))?
        .take(u64::MAX)
        .read_to_end(&mut text)?;
    Ok(text)
}

/// (state, start time) of `/proc/PID/stat`.
fn stat(pid: i32) -> io::Result<(char, u64)> {
    let text = read_proc_stat(pid)?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat has no state or start time"),
        )
    })
}

fn parse_stat(stat: &[u8]) -> Option<(char, u64)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // After ") " come field 3 (state) onward: field 22 is the 20th of them.
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_read_after_a_hostile_command_name() {
        let stat = b"42 (a) b) c 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        // fields after ")": c=3 1=4 ... 18=21, 777=22
        assert_eq!(parse_stat(stat), Some(('c', 777)));
        assert_eq!(parse_stat(b"1 (x) S 0"), None);
    }

    #[test]
    fn own_identity_opens_and_a_wrong_start_time_does_not() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive() && me.is_running());
        assert!(me.open().unwrap().is_some());
        let forged = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!forged.is_alive());
        assert!(forged.open().unwrap().is_none());
    }

    fn wait_until_zombie(pid: i32) -> bool {
        (0..2000).any(|_| {
            let z = stat(pid).is_ok_and(|(s, _)| s == 'Z');
            if !z {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            z
        })
    }

    #[test]
    fn an_exited_process_opens_to_none() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessId::of(child.id() as i32).unwrap();
        // Exited, not reaped: alive as a zombie, no longer running.
        assert!(wait_until_zombie(id.pid));
        assert!(id.is_alive() && !id.is_running());
        child.wait().unwrap();
        assert!(!id.is_alive());
        assert!(id.open().unwrap().is_none());
    }
}
