//! Closing a file whose last close waits on the kernel, off the caller's path.
//!
//! The last close of an inotify instance that had watches waits until the kernel has
//! freed them, an SRCU grace period of fsnotify's: 5-18 ms measured here, whether the
//! close is explicit or the one at exit, while the caller does nothing. A command about
//! to end (an attached `run` whose container has ended) hands such a file to a child
//! that makes the last close, and ends without that wait. Nothing depends on the close
//! being over: the watches are inert once their instance is closed by anyone.

use std::os::fd::{AsRawFd, OwnedFd};

/// Closes `fd` for this process now and lets a forked child make the last close; returns
/// the child's pid. If no child can be made, `fd` is closed here, waiting as a plain
/// close would, and `None` is returned.
///
/// The child is not waited for: it is reaped with the rest when this process exits, so
/// this is for a process that ends soon after (a CLI command), not a server.
pub fn close_in_child(fd: OwnedFd) -> Option<libc::pid_t> {
    // The child must close after us, or the last close is ours again: it waits for the
    // end of file on a pipe whose write end we close after `fd`.
    let mut pipe = [-1; 2];
    // SAFETY: `pipe` is an array of two fds for pipe2 to fill.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        drop(fd);
        return None;
    }
    let [read_end, write_end] = pipe;
    // SAFETY: the child of a multithreaded process may call only async-signal-safe
    // functions: it calls close, read and _exit on fds of its own and a stack byte.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: as above; the fds are the child's copies.
        unsafe {
            libc::close(write_end);
            let mut byte = 0u8;
            while libc::read(read_end, (&mut byte as *mut u8).cast(), 1) < 0
                && *libc::__errno_location() == libc::EINTR
            {}
            libc::close(fd.as_raw_fd());
            libc::_exit(0)
        }
    }
    drop(fd);
    // SAFETY: both ends were opened above and are closed once, here.
    unsafe {
        libc::close(write_end);
        libc::close(read_end);
    }
    (child > 0).then_some(child)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    /// An inotify instance watching a directory that is then removed (the case whose
    /// last close waits): ours is closed on return, and a child that waited for that
    /// (the pipe's end of file) made the last close and exited cleanly.
    #[test]
    fn the_fd_is_closed_here_and_a_child_makes_the_last_close() {
        let dir = std::env::temp_dir().join(format!("codex-release-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        // SAFETY: inotify_init1 returns a new fd or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: raw is a new fd, owned from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid inotify fd and a NUL-terminated path.
        assert!(unsafe { libc::inotify_add_watch(raw, path.as_ptr(), libc::IN_CREATE) } >= 0);
        std::fs::remove_dir(&dir).unwrap();

        let link = format!("/proc/self/fd/{raw}");
        assert_eq!(
            std::fs::read_link(&link).unwrap().to_str(),
            Some("anon_inode:inotify")
        );
        let child = close_in_child(fd).expect("a child");
        // The number may already be another test's file, but not an inotify instance:
        // no other test of this crate makes one.
        let now = std::fs::read_link(&link).ok();
        assert_ne!(
            now.as_deref().and_then(|p| p.to_str()),
            Some("anon_inode:inotify"),
            "ours is still open"
        );
        let mut status = 0;
        // SAFETY: waits for our own child, by pid (other tests' children are theirs).
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "status {status:#x}"
        );
    }
}
