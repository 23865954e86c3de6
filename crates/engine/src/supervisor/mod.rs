//! The per-container supervisor: a small detached process (the hidden
//! `__supervise --root ROOT ID` mode of the `codex-ctr` binary) that is the container
//! init's parent. It mounts the container's rootfs, creates and starts it through
//! codex-runtime with its stdout and stderr on pipes, reports "started" (or the error)
//! to whoever started it, writes the log, reaps the init, records how it ended (exit
//! code, signal, OOM kill, times), deletes the runtime container and unmounts.
//! It never holds the registry lock while it waits.

pub mod logs;

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::engine::{BUNDLE_DIR, LOG_FILE, ROOTFS_DIR};
use crate::error::{Context, Error, Result};
use crate::registry::{ContainerStatus, Registry};
use logs::LogWriter;

/// The fd on which the supervisor reports `{"ok":true}` or `{"error":...}`.
pub const STATUS_FD: i32 = 3;

fn report(v: serde_json::Value) {
    // SAFETY: STATUS_FD was handed to us by the engine; we own it from here on.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(STATUS_FD) });
    let _ = writeln!(f, "{v}");
}

/// Mounts the overlay rootfs of a container whose directory has a layer list.
pub fn mount_rootfs(dir: &Path) -> Result<()> {
    let Ok(text) = std::fs::read(dir.join("lowers")) else {
        return Ok(());
    };
    let lowers: Vec<PathBuf> = serde_json::from_slice(&text).map_err(|e| Error::Corrupt {
        path: dir.join("lowers"),
        reason: e.to_string(),
    })?;
    let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    let target = dir.join(ROOTFS_DIR);
    unmount_rootfs(dir);
    nix::mount::mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| Error::Io {
        context: format!("mounting the rootfs overlay on {}", target.display()),
        cause: e.into(),
    })
}

pub fn unmount_rootfs(dir: &Path) {
    let _ = nix::mount::umount2(&dir.join(ROOTFS_DIR), nix::mount::MntFlags::MNT_DETACH);
}

/// The supervisor's whole life. Returns the process exit code.
pub fn run(root: &Path, id: &str) -> i32 {
    // Detach from the starter: it reaps this first process at once.
    // SAFETY: single-threaded here (a fresh exec); the child continues alone.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            report(serde_json::json!({"error": format!("forking the supervisor: {e}")}));
            return 1;
        }
    }
    let registry = match Registry::open(root) {
        Ok(r) => r,
        Err(e) => {
            report(serde_json::json!({"error": e.to_string()}));
            return 1;
        }
    };
    match supervise(root, &registry, id) {
        Ok(()) => 0,
        Err(e) => {
            let msg = e.to_string();
            let _ = registry.update_container(id, |r| {
                r.status = ContainerStatus::Failed;
                r.error = Some(msg.clone());
                r.pid = None;
                r.supervisor_pid = None;
                Ok(())
            });
            report(serde_json::json!({"error": msg}));
            1
        }
    }
}

