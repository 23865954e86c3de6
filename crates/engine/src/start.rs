//! `start`: the container's supervisor, started detached, and its report read back:
//! the call returns once the container runs or with the error that kept it from
//! starting (also stored in its record).
//!
//! A `run` can start the supervisor before its container exists ([`Engine::prepare_start`]):
//! the supervisor's exec then overlaps the create (whose time is mostly the record's
//! fsyncs), and it waits for the container's id on a pipe ([`ID_FD`]). Dropping the
//! prepared start closes the pipe, and the supervisor exits without doing anything.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use serde_json::Value;

use crate::engine::{is_live, starting, Engine};
use crate::error::{Context, Error, Result};
use crate::registry::{ContainerRecord, ContainerStatus};
use crate::supervisor::{ID_FD, STATUS_FD};

/// A supervisor started ahead of its container, waiting for the container's id. Give it
/// to [`Engine::start_prepared`]; dropped unused, the supervisor exits.
pub struct PreparedStart {
    spawned: Spawned,
}

impl PreparedStart {
    /// The supervisor, when it is known before it has the container's id (forked by this
    /// process): [`Engine::create_for`] names it in the record.
    pub fn supervisor(&self) -> Option<codex_sys::ProcessId> {
        self.spawned.supervisor
    }

    /// Tells the supervisor that the directory of container `id`, still being created,
    /// holds its layer list and upper and work dirs: it mounts the rootfs meanwhile
    /// (see `supervisor::rootfs::premount`). A supervisor that died shows as a missing
    /// report later.
    pub(crate) fn premount(&self, id: &str, volatile: bool) {
        if let Some(mut pipe) = self.spawned.id_pipe.as_ref() {
            let _ = pipe.write_all(crate::supervisor::mount_line(id, volatile).as_bytes());
        }
    }

    /// After a create that failed once the supervisor was told to mount its rootfs:
    /// ends the id pipe without an id and waits for the supervisor to exit (its status
    /// pipe's end), so that nothing it does in the directory races the removal of what
    /// the create left.
    pub(crate) fn stop(&mut self) {
        if self.spawned.id_pipe.take().is_none() {
            return;
        }
        if let Ok(report) = self.spawned.report.try_clone() {
            let mut rest = Vec::new();
            let _ = std::fs::File::from(report).read_to_end(&mut rest);
        }
    }
}

/// A spawned supervisor's first process, its report pipe, and (started ahead) the pipe
/// that tells it the container's id.
struct Spawned {
    /// Until it is reaped (a first process that exits at once; never the supervisor).
    child: Option<Pid>,
    /// The supervisor itself, when it is known before it has the container's id.
    supervisor: Option<codex_sys::ProcessId>,
    report: OwnedFd,
    id_pipe: Option<std::fs::File>,
    /// Joined with the rest: the caller is single-threaded again once the start is done.
    _warm: codex_runtime::cgroups::warm::WarmThread,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // Without an id the supervisor exits at the pipe's end; with one it has forked
        // and its first process exits: either way reaped here, never left a zombie.
        self.id_pipe.take();
        self.reap();
    }
}

impl Spawned {
    fn reap(&mut self) {
        if let Some(pid) = self.child.take() {
            while let Err(nix::errno::Errno::EINTR) = waitpid(pid, None) {}
        }
    }
}

