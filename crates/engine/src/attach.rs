//! `attach` to a container's terminal: a copy of the pty master that its supervisor
//! keeps (`-t`, see `supervisor::tty`), to type into and to resize. The output needs
//! nothing of this: it is in the log, which an attached caller follows.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use codex_sys::ProcessId;

use crate::config::ContainerConfig;
use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::registry::ContainerStatus;

/// The master moves from the worker to the shim once, within a moment: a look that
/// falls in between is tried again for this long.
const HANDOVER_WAIT: Duration = Duration::from_secs(2);

impl Engine {
    /// A copy of the running container's terminal master (it was created with a
    /// terminal): what is written to it is the container's input, and its size is
    /// the container's terminal size ([`set_terminal_size`]).
    pub fn terminal(&self, reference: &str) -> Result<OwnedFd> {
        let rec = self.get_in(reference, &[ContainerStatus::Running], "it must be running")?;
        let cfg: ContainerConfig = serde_json::from_value(rec.config.clone()).unwrap_or_default();
        if !cfg.tty {
            return Err(Error::invalid(
                "tty",
                format!("{} has no terminal (create it with -t)", rec.name),
            ));
        }
        let deadline = Instant::now() + HANDOVER_WAIT;
        loop {
            let rec = self.get(&rec.id)?;
            let supervisor = rec.live_supervisor().ok_or_else(|| {
                Error::wrong_state(&rec.name, rec.status, "its supervisor is gone")
            })?;
            if let Some(master) = master_of(supervisor)? {
                return Ok(master);
            }
            if Instant::now() >= deadline {
                return Err(Error::wrong_state(
                    &rec.name,
                    rec.status,
                    "its supervisor holds no terminal",
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Engine {
    /// A copy of the write end of a running `-i` container's stdin, when its supervisor
    /// keeps one (started without a caller's pipe: `run -di`): what is written to it is
    /// the container's input; closing the copy does not end that input.
    pub fn stdin_writer(&self, reference: &str) -> Result<OwnedFd> {
        let rec = self.get_in(reference, &[ContainerStatus::Running], "it must be running")?;
        let none = || {
            Error::invalid(
                "stdin",
                format!(
                    "{} has no open stdin to attach to (create it with -i, and start it detached)",
                    rec.name
                ),
            )
        };
        let pid = rec.pid.ok_or_else(none)?;
        let supervisor = rec.live_supervisor().ok_or_else(none)?;
        // The pipe the init reads: its fd 0.
        let target = std::fs::read_link(format!("/proc/{pid}/fd/0")).map_err(|_| none())?;
        if !target.to_string_lossy().starts_with("pipe:") {
            return Err(none());
        }
        let Some(pidfd) = supervisor.open().ctx(|| "opening the supervisor's pidfd")? else {
            return Err(none());
        };
        let entries = std::fs::read_dir(format!("/proc/{}/fd", supervisor.pid))
            .ctx(|| "listing the supervisor's fds")?;
        for e in entries.flatten() {
            if std::fs::read_link(e.path()).ok().as_ref() != Some(&target) {
                continue;
            }
            let Some(n) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            // The write end: its flags (octal in fdinfo) open for writing.
            let writes = std::fs::read_to_string(format!("/proc/{}/fdinfo/{n}", supervisor.pid))
                .ok()
                .and_then(|info| {
                    info.lines()
                        .find_map(|l| l.strip_prefix("flags:"))
                        .and_then(|f| i32::from_str_radix(f.trim(), 8).ok())
                })
                .is_some_and(|f| f & libc::O_ACCMODE == libc::O_WRONLY);
            if writes {
                return codex_sys::pidfd_getfd(pidfd.as_fd(), n)
                    .ctx(|| format!("copying the stdin of {}", rec.name));
            }
        }
        Err(none())
    }
}

/// Sets the terminal's size (rows, columns), as a resize of the caller's terminal
/// does: the container's foreground process gets SIGWINCH.
pub fn set_terminal_size(master: &OwnedFd, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer; master is an open fd.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(master),
            libc::TIOCSWINSZ,
            &ws,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "setting the terminal size");
    }
    Ok(())
}

/// The pty master held by the supervisor, or by its worker (before the handover).
/// Only processes of the supervisor's own cgroup are looked at: the container's
/// processes are the supervisor's children too, and may hold pty masters of their
/// own, but cannot leave the container's cgroup.
fn master_of(supervisor: ProcessId) -> Result<Option<OwnedFd>> {
    let Some(pidfd) = supervisor.open().ctx(|| "opening the supervisor's pidfd")? else {
        return Ok(None);
    };
    if let Some(m) = ptmx_in(supervisor.pid, pidfd.as_fd())? {
        return Ok(Some(m));
    }
    let cgroup = |pid: i32| std::fs::read(format!("/proc/{pid}/cgroup")).ok();
    let ours = cgroup(supervisor.pid);
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", supervisor.pid))
        .unwrap_or_default();
    for pid in children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        let Ok(Some(fd)) = ProcessId::of(pid).map(|p| p.open()).unwrap_or(Ok(None)) else {
            continue;
        };
        // Checked after the pidfd pins the process: the cgroup read is of that one.
        if ours.is_some() && cgroup(pid) == ours {
            if let Some(m) = ptmx_in(pid, fd.as_fd())? {
                return Ok(Some(m));
            }
        }
    }
    Ok(None)
}

/// A copy of the first pty master among the fds of `pid` (pinned by `pidfd`).
fn ptmx_in(pid: i32, pidfd: std::os::fd::BorrowedFd) -> Result<Option<OwnedFd>> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Ok(None);
    };
    for e in entries.flatten() {
        // A pty master's fdinfo has its index (whatever path the fd has, which for
        // the container's devpts is not one of this root).
        let is_master = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .is_ok_and(|info| info.lines().any(|l| l.starts_with("tty-index:")));
        if !is_master {
            continue;
        }
        let Some(n) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        match codex_sys::pidfd_getfd(pidfd, n) {
            Ok(fd) => return Ok(Some(fd)),
            // Closed since the listing (the worker handing over): look again later.
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => continue,
            Err(e) => return Err(e).ctx(|| format!("copying the terminal of process {pid}")),
        }
    }
    Ok(None)
}
