//! `exec`: a new process inside a running container: its namespaces, its cgroup,
//! and the privileges its process spec asks for.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::console::{receive_master, ConsoleProxy};
use super::create::{connect_console, write_pid_file};
use super::foreground::SignalGuard;
use super::Runtime;
use crate::error::{Context, Error, Result};
use crate::process::program::{self, Program};
use crate::process::sync::{Channel, Msg};
use crate::process::{self, NamespacePlan};
use crate::state::Status;
use crate::terminal;

/// How to exec a process into a container; build it with `..Default::default()` so that
/// options added later do not break callers.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub process: Process,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// The process's stdin is /dev/null instead of the caller's (Docker's `exec`
    /// without `-i`). With a terminal, the caller's input is not forwarded.
    pub no_stdin: bool,
    /// Exec into a paused container too (the process then starts frozen).
    pub ignore_paused: bool,
    /// `--cgroup` values: existing sub-cgroups to place the process in
    /// ([`crate::cgroups::Cgroups::with_sub_cgroups`]).
    pub sub_cgroups: Vec<String>,
}

/// How an exec ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOutcome {
    /// `detach`: the process runs; this is its host pid.
    Detached(i32),
    /// The process's exit code (128+N when killed by signal N).
    Exited(i32),
}

fn ns_file(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

impl Runtime {
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<ExecOutcome> {
        process::ensure_safe_to_fork("exec")?;
        let c = self.load(id)?;
        match c.status() {
            Status::Created | Status::Running => {}
            Status::Paused if opts.ignore_paused => {}
            Status::Paused => {
                return Err(c.wrong_state(
                    "exec",
                    "needs a running container (--ignore-paused execs into a paused one, frozen)",
                ))
            }
            _ => return Err(c.wrong_state("exec", "needs a created or running container")),
        }
        let placement = c
            .state
            .cgroups
            .with_sub_cgroups("--cgroup", &opts.sub_cgroups)?;
        if opts.process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::config("process.args", "must name a program"));
        }
        let pid = c.state.pid;
        let mut join = Vec::new();
        for ns in crate::spec::namespaces(&c.state.config) {
            let path = format!("/proc/{pid}/ns/{}", ns_file(ns.typ()));
            let fd: OwnedFd = std::fs::File::open(&path)
                .ctx(|| format!("opening {path}"))?
                .into();
            join.push((ns.typ(), fd));
        }
        // The fds are the init's only if it is still the same process.
        if !c.state.init_alive() {
            return Err(c.wrong_state("exec", "needs a running container"));
        }
        // An init that has not exec'd its program through the trampoline still runs a
        // writable runtime binary, which the process joined now could reach through
        // /proc/1/exe (see crate::trampoline). It leaves it within a millisecond.
        if let Some(binary) = c.state.init_exe_until_exec {
            let now = crate::selfclone::file_id(&format!("/proc/{pid}/exe"));
            if now.is_none_or(|f| f == binary) {
                return Err(Error::Container(format!(
                    "exec into {id}: the container is still starting (its init has not run its program yet); retry once it has"
                )));
            }
        }
        let plan = NamespacePlan {
            join,
            create: CloneFlags::empty(),
            new_user: false,
            uid_mappings: Vec::new(),
            gid_mappings: Vec::new(),
            time_offsets: Vec::new(),
            initial_cpus: affinity(&opts.process, |a| a.initial().clone()),
            into_cgroup: None,
        };
        let terminal = opts.process.terminal().unwrap_or(false);
        // A foreground terminal without --console-socket: this process is the console.
        let (console, proxy_socket) = match &opts.console_socket {
            Some(p) => (Some(connect_console(p)?), None),
            None if terminal && !opts.detach => {
                let (a, b) = std::os::unix::net::UnixStream::pair().ctx(|| "console socketpair")?;
                (Some(OwnedFd::from(b)), Some(OwnedFd::from(a)))
            }
            None if terminal => {
                return Err(Error::config(
                    "process.terminal",
                    "a detached terminal needs --console-socket",
                ))
            }
            None => (None, None),
        };
        let null_stdin = if opts.no_stdin && !terminal {
            Some(OwnedFd::from(
                std::fs::File::open("/dev/null").ctx(|| "opening /dev/null")?,
            ))
        } else {
            None
        };
        let signals = if opts.detach {
            None
        } else {
            Some(SignalGuard::block()?)
        };
        let userns = crate::spec::has_namespace(&c.state.config, LinuxNamespaceType::User);
        let linux = c.state.config.linux().as_ref();
        // In the runtime, where the state root (and the cache in it) is reachable.
        let seccomp = self.prepare_seccomp(linux)?;
        let seccomp = seccomp.as_ref();
        let runtime_pid = std::process::id() as i32;
        let (child, ch) = process::spawn(
            plan,
            |pid| {
                test_hook_delay();
                placement.add(pid)
            },
            |ch| {
                exec_main(
                    &opts.process,
                    ExecSecurity {
                        linux,
                        userns,
                        seccomp,
                    },
                    ExecStdio {
                        console,
                        null_stdin,
                    },
                    opts.preserve_fds,
                    runtime_pid,
                    ch,
                )
            },
        )?;
        let kill_child = || {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
        };
        let mut first = ch.recv_with_fd();
        if let Ok(Some((Msg::SeccompNotifyFd, fd))) = first {
            // The process loaded a filter that notifies: its agent gets the fd before
            // the program runs (the process waits for SeccompForwarded).
            let forwarded = super::create::forward_notify_fd(
                &c.state.config,
                child,
                c.state.oci_state(&c.dir),
                fd,
            )
            .and_then(|()| {
                ch.send(&Msg::SeccompForwarded)
                    .ctx(|| "resuming the exec'd process")
            });
            if let Err(e) = forwarded {
                kill_child();
                return Err(e);
            }
            first = ch.recv_with_fd();
        }
        match first.map(|o| o.map(|(m, _)| m)) {
            Ok(None) => {}
            Ok(Some(m @ (Msg::Error(_) | Msg::ExecFailed { .. }))) => {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
                return Err(m
                    .into_error()
                    .unwrap_or_else(|| Error::Other("failed".into())));
            }
            Ok(Some(m)) => {
                return Err(Error::Other(format!(
                    "unexpected message from the exec'd process: {m:?}"
                )))
            }
            Err(e) => return Err(e).ctx(|| "waiting for the exec'd process"),
        }
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, child)?;
        }
        let mut proxy = match &proxy_socket {
            Some(sock) => {
                let proxy = ConsoleProxy::new(receive_master(sock.as_fd())?);
                Some(if opts.no_stdin {
                    proxy.without_input()
                } else {
                    proxy
                })
            }
            None => None,
        };
        match signals {
            None => Ok(ExecOutcome::Detached(child)),
            Some(s) => s
                .wait_forwarding(child, proxy.as_mut())
                .map(ExecOutcome::Exited),
        }
    }
}