impl Engine {
    /// Starts the container's supervisor and returns once the container runs, or
    /// with the error that kept it from starting (also stored in its record).
    pub fn start(&self, reference: &str) -> Result<ContainerRecord> {
        let rec = self.reset_restart_count(reference)?;
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

    /// Starts a supervisor for a container that is yet to be created (`run`: call this
    /// first, then create, then [`Engine::start_prepared`]), with `stdin` as the
    /// container's stdin as in [`Engine::start_with_stdin`].
    pub fn prepare_start(&self, stdin: Option<OwnedFd>) -> Result<PreparedStart> {
        Ok(PreparedStart {
            spawned: self.spawn_supervisor(None, stdin)?,
        })
    }

    /// [`Engine::prepare_start`] for a container to be made with `config`: the
    /// supervisor is forked from this process where that is safe (see
    /// `forked_start`), executed otherwise.
    pub fn prepare_start_for(
        &self,
        config: &crate::config::ContainerConfig,
        stdin: Option<OwnedFd>,
    ) -> Result<PreparedStart> {
        if !self.can_fork_supervisor(config) {
            return self.prepare_start(stdin);
        }
        Ok(PreparedStart {
            spawned: self.fork_supervisor(stdin)?,
        })
    }

    /// [`Engine::start`] with a supervisor from [`Engine::prepare_start`].
    pub fn start_prepared(
        &self,
        prepared: PreparedStart,
        reference: &str,
    ) -> Result<ContainerRecord> {
        let rec = self.reset_restart_count(reference)?;
        check_startable(&rec)?;
        self.read_report(prepared.spawned, &rec)
    }

    /// A user's start begins a new count (`on-failure:MAX` counts from here).
    fn reset_restart_count(&self, reference: &str) -> Result<ContainerRecord> {
        let rec = self.get(reference)?;
        if rec.restart_count != 0 && !is_live(rec.status) && !starting(&rec) {
            return self.registry.update_container(&rec.id, |r| {
                if !is_live(r.status) && !starting(r) {
                    r.restart_count = 0;
                }
                Ok(())
            });
        }
        Ok(rec)
    }

    /// [`Engine::start`] without resetting the restart count.
    pub(crate) fn start_keeping_count(
        &self,
        reference: &str,
        stdin: Option<OwnedFd>,
    ) -> Result<ContainerRecord> {
        let rec = self.get(reference)?;
        check_startable(&rec)?;
        let spawned = self.spawn_supervisor(Some(&rec.id), stdin)?;
        self.read_report(spawned, &rec)
    }

    /// Spawns `codex-ctr __supervise --root ROOT ID` (ID `-` with `id` unknown yet:
    /// it is written to the supervisor's [`ID_FD`] later).
    fn spawn_supervisor(&self, id: Option<&str>, stdin: Option<OwnedFd>) -> Result<Spawned> {
        // The placement of the container's init, about 10 ms from now, is then not
        // held up by the kernel's cgroup migration lock (cgroups::warm).
        let warm = codex_runtime::cgroups::warm::warm_in_thread();
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "creating the status pipe")?;
        let w = above_child_fds(w)?;
        let wfd = w.as_raw_fd();
        let id_pipe = match id {
            Some(_) => None,
            None => {
                let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .ctx(|| "creating the id pipe")?;
                Some((above_child_fds(r)?, w))
            }
        };
        let id_rfd = id_pipe.as_ref().map(|(r, _)| r.as_raw_fd());
        // Executed from a read-only view of the binary, the supervisor is protected
        // (codex_runtime::selfclone) without re-executing itself: one exec of the binary
        // fewer on every start. Where no view can be made it protects itself as before.
        let view = codex_runtime::selfclone::overlay_view(&self.supervisor_exe)
            .ok()
            .map(std::os::fd::OwnedFd::from)
            .and_then(|fd| above_child_fds(fd).ok());
        let view_fd = view.as_ref().map(|fd| fd.as_raw_fd());
        crate::trace::phase("start: binary view made");
        // Every source fd above the targets (0-4), so no dup2 below overwrites one not
        // yet copied (see `above_child_fds`).
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .ctx(|| "opening /dev/null")?;
        let null = above_child_fds(null.into())?;
        let stdin = stdin.map(above_child_fds).transpose()?;
        let mut actions = PosixSpawnFileActions::init().ctx(|| "posix_spawn file actions")?;
        let stdin_fd = stdin.as_ref().unwrap_or(&null).as_raw_fd();
        let mut maps = vec![
            (stdin_fd, 0),
            (null.as_raw_fd(), 1),
            (null.as_raw_fd(), 2),
            (wfd, STATUS_FD),
        ];
        maps.extend(id_rfd.map(|fd| (fd, ID_FD)));
        // The view's fd stays open across the exec that goes through it (a dup2 onto
        // itself clears close-on-exec; the supervisor closes every fd past its status
        // fd at once).
        maps.extend(view_fd.map(|fd| (fd, fd)));
        for (from, to) in maps {
            actions
                .add_dup2(from, to)
                .ctx(|| "posix_spawn file actions")?;
        }
        // Its own session (it outlives this command and its terminal), no signal
        // blocked, SIGPIPE back to its default (this process ignores it).
        let mut attr = PosixSpawnAttr::init().ctx(|| "posix_spawn attributes")?;
        let mut sigpipe = SigSet::empty();
        sigpipe.add(Signal::SIGPIPE);
        attr.set_flags(
            PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
                | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF
                | PosixSpawnFlags::from_bits_retain(libc::POSIX_SPAWN_SETSID.into()),
        )
        .and_then(|()| attr.set_sigmask(&SigSet::empty()))
        .and_then(|()| attr.set_sigdefault(&sigpipe))
        .ctx(|| "posix_spawn attributes")?;
        let path = match view_fd {
            Some(fd) => PathBuf::from(format!("/proc/self/fd/{fd}")),
            None => self.supervisor_exe.clone(),
        };
        let arg = |a: &std::ffi::OsStr| CString::new(a.as_bytes());
        // argv[0] names the binary: the supervisor finds codex-shim next to it.
        let args = [
            self.supervisor_exe.as_os_str(),
            "__supervise".as_ref(),
            "--root".as_ref(),
            self.root.as_os_str(),
            id.unwrap_or("-").as_ref(),
        ]
        .map(arg)
        .into_iter()
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::invalid("root", "the path holds a NUL byte"))?;
        // The environment as it is now (an embedding program may have changed it).
        let env: Vec<CString> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        // A vfork-like spawn (glibc's posix_spawn): no copy of this process's page
        // tables, as a fork (`Command` with `pre_exec`) makes; 0.3-0.5 ms less here.
        let child = posix_spawn(path.as_path(), &actions, &attr, &args, &env)
            .ctx(|| format!("starting the supervisor {}", self.supervisor_exe.display()))?;
        drop((stdin, null));
        drop((w, view));
        crate::trace::phase("start: supervisor spawned");
        Ok(Spawned {
            child: Some(child),
            supervisor: None,
            report: r,
            id_pipe: id_pipe.map(|(_, w)| std::fs::File::from(w)),
            _warm: warm,
        })
    }

    /// [`Engine::spawn_supervisor`] for a container yet to be created, by a fork of this
    /// process (see `forked_start`; the caller checked that it may).
    fn fork_supervisor(&self, stdin: Option<OwnedFd>) -> Result<Spawned> {
        let pipe = |what: &str| {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .ctx(|| format!("creating the {what} pipe"))
        };
        let (r, w) = pipe("status")?;
        let (id_r, id_w) = pipe("id")?;
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .ctx(|| "opening /dev/null")?;
        let [w, id_r, null] = [w, id_r, null.into()].map(above_child_fds);
        let (w, id_r, null) = (w?, id_r?, null?);
        let stdin = stdin.map(above_child_fds).transpose()?;
        let spread = crate::forked_start::Spread::plan();
        // SAFETY: this process has one thread (`can_fork_supervisor`); the child only
        // moves fds and runs the supervisor, and never returns (see
        // `forked_start::forked_supervisor`).
        let child = match unsafe { nix::unistd::fork() }.ctx(|| "forking the supervisor")? {
            nix::unistd::ForkResult::Child => crate::forked_start::forked_supervisor(
                &self.root,
                &self.supervisor_exe,
                stdin.as_ref(),
                &null,
                &w,
                &id_r,
                spread.as_ref(),
            ),
            nix::unistd::ForkResult::Parent { child } => child,
        };
        if let Some(s) = &spread {
            s.move_child(child);
        }
        drop((stdin, null, w, id_r));
        // The child is the supervisor itself (it does not fork to detach: this process
        // is not waited for by it, and never waits for it; when this process exits it
        // is handed to init). Known now, the record names it from its create (a
        // supervisor whose start time cannot be read claims the container instead).
        let supervisor = codex_sys::ProcessId::of(child.as_raw()).ok();
        // After the fork: the child must not start with a second thread's locks.
        let warm = codex_runtime::cgroups::warm::warm_in_thread();
        crate::trace::phase("start: supervisor forked");
        Ok(Spawned {
            child: None,
            supervisor,
            report: r,
            id_pipe: Some(std::fs::File::from(id_w)),
            _warm: warm,
        })
    }

    /// Tells a supervisor started ahead which container is `before`, then reads its
    /// report.
    fn read_report(
        &self,
        mut spawned: Spawned,
        before: &ContainerRecord,
    ) -> Result<ContainerRecord> {
        let id = before.id.as_str();
        if let Some(mut pipe) = spawned.id_pipe.take() {
            // A supervisor that died meanwhile shows as a missing report below.
            let _ = writeln!(pipe, "{id}");
        }
        // The supervisor forks at once and its first process exits: reap it.
        spawned.reap();
        crate::trace::phase("start: first process reaped");
        let mut report = String::new();
        let status = spawned.report.try_clone().ctx(|| "dup")?;
        std::fs::File::from(status)
            .read_to_string(&mut report)
            .ctx(|| "reading the supervisor's report")?;
        crate::trace::phase("start: report read");
        match serde_json::from_str::<Value>(report.trim()) {
            Ok(v) if v["ok"] == true => match self.get(id) {
                // It ran, ended and was removed by its supervisor (`--rm`) before this
                // read: started all the same; its record as it was before the start.
                Err(Error::NotFound { .. }) => Ok(before.clone()),
                other => other,
            },
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

/// `fd` moved to a number above the fds the supervisor is given ([`STATUS_FD`],
/// [`ID_FD`]), close-on-exec. Whatever number the kernel handed out (another thread,
/// such as the warm-up's, may open and close fds meanwhile), the child's `dup2`s onto
/// 3 and 4 then never overwrite a source not yet copied, and never meet a source that
/// is already its target, which `dup2` leaves close-on-exec: the fd would be gone at the
/// exec. Found after a 1000-container fill (4 CLIs at once) aborted in one of six runs
/// with four containers left running; the race was read from the code (an fd the
/// warm-up thread held while the status pipe was made, closed before the id pipe),
/// not reproduced on demand.
fn above_child_fds(fd: OwnedFd) -> Result<OwnedFd> {
    const FIRST_FREE: i32 = ID_FD + 1;
    let raw = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(FIRST_FREE))
        .ctx(|| "moving a supervisor fd")?;
    // SAFETY: F_DUPFD_CLOEXEC just returned this new fd, owned by nothing else.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) })
}

/// Created or ended: what a start accepts.
fn check_startable(rec: &ContainerRecord) -> Result<()> {
    match rec.status {
        ContainerStatus::Created
        | ContainerStatus::Exited
        | ContainerStatus::Stopped
        | ContainerStatus::Failed => Ok(()),
        s => Err(Error::wrong_state(
            &rec.name,
            s,
            "start needs it created or exited",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_fd_is_above_the_childs_fds_and_close_on_exec() {
        let (r, _w) = nix::unistd::pipe2(nix::fcntl::OFlag::empty()).unwrap();
        let moved = above_child_fds(r).unwrap();
        assert!(moved.as_raw_fd() > ID_FD, "fd {}", moved.as_raw_fd());
        let flags = nix::fcntl::fcntl(&moved, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "not close-on-exec");
    }
}
