//! Closing a file whose last close waits on the kernel, off the caller's path.
//!
//! The last close of an inotify instance that had watches waits until the kernel has
//! freed them, an SRCU grace period of fsnotify's: 5-18 ms measured here, whether the
//! close is explicit or the one at exit, while the caller does nothing. A command about
//! to end (an attached `run` whose container has ended) hands such a file to a child
//! that makes the last close, and ends without that wait. Nothing depends on the close
//! being over: the watches are inert once their instance is closed by anyone.
//!
//! The child keeps no other file of ours: not our stdout or stderr (a `$(...)` or a
//! pipe reading us would wait for it), not a descriptor holding a `flock` (a lock is
//! held while any copy is open).

use std::os::fd::{AsRawFd, OwnedFd};

/// Closes `fd` for this process now and lets a forked child make the last close; returns
/// the child's pid. If no child can be made, `fd` is closed here, waiting as a plain
/// close would, and `None` is returned.
///
/// A thread of ours reaps the child when it ends, so a long-lived caller (a program
/// embedding the engine) collects no zombies; a command that exits before leaves the
/// child to init, as any orphan.
pub fn close_in_child(fd: OwnedFd) -> Option<libc::pid_t> {
    let (child, go, stack) = spawn_closer(&fd)?;
    // Ours first: the last close must be the child's.
    drop(fd);
    drop(go);
    // The child's stack is freed once it has exited. Without the thread (none could be
    // started) the child stays a zombie until we exit, and its stack is never freed: a
    // failed spawn drops the closure, which holds only the stack's address.
    let stack = Box::into_raw(stack) as *mut u8 as usize;
    let _ = std::thread::Builder::new()
        .name("codex-release".into())
        .spawn(move || {
            let mut status = 0;
            // SAFETY: waits for our own child, by pid, into a local.
            while unsafe { libc::waitpid(child, &mut status, 0) } < 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
            // SAFETY: the stack Box::into_raw gave above, of CLOSER_STACK bytes, freed
            // once, now that the child that ran on it has exited.
            drop(unsafe {
                Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    stack as *mut u8,
                    CLOSER_STACK,
                ))
            });
        });
    Some(child)
}

/// What the closer child needs, on its own stack (the child shares our memory: see
/// [`spawn_closer`]).
#[repr(C)]
struct CloserArgs {
    fd: libc::c_int,
    read_end: libc::c_int,
    /// The two fds it keeps, lower first.
    keep: (libc::c_uint, libc::c_uint),
}

/// The closer's stack: enough for `closer` and the libc calls it makes.
const CLOSER_STACK: usize = 64 * 1024;

/// The closer child (see [`spawn_closer`]): closes every fd but its two, waits for the
/// pipe's end of file, makes the last close of `fd` and exits. It runs in our address
/// space on a stack of its own, so it makes system calls only: no allocation, no lock,
/// nothing of Rust's runtime.
extern "C" fn closer(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the CloserArgs written at the top of this child's own
    // stack before the clone; nothing else writes there.
    let a = unsafe { &*(arg as *const CloserArgs) };
    let (low, high) = a.keep;
    // SAFETY: close_range, read, close and _exit on this child's own fd table and a
    // byte on its own stack.
    unsafe {
        if low > 0 {
            libc::close_range(0, low - 1, 0);
        }
        if high > low + 1 {
            libc::close_range(low + 1, high - 1, 0);
        }
        libc::close_range(high + 1, libc::c_uint::MAX, 0);
        let mut byte = 0u8;
        while libc::read(a.read_end, (&mut byte as *mut u8).cast(), 1) < 0
            && *libc::__errno_location() == libc::EINTR
        {}
        libc::close(a.fd);
        libc::_exit(0)
    }
}