fn supervise(root: &Path, registry: &Registry, id: &str) -> Result<()> {
    let dir = registry.container_dir(id)?;
    let rt = codex_runtime::Runtime::new(root.join("runtime"));
    // A previous run's runtime container (a crashed supervisor) goes first.
    let _ = rt.delete(id, true);
    let cfg: crate::config::ContainerConfig = registry
        .get(id)
        .ok()
        .and_then(|r| serde_json::from_value(r.config).ok())
        .unwrap_or_default();
    mount_rootfs(&dir)?;
    let mut log = LogWriter::open(&dir.join(LOG_FILE), cfg.log_rotation())?;
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "stdout pipe")?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "stderr pipe")?;
    // The container inherits our fds 1 and 2: point them at the pipes for `create`,
    // then back at /dev/null so only the container holds the write ends.
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .ctx(|| "opening /dev/null")?;
    let dup_to = |from: &OwnedFd, to: i32| {
        // SAFETY: dup2 onto the standard fds of this process.
        unsafe { libc::dup2(from.as_raw_fd(), to) }
    };
    dup_to(&out_w, 1);
    dup_to(&err_w, 2);
    let opts = codex_runtime::CreateOptions {
        bundle: dir.join(BUNDLE_DIR),
        ..Default::default()
    };
    let created = rt.create(id, &opts);
    let null_fd: OwnedFd = null.into();
    dup_to(&null_fd, 1);
    dup_to(&null_fd, 2);
    drop((out_w, err_w));
    let container = created.inspect_err(|_| unmount_rootfs(&dir))?;
    let pid = container.state.pid;
    if let Err(e) = rt.start(id) {
        let _ = rt.delete(id, true);
        unmount_rootfs(&dir);
        return Err(e.into());
    }
    let me = std::process::id() as i32;
    registry.update_container(id, |r| {
        r.status = ContainerStatus::Running;
        r.pid = Some(pid);
        r.supervisor_pid = Some(me);
        r.started_at = Some(codex_runtime::state::now_rfc3339());
        r.finished_at = None;
        r.exit_code = None;
        r.signal = None;
        r.oom_killed = false;
        r.error = None;
        r.stop_requested = false;
        Ok(())
    })?;
    report(serde_json::json!({"ok": true, "pid": pid}));

    let deadline = cfg
        .timeout
        .map(|t| (std::time::Instant::now() + Duration::from_secs(t), t));
    let stop_signal = cfg
        .stop_signal
        .as_deref()
        .and_then(|s| codex_runtime::parse_signal(s).ok())
        .unwrap_or(libc::SIGTERM);
    let grace = Duration::from_secs(cfg.stop_timeout.unwrap_or(10));
    let mut timed_out = false;
    let (code, signal) = pump(&mut log, [out_r, err_r], pid, &mut || {
        // Called on each tick: enforce --timeout (stop signal, then SIGKILL).
        if let Some((at, _)) = deadline {
            let now = std::time::Instant::now();
            if now >= at && !timed_out {
                timed_out = true;
                let _ = rt.kill(id, stop_signal, true);
            } else if timed_out && now >= at + grace {
                let _ = rt.kill(id, libc::SIGKILL, true);
            }
        }
    })?;
    let (code, timeout_note) = match deadline {
        Some((_, secs)) if timed_out => (124, Some(format!("timed out after {secs} s"))),
        _ => (code, None),
    };
    let _ = log.flush();
    let oom = rt
        .load(id)
        .map(|c| c.state.cgroups.oom_kills() > 0)
        .unwrap_or(false);
    let deleted = rt.delete(id, true);
    unmount_rootfs(&dir);
    registry.update_container(id, |r| {
        r.status = if r.stop_requested {
            ContainerStatus::Stopped
        } else {
            ContainerStatus::Exited
        };
        r.exit_code = Some(code);
        r.signal = signal;
        r.oom_killed = oom;
        r.pid = None;
        r.supervisor_pid = None;
        r.finished_at = Some(codex_runtime::state::now_rfc3339());
        r.error = timeout_note
            .clone()
            .or_else(|| deleted.as_ref().err().map(|e| format!("cleaning up: {e}")));
        Ok(())
    })?;
    if cfg.auto_remove {
        registry.remove_container(id)?;
    }
    Ok(())
}

/// Copies the container's output into the log until the init has exited and the
/// pipes are drained; returns the exit code (128+N for signal N) and the signal.
fn pump(
    log: &mut LogWriter,
    pipes: [OwnedFd; 2],
    pid: i32,
    tick: &mut dyn FnMut(),
) -> Result<(i32, Option<i32>)> {
    let mut open = [true, true];
    let mut status: Option<(i32, Option<i32>)> = None;
    let mut grace = 0u32;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tick();
        if status.is_none() {
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, c)) => status = Some((c, None)),
                Ok(WaitStatus::Signaled(_, s, _)) => {
                    status = Some((128 + s as i32, Some(s as i32)))
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::Io {
                        context: format!("waiting for {pid}"),
                        cause: e.into(),
                    })
                }
            }
        }
        if !open[0] && !open[1] {
            if let Some(s) = status {
                return Ok(s);
            }
        }
        // Processes outside a PID namespace may keep the pipes after the init exits:
        // give them a moment, then stop reading.
        if status.is_some() {
            grace += 1;
            if grace > 20 {
                return Ok(status.unwrap_or((0, None)));
            }
        }
        let mut fds: Vec<PollFd> = Vec::new();
        let mut which = Vec::new();
        for (i, p) in pipes.iter().enumerate() {
            if open[i] {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        let timeout =
            PollTimeout::try_from(Duration::from_millis(100)).unwrap_or(PollTimeout::NONE);
        if fds.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(Error::Io {
                    context: "polling the container's output".into(),
                    cause: e.into(),
                })
            }
        }
        let ready: Vec<usize> = fds
            .iter()
            .zip(&which)
            .filter(|(f, _)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, i)| *i)
            .collect();
        drop(fds);
        for i in ready {
            match nix::unistd::read(pipes[i].as_fd(), &mut buf) {
                Ok(0) => open[i] = false,
                Ok(n) => log.feed(i, &buf[..n])?,
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(_) => open[i] = false,
            }
        }
    }
}
