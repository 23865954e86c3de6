//! `create`: everything up to a container whose init waits for `start`.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::LinuxNamespaceType;

use super::{Container, Runtime};
use crate::cgroups::{apply_resources, Cgroups};
use crate::error::{Context, Error, Result};
use crate::hooks::{self, HookKind};
use crate::process::init::{init_main, InitArgs, StartSignal};
use crate::process::sync::{Channel, Msg};
use crate::process::{self, NamespacePlan};
use crate::spec::{self, Bundle};
use crate::state::{now_rfc3339, ContainerState, START_SOCKET};

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// Writes the state record without fsync, for a caller that discards the container
    /// after a host crash anyway (the engine's `run --rm`): a crash may lose the record
    /// or leave it empty.
    pub unsynced_state: bool,
}

/// Undoes a half-made container unless disarmed: kills its process, removes its
/// cgroups and its state directory.
struct Rollback {
    dir: PathBuf,
    cgroups: Option<Cgroups>,
    pid: Option<i32>,
    armed: bool,
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        if let Some(cg) = &self.cgroups {
            let _ = cg.signal_all(libc::SIGKILL);
            let _ = cg.remove();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A created container whose init is the caller's child, with the sync channel still
/// open (foreground `run` starts it through the channel).
pub(super) struct Created {
    pub container: Container,
    pub channel: Channel,
}

impl Runtime {
    /// `create`: the container exists, its init waits on the start socket.
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<Container> {
        self.create_inner(id, opts, Bundle::load(&opts.bundle)?, None, None)
            .map(|c| c.container)
    }

    /// `create` with `console`, a connected unix socket, in place of
    /// `--console-socket`: with `process.terminal` the init sends the pty master over it
    /// (receive it with [`crate::terminal::receive_master`] on the other end). For a
    /// library caller that keeps the master itself and has no socket path to offer.
    pub fn create_with_console(
        &self,
        id: &str,
        opts: &CreateOptions,
        console: OwnedFd,
    ) -> Result<Container> {
        self.create_inner(id, opts, Bundle::load(&opts.bundle)?, None, Some(console))
            .map(|c| c.container)
    }

    /// `bundle`: `opts.bundle` loaded (parsed and checked) by the caller. `foreground`:
    /// the caller starts the init over the returned channel (`op` names the operation
    /// in a refusal).
    pub(super) fn create_inner(
        &self,
        id: &str,
        opts: &CreateOptions,
        bundle: Bundle,
        foreground: Option<&'static str>,
        own_console: Option<OwnedFd>,
    ) -> Result<Created> {
        let trampoline = match foreground {
            Some(op) => process::ensure_safe_to_run(op, &bundle.spec, opts.preserve_fds)?,
            None => {
                process::ensure_safe_to_fork("create")?;
                None
            }
        };
        let foreground = foreground.is_some();
        let dir = self.container_dir(id)?;
        // Opens a trace file before the fork, for the init's lines.
        codex_sys::trace::enabled();
        let spec = &bundle.spec;
        codex_sys::trace::phase("rt: bundle loaded");
        self.warn_unraisable_ambient(spec)?;
        if !spec::has_namespace(spec, LinuxNamespaceType::Mount) {
            // Refused before anything is made (the init checks again).
            crate::rootfs::shared::check(spec)?;
        }
        self.ensure_root()?;
        // Before anything is made, and before the fork: the init pivots into the
        // container, out of reach of the cache under the state root. A bad profile fails
        // `create` here.
        let seccomp = self.prepare_seccomp(spec.linux().as_ref())?;
        codex_sys::trace::phase("rt: seccomp prepared");
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(id.into()))
            }
            Err(e) => return Err(e).ctx(|| format!("creating {}", dir.display())),
        }
        let mut rollback = Rollback {
            dir: dir.clone(),
            cgroups: None,
            pid: None,
            armed: true,
        };

        let linux = spec.linux().as_ref();
        let mut cgroups = Cgroups::resolve(linux.and_then(|l| l.cgroups_path().as_deref()), id)?;
        let resources = linux.and_then(|l| l.resources().as_ref());
        cgroups.create(&crate::cgroups::needed_controllers(resources))?;
        rollback.cgroups = Some(cgroups.clone());
        if let Some(res) = linux.and_then(|l| l.resources().as_ref()) {
            let devices = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
            apply_resources(&cgroups, res, &devices, true)?;
        }
        codex_sys::trace::phase("rt: cgroups made");

