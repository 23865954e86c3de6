//! A timing trace of the start path, shared by the engine and the runtime: with
//! `CODEX_TRACE=1` each phase prints one line to stderr; with `CODEX_TRACE=/abs/path` it
//! is appended to that file instead (the supervisor's stderr is /dev/null, and a file
//! gathers the CLI's, the supervisor's and the container init's lines in one place).
//! Each line: `trace PID MONOTONIC_MS +DELTA_MS PHASE`, where MONOTONIC_MS is
//! CLOCK_MONOTONIC (comparable across processes) and DELTA_MS the time since this
//! process's previous line. Off (one env lookup, once) when unset.
//!
//! The file is opened at a process's first phase (O_APPEND, O_CLOEXEC, never following
//! a symlink, mode 0600) and its fd kept: a forked child writes through the same open
//! file, so the container's init keeps tracing after it has pivoted into the container's
//! root, where the path would name something else ([`pin`]). Before each write the fd
//! is checked to still be that file (device and inode): a process that closed its fds
//! (a daemonizing supervisor) may have the number reused by another file, which must
//! never receive a line. The fd is then forgotten, never closed (it is not ours any
//! more), and the file opened again by path, except in a pinned process.

use std::io::Write;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// Where the lines go, decided once per process.
enum Sink {
    Off,
    Stderr,
    File(PathBuf),
}

fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| match parse(std::env::var_os("CODEX_TRACE").as_deref()) {
        Target::Off => Sink::Off,
        Target::Stderr => Sink::Stderr,
        Target::File(path) => Sink::File(path),
    })
}

/// What an environment value asks for.
#[derive(Debug, PartialEq)]
enum Target {
    Off,
    Stderr,
    File(PathBuf),
}

/// The sink an environment value names: unset, empty or `0` is off; an absolute path is
/// a file; anything else is stderr.
fn parse(value: Option<&std::ffi::OsStr>) -> Target {
    match value {
        None => Target::Off,
        Some(v) if v.is_empty() || v == "0" => Target::Off,
        Some(v) if v.as_encoded_bytes().starts_with(b"/") => Target::File(v.into()),
        Some(_) => Target::Stderr,
    }
}

/// The open trace file: fd, device, inode.
static OPEN: Mutex<Option<(RawFd, u64, u64)>> = Mutex::new(None);
/// Set in a process that must not open the trace file by path (see [`pin`]).
static PINNED: AtomicBool = AtomicBool::new(false);

/// Whether tracing is on. Opens the trace file if it is not open yet: call it before a
/// fork whose child traces.
pub fn enabled() -> bool {
    match sink() {
        Sink::Off => false,
        Sink::Stderr => true,
        Sink::File(path) => {
            if let Ok(mut open) = OPEN.lock() {
                let _ = current_fd(&mut open, path);
            }
            true
        }
    }
}

/// For a process that will change its root (the container's init): from now on it
/// writes only to the file it inherited, never opening the path again.
pub fn pin() {
    PINNED.store(true, Ordering::SeqCst);
}

/// The fd of the trace file, checked, or opened now (unless pinned).
fn current_fd(open: &mut Option<(RawFd, u64, u64)>, path: &std::path::Path) -> Option<RawFd> {
    if let Some((fd, dev, ino)) = *open {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat writes the stat buffer we own; a closed fd gives EBADF.
        if unsafe { libc::fstat(fd, st.as_mut_ptr()) } == 0 {
            // SAFETY: fstat succeeded, so it filled the buffer.
            let st = unsafe { st.assume_init() };
            if st.st_dev == dev && st.st_ino == ino {
                return Some(fd);
            }
        }
        // Closed, or the number now names another file: forget it, never close it.
        *open = None;
    }
    if PINNED.load(Ordering::SeqCst) {
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let md = file.metadata().ok()?;
    let fd = file.into_raw_fd();
    *open = Some((fd, md.dev(), md.ino()));
    Some(fd)
}

/// CLOCK_MONOTONIC in milliseconds.
fn monotonic_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1e6
}

/// Notes that `phase` has ended (now). One `write` per line, so lines of concurrent
/// processes do not interleave.
pub fn phase(phase: &str) {
    if !enabled() {
        return;
    }
    static LAST: Mutex<Option<f64>> = Mutex::new(None);
    let now = monotonic_ms();
    let delta = match LAST.lock() {
        Ok(mut last) => {
            let d = last.map_or(0.0, |l| now - l);
            *last = Some(now);
            d
        }
        Err(_) => 0.0,
    };
    // SAFETY: getpid has no preconditions (a forked child must print its own pid).
    let pid = unsafe { libc::getpid() };
    let line = format!("trace {pid} {now:.3} +{delta:.3} {phase}\n");
    match sink() {
        Sink::Off => {}
        Sink::Stderr => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        Sink::File(path) => {
            let Ok(mut open) = OPEN.lock() else { return };
            if let Some(fd) = current_fd(&mut open, path) {
                // SAFETY: fd is the trace file, checked just now; ManuallyDrop keeps
                // this borrow from closing it.
                let file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
                let _ = (&*file).write_all(line.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn a_reused_fd_number_never_receives_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace");
        let mut open = None;
        let fd = current_fd(&mut open, &path).expect("opened");
        assert_eq!(
            std::fs::metadata(&path).unwrap().mode() & 0o777,
            0o600,
            "the trace file is root's alone"
        );
        // A daemonizing process closes its fds and the number goes to another file:
        // dup2 does both at once (no other test thread can take the number between).
        let other = std::fs::File::create(dir.path().join("other")).unwrap();
        // SAFETY: fd is the trace file this test opened; dup2 replaces it.
        let duped = unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&other), fd) };
        assert_eq!(duped, fd);
        let again = current_fd(&mut open, &path).expect("reopened by path");
        assert_ne!(again, fd, "the other file's fd was taken for the trace");
        let (_, dev, ino) = open.unwrap();
        let md = std::fs::metadata(&path).unwrap();
        assert_eq!((dev, ino), (md.dev(), md.ino()));
        assert_eq!(std::fs::read(dir.path().join("other")).unwrap(), b"");
        // SAFETY: both are this test's: the dup of `other`, and the trace file.
        unsafe {
            libc::close(fd);
            libc::close(again);
        }
    }

    #[test]
    fn the_environment_value_picks_the_sink() {
        assert_eq!(parse(None), Target::Off);
        assert_eq!(parse(Some(OsStr::new(""))), Target::Off);
        assert_eq!(parse(Some(OsStr::new("0"))), Target::Off);
        assert_eq!(parse(Some(OsStr::new("1"))), Target::Stderr);
        assert_eq!(
            parse(Some(OsStr::new("/tmp/t.log"))),
            Target::File("/tmp/t.log".into())
        );
    }
}