/// Starts the child that will close `fd`: it keeps only its copy of `fd` and the read
/// end of a pipe, and closes `fd` (then exits) at the pipe's end of file, when the
/// returned write end is closed. The child shares our memory (`CLONE_VM`, as
/// posix_spawn's child does) but not our fd table: no copy of our page tables to make
/// (a fork's 0.1-0.3 ms), and, should we exit first, our address space is torn down by
/// the child's exit, not ours. Also returned: its stack, to be freed only once it has
/// exited.
fn spawn_closer(fd: &OwnedFd) -> Option<(libc::pid_t, OwnedFd, Box<[u8]>)> {
    let mut pipe = [-1; 2];
    // SAFETY: `pipe` is an array of two fds for pipe2 to fill.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    let [read_end, write_end] = pipe;
    let (low, high) = (fd.as_raw_fd().min(read_end), fd.as_raw_fd().max(read_end));
    let mut stack = vec![0u8; CLOSER_STACK].into_boxed_slice();
    // The arguments at the top of the stack, the child's stack below them (16-byte
    // aligned, as the ABI wants at a call).
    let top = stack.as_mut_ptr() as usize + CLOSER_STACK;
    let args_at = (top - std::mem::size_of::<CloserArgs>()) & !15;
    let args = args_at as *mut CloserArgs;
    // SAFETY: `args_at` lies inside `stack`, aligned for CloserArgs (16 bytes).
    unsafe {
        args.write(CloserArgs {
            fd: fd.as_raw_fd(),
            read_end,
            keep: (low as libc::c_uint, high as libc::c_uint),
        })
    };
    let stack_top = (args_at - 16) as *mut libc::c_void;
    // SAFETY: `closer` only makes system calls on its own stack (inside `stack`, which
    // the caller frees only after the child has exited) and fd table (no CLONE_FILES);
    // SIGCHLD tells us when it ends, as a fork's child would.
    let child = unsafe {
        libc::clone(
            closer,
            stack_top,
            libc::CLONE_VM | libc::SIGCHLD,
            args.cast(),
        )
    };
    // SAFETY: both ends were opened above; the read end is closed once here and the
    // write end is owned by the returned OwnedFd.
    let go = unsafe {
        libc::close(read_end);
        <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(write_end)
    };
    (child > 0).then_some((child, go, stack))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;
    use std::time::{Duration, Instant};

    fn inotify_watching_a_removed_dir(test: &str) -> OwnedFd {
        let dir = std::env::temp_dir().join(format!("codex-release-{test}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        // SAFETY: inotify_init1 returns a new fd or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: raw is a new fd, owned from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid inotify fd and a NUL-terminated path.
        assert!(unsafe { libc::inotify_add_watch(raw, path.as_ptr(), libc::IN_CREATE) } >= 0);
        // The case whose last close waits: the kernel is freeing the watch.
        std::fs::remove_dir(&dir).unwrap();
        fd
    }

    /// Reaps our child `child`, which must exit 0 within 10 s.
    fn reap(child: libc::pid_t) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child, by pid (other tests' children are theirs).
            match unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) } {
                0 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                0 => panic!("the child {child} did not end"),
                pid => {
                    assert_eq!(pid, child);
                    break;
                }
            }
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "status {status:#x}"
        );
    }

    /// The child holds the inotify instance and the pipe, and nothing else of ours:
    /// here a pipe standing for our stdout, whose reader must see its end of file
    /// when we close our end, child or not.
    #[test]
    fn the_child_keeps_only_the_fd_and_its_pipe() {
        let fd = inotify_watching_a_removed_dir("keeps");
        let mut out = [-1; 2];
        // SAFETY: a pipe without CLOEXEC, as a stdout is; both ends closed below.
        assert_eq!(unsafe { libc::pipe(out.as_mut_ptr()) }, 0);
        let (child, go, _stack) = spawn_closer(&fd).expect("a child");
        // It blocks on its pipe until `go` is closed: wait until it has closed the rest.
        let fds = format!("/proc/{child}/fd");
        let deadline = Instant::now() + Duration::from_secs(10);
        let kept = loop {
            // An entry may close between the listing and its readlink: it is gone.
            let kept: Vec<String> = std::fs::read_dir(&fds)
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.display().to_string())
                .collect();
            if kept.len() <= 2 || Instant::now() > deadline {
                break kept;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut sorted = kept.clone();
        sorted.sort();
        assert_eq!(sorted.len(), 2, "the child kept {kept:?}");
        assert_eq!(sorted[0], "anon_inode:inotify");
        assert!(sorted[1].starts_with("pipe:"), "{kept:?}");
        // SAFETY: our ends of the stand-in stdout, closed once.
        unsafe {
            libc::close(out[1]);
            let mut byte = 0u8;
            assert_eq!(
                libc::read(out[0], (&mut byte as *mut u8).cast(), 1),
                0,
                "no end of file"
            );
            libc::close(out[0]);
        }
        drop(fd);
        drop(go);
        reap(child);
    }

    /// The child makes the last close after ours (it waits for the pipe's end of file,
    /// which comes once we have closed both), ends by itself and is reaped by our
    /// thread: its /proc entry goes (a zombie would keep it).
    #[test]
    fn the_child_closes_after_us_ends_by_itself_and_is_reaped() {
        let fd = inotify_watching_a_removed_dir("ends");
        let child = close_in_child(fd).expect("a child");
        let entry = format!("/proc/{child}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::path::Path::new(&entry).exists() {
            assert!(
                Instant::now() < deadline,
                "the child {child} was not reaped"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