        // A record of the create in progress: if this process is killed, `state` says
        // stopped and `delete` finds the cgroups to remove.
        let me = std::process::id() as i32;
        let creating = ContainerState {
            version: 1,
            id: id.to_string(),
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            pid: 0,
            pid_start_time: 0,
            created: now_rfc3339(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            cgroups: cgroups.clone(),
            config: spec.clone(),
            owner: String::new(),
            creator: crate::sys::process_start_time(me).map(|t| (me, t)),
            init_exe_until_exec: None,
        };
        creating.save_unsynced(&dir)?;

        let mut plan = namespace_plan(spec)?;
        plan.into_cgroup = cgroups.v2_only_dir()?;
        let dir_fd: OwnedFd = crate::rootfs::mount::open_path(&dir)
            .ctx(|| "opening the state directory")?
            .into();
        let start = if foreground {
            StartSignal::Channel
        } else {
            let path = PathBuf::from(format!(
                "/proc/self/fd/{}/{START_SOCKET}",
                std::os::fd::AsRawFd::as_raw_fd(&dir_fd)
            ));
            let listener = Channel::listen(&path).ctx(|| "creating the start socket")?;
            StartSignal::Socket {
                listener,
                state_dir: dir_fd.try_clone().ctx(|| "dup")?,
            }
        };
        let console = match (&opts.console_socket, own_console) {
            (Some(p), _) => Some(connect_console(p)?),
            (None, own) => own,
        };
        let terminal = spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        if terminal && console.is_none() {
            return Err(Error::config(
                "process.terminal",
                "a terminal needs --console-socket",
            ));
        }
        let init_args = InitArgs {
            bundle: &bundle,
            cgroups: &cgroups,
            start,
            console,
            no_pivot: opts.no_pivot,
            new_keyring: !opts.no_new_keyring,
            preserve_fds: opts.preserve_fds,
            runtime_pid: std::process::id() as i32,
            id,
            seccomp: seccomp.as_ref(),
            trampoline: trampoline.as_ref(),
        };
        let (pid, channel) = process::spawn(
            plan,
            |stage1| cgroups.add(stage1),
            |ch| init_main(init_args, ch),
        )?;
        rollback.pid = Some(pid);
        codex_sys::trace::phase("rt: init placed");

        if let Some(adj) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
            let f = format!("/proc/{pid}/oom_score_adj");
            std::fs::write(&f, adj.to_string())
                .map_err(|e| Error::config("process.oomScoreAdj", format!("writing {f}: {e}")))?;
        }
        let pid_start_time = crate::sys::process_start_time(pid)
            .ok_or_else(|| Error::Container("the container process exited during setup".into()))?;
        let state = ContainerState {
            version: 1,
            id: id.to_string(),
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            pid,
            pid_start_time,
            created: now_rfc3339(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            cgroups: cgroups.clone(),
            config: spec.clone(),
            owner: String::new(),
            creator: None,
            init_exe_until_exec: trampoline
                .as_ref()
                .and_then(|_| crate::selfclone::file_id("/proc/self/exe")),
        };

        loop {
            let (msg, fd) = match channel
                .recv_with_fd()
                .ctx(|| "waiting for the container to be created")?
            {
                Some((m, fd)) => (Some(m), fd),
                None => (None, None),
            };
            match msg {
                Some(Msg::SeccompNotifyFd) => {
                    let mut st = state.oci_state(&dir);
                    st["status"] = "creating".into();
                    st["pid"] = pid.into();
                    forward_notify_fd(spec, pid, st, fd)?;
                }
                Some(Msg::RuntimeHooks) => {
                    let mut st = state.oci_state(&dir);
                    st["status"] = "creating".into();
                    st["pid"] = pid.into();
                    let hooks = spec.hooks().as_ref();
                    let res = hooks::run(HookKind::Prestart, hooks, &st)
                        .and_then(|()| hooks::run(HookKind::CreateRuntime, hooks, &st));
                    if let Err(e) = res {
                        let _ = channel.send(&Msg::Error(e.to_string()));
                        return Err(e);
                    }
                    channel
                        .send(&Msg::HooksDone)
                        .ctx(|| "resuming the container")?;
                }
                Some(Msg::Created) => {
                    codex_sys::trace::phase("rt: init reported created");
                    break;
                }
                Some(m @ (Msg::Error(_) | Msg::ExecFailed { .. })) => {
                    return Err(m
                        .into_error()
                        .unwrap_or_else(|| Error::Other("failed".into())))
                }
                Some(m) => {
                    return Err(Error::Other(format!(
                        "unexpected message from the container: {m:?}"
                    )))
                }
                None => {
                    return Err(Error::Container(
                        "the container process exited during setup".into(),
                    ))
                }
            }
        }

        if foreground || opts.unsynced_state {
            // Renamed into place; an attached create syncs it while the init execs
            // (`start_over_channel`), unless it is unsynced or a foreground `run`'s.
            state.save_unsynced(&dir)?;
        } else {
            state.save(&dir)?;
        }
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, pid)?;
        }
        // Recorded: the init may now outlive this process (it waits for this message,
        // and exits if this process dies first).
        channel
            .send(&Msg::Committed)
            .ctx(|| "telling the container it is recorded")?;
        rollback.armed = false;
        codex_sys::trace::phase("rt: recorded");
        Ok(Created {
            container: Container { state, dir },
            channel,
        })
    }
}