fn affinity(
    p: &Process,
    pick: impl Fn(&oci_spec::runtime::ExecCPUAffinity) -> Option<String>,
) -> Option<String> {
    p.exec_cpu_affinity()
        .as_ref()
        .and_then(pick)
        .filter(|c| !c.is_empty())
}

/// Where the exec'd process's terminal or stdin come from.
struct ExecStdio {
    /// A console socket to send a new pty's master to.
    console: Option<OwnedFd>,
    /// /dev/null, to become stdin.
    null_stdin: Option<OwnedFd>,
}

/// What the exec'd process is confined by: the container's `linux` section, whether it
/// has a user namespace, and its seccomp filter (prepared by the runtime before the fork).
struct ExecSecurity<'a> {
    linux: Option<&'a oci_spec::runtime::Linux>,
    userns: bool,
    seccomp: Option<&'a crate::seccomp::Prepared>,
}

fn exec_main(
    p: &Process,
    security: ExecSecurity,
    stdio: ExecStdio,
    preserve_fds: u32,
    runtime_pid: i32,
    ch: Channel,
) -> std::convert::Infallible {
    let ExecSecurity {
        linux,
        userns,
        seccomp,
    } = security;
    let ExecStdio {
        console,
        null_stdin,
    } = stdio;
    let run = || -> Result<Error> {
        process::die_with_parent(runtime_pid)?;
        ch.wait_for(&Msg::Placed, "waiting for cgroup placement")
            .map_err(Error::Container)?;
        // Not dumpable since stage 1's first step (process::spawn), until the execve.
        if let Some(console) = &console {
            nix::unistd::setsid().ctx(|| "setsid")?;
            let root =
                crate::rootfs::mount::open_path(std::path::Path::new("/")).ctx(|| "opening /")?;
            let pty = terminal::open_pty(root.as_fd())?;
            if let Some(size) = p.console_size() {
                terminal::set_size(&pty, size.height(), size.width())?;
            }
            terminal::send_master(console.as_fd(), &pty)?;
            terminal::make_controlling(pty.slave.as_fd())?;
        }
        drop(console);
        if let Some(null) = null_stdin {
            nix::unistd::dup2_stdin(&null).ctx(|| "pointing stdin at /dev/null")?;
        }
        crate::security::set_rlimits(p.rlimits().as_deref().unwrap_or(&[]))?;
        let program = Program::find(p)?;
        program::drop_privileges(p, linux, userns, preserve_fds, &ch, None, seccomp)?;
        if seccomp.is_some_and(|f| f.notifies()) {
            // The runtime sends the fd to the agent; a failure there must stop the
            // program from running unobserved.
            ch.wait_for(&Msg::SeccompForwarded, "waiting for the seccomp agent")
                .map_err(Error::Container)?;
        }
        if let Some(cpus) = affinity(p, |a| a.cpu_affinity_final().clone()) {
            crate::security::set_affinity(&cpus, "process.execCPUAffinity.final")?;
        }
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
        Ok(program.exec())
    };
    let err = match run() {
        Ok(e) | Err(e) => e,
    };
    let _ = ch.send(&Msg::failure(&err));
    // SAFETY: _exit in a forked child.
    unsafe { libc::_exit(127) }
}

/// Debug builds only: `CODEX_TEST_EXEC_DELAY_MS` holds the exec'd process in its set-up
/// window (before its cgroup placement) so a test can try to reach it there.
fn test_hook_delay() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("CODEX_TEST_EXEC_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(10_000)));
    }
}
