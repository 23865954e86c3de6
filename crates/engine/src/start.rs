//! `start`: the container's supervisor, started detached, and its report read back:
//! the call returns once the container runs or with the error that kept it from
//! starting (also stored in its record).

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::engine::{is_live, starting, Engine};
use crate::error::{Context, Error, Result};
use crate::registry::{ContainerRecord, ContainerStatus};

impl Engine {
    /// Starts the container's supervisor and returns once the container runs, or
    /// with the error that kept it from starting (also stored in its record).
    pub fn start(&self, reference: &str) -> Result<ContainerRecord> {
        let rec = self.get(reference)?;
        if rec.restart_count != 0 && !is_live(rec.status) && !starting(&rec) {
            // A user's start begins a new count (`on-failure:MAX` counts from here).
            self.registry.update_container(&rec.id, |r| {
                if !is_live(r.status) && !starting(r) {
                    r.restart_count = 0;
                }
                Ok(())
            })?;
        }
        self.start_keeping_count(&rec.id, None)
    }

    /// [`Engine::start`] with `stdin` as the container's stdin (an attached `run -i`:
    /// the container reads what the caller writes to the pipe's other end, and sees
    /// its end when the caller closes it). A restart of the container gets
    /// /dev/null.
    pub fn start_with_stdin(&self, reference: &str, stdin: OwnedFd) -> Result<ContainerRecord> {
        let rec = self.get(reference)?;
        self.start_keeping_count(&rec.id, Some(stdin))
    }

    /// [`Engine::start`] without resetting the restart count.
    pub(crate) fn start_keeping_count(
        &self,
        reference: &str,
        stdin: Option<OwnedFd>,
    ) -> Result<ContainerRecord> {
        let rec = self.get(reference)?;
        match rec.status {
            ContainerStatus::Created
            | ContainerStatus::Exited
            | ContainerStatus::Stopped
            | ContainerStatus::Failed => {}
            s => {
                return Err(Error::wrong_state(
                    &rec.name,
                    s,
                    "start needs it created or exited",
                ))
            }
        }
        codex_runtime::cgroups::warm::warm_in_thread();
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "creating the status pipe")?;
        let wfd = w.as_raw_fd();
        // Executed from a read-only view of the binary, the supervisor is protected
        // (codex_runtime::selfclone) without re-executing itself: one exec of the binary
        // fewer on every start. Where no view can be made it protects itself as before.
        let view = codex_runtime::selfclone::overlay_view(&self.supervisor_exe)
            .ok()
            .map(std::os::fd::OwnedFd::from)
            .filter(|fd| {
                nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                )
                .is_ok()
            });
        let view_fd = view.as_ref().map(|fd| fd.as_raw_fd());
        let mut cmd = match view_fd {
            Some(fd) => {
                let mut c = Command::new(format!("/proc/self/fd/{fd}"));
                // argv[0] names the binary: the supervisor finds codex-shim next to it.
                c.arg0(&self.supervisor_exe);
                c
            }
            None => Command::new(&self.supervisor_exe),
        };
        cmd.arg("__supervise")
            .arg("--root")
            .arg(&self.root)
            .arg(&rec.id);
        cmd.stdin(stdin.map_or_else(Stdio::null, Stdio::from))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls: setsid and dup2.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                if libc::dup2(wfd, crate::supervisor::STATUS_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The view's fd stays open across the exec that goes through it (the
                // supervisor closes every fd past its status fd at once).
                if let Some(fd) = view_fd {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .ctx(|| format!("starting the supervisor {}", self.supervisor_exe.display()))?;
        drop((w, view));
        crate::trace::phase("start: supervisor spawned");
        // The supervisor forks at once and its first process exits: reap it.
        let _ = child.wait();
        crate::trace::phase("start: first process reaped");
        let mut report = String::new();
        std::fs::File::from(r)
            .read_to_string(&mut report)
            .ctx(|| "reading the supervisor's report")?;
        crate::trace::phase("start: report read");
        match serde_json::from_str::<Value>(report.trim()) {
            Ok(v) if v["ok"] == true => self.get(&rec.id),
            Ok(v) => {
                let message = v["error"]
                    .as_str()
                    .unwrap_or("the supervisor failed")
                    .to_string();
                Err(Error::Runtime(match v["exec_code"].as_i64() {
                    Some(code) => codex_runtime::Error::Exec {
                        code: code as i32,
                        message,
                    },
                    None => codex_runtime::Error::Container(message),
                }))
            }
            Err(_) => Err(Error::Runtime(codex_runtime::Error::Container(format!(
                "the supervisor exited without a report{}",
                if report.is_empty() {
                    String::new()
                } else {
                    format!(": {report}")
                }
            )))),
        }
    }
}