/// Hands the notify fd the container's process sent (`fd`) to the agent at
/// `linux.seccomp.listenerPath`, with the container process state for `pid`; our copy
/// is closed on return. Any failure fails the operation (the spec's "MUST generate an
/// error"), and the caller's cleanup kills the process.
pub(super) fn forward_notify_fd(
    spec: &oci_spec::runtime::Spec,
    pid: i32,
    state: serde_json::Value,
    fd: Option<OwnedFd>,
) -> Result<()> {
    let fd = fd.ok_or_else(|| {
        Error::Container("the container announced a seccomp notify fd but sent none".into())
    })?;
    let seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .ok_or_else(|| Error::Container("a seccomp notify fd without linux.seccomp".into()))?;
    // The config the container's process compiled: it only notifies with a listener.
    let listener = crate::seccomp_notify::listener(seccomp, true)?
        .ok_or_else(|| Error::config("linux.seccomp.listenerPath", "missing"))?;
    let st = crate::seccomp_notify::process_state(pid, listener.metadata.as_deref(), state);
    crate::seccomp_notify::send(&listener, &st, std::os::fd::AsFd::as_fd(&fd))
}

pub(super) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .ctx(|| "current directory")?
            .join(path)
    };
    // 0644 as runc's: tools that read it need not be root. The temp file is O_EXCL and
    // O_NOFOLLOW and replaces whatever is at the path, so a symlink an attacker placed
    // there is never written through.
    codex_sys::AtomicFile::new(&path)
        .mode(0o644)
        .write(pid.to_string().as_bytes())
        .ctx(|| format!("writing the pid file {}", path.display()))
}

pub(super) fn connect_console(path: &Path) -> Result<OwnedFd> {
    let s = std::os::unix::net::UnixStream::connect(path)
        .ctx(|| format!("connecting to the console socket {}", path.display()))?;
    Ok(s.into())
}

/// Which namespaces stage 1 joins and creates, from `linux.namespaces`.
impl Runtime {
    /// Ambient capabilities that are not both permitted and inheritable cannot be
    /// raised; the process runs without them and the caller is told (runc's way).
    fn warn_unraisable_ambient(&self, spec: &oci_spec::runtime::Spec) -> Result<()> {
        let caps = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref());
        let Some(caps) = caps else { return Ok(()) };
        let names = crate::security::unraisable_ambient_names(caps)?;
        if !names.is_empty() {
            self.warn(&format!(
                "process.capabilities.ambient: {} not raised: an ambient capability must also be permitted and inheritable",
                names.join(", ")
            ));
        }
        Ok(())
    }
}

fn namespace_plan(spec: &oci_spec::runtime::Spec) -> Result<NamespacePlan> {
    let mut plan = NamespacePlan {
        join: Vec::new(),
        create: CloneFlags::empty(),
        new_user: false,
        uid_mappings: Vec::new(),
        gid_mappings: Vec::new(),
        time_offsets: Vec::new(),
        initial_cpus: None,
        into_cgroup: None,
    };
    for (i, ns) in spec::namespaces(spec).enumerate() {
        match ns.path() {
            Some(p) => {
                let fd = std::fs::File::open(p).map_err(|e| {
                    Error::config(
                        format!("linux.namespaces[{i}].path"),
                        format!("{}: {e}", p.display()),
                    )
                })?;
                plan.join.push((ns.typ(), fd.into()));
            }
            None if ns.typ() == LinuxNamespaceType::User => plan.new_user = true,
            // A new cgroup namespace must start at the container's cgroup: the init
            // makes it once it has been placed there.
            None if ns.typ() == LinuxNamespaceType::Cgroup => {}
            None => plan.create |= process::clone_flag(ns.typ()),
        }
    }
    if let Some(linux) = spec.linux() {
        plan.uid_mappings = linux.uid_mappings().clone().unwrap_or_default();
        plan.gid_mappings = linux.gid_mappings().clone().unwrap_or_default();
        for (clock, off) in linux.time_offsets().iter().flatten() {
            plan.time_offsets.push((
                clock.clone(),
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0),
            ));
        }
    }
    Ok(plan)
}
