//! Forking the container's processes. Both `create` and `exec` go through `spawn`:
//!
//! ```text
//!  runtime ──fork──> stage 1: setns(paths), unshare(user) [maps written by runtime],
//!     │                       unshare(the rest), clone(CLONE_PARENT) ──> container process
//!     │ <── InitPid(pid) ──────┘ (exits)                                  │
//!     │ cgroup.procs <- pid (slow: an RCU grace period)     rootfs setup  │
//!     │ ── Placed ──────────────────────────────────────────────────────> │
//!     │ <────────────────────── RuntimeHooks / Created / Error ───────────┘
//! ```
//!
//! Without namespaces to join, a user namespace or time offsets, there is no stage 1:
//! the container process is cloned straight into its new namespaces (`spawn_direct`).
//!
//! Stage 1 exists because a new PID namespace (or one joined by path) only applies to
//! children, and a user namespace must exist before the namespaces it owns.
//! `CLONE_PARENT` makes the container process the runtime's own child, so a
//! foreground `run` or `exec` can wait for it and a subreaper adopts it after `create`.
//!
//! The first write to a `cgroup.procs` file waits for an RCU grace period (several ms
//! on an idle machine), so the runtime places the container process in its cgroups
//! while that process builds its rootfs; it waits for `Placed` only before what
//! needs the cgroup (a new cgroup namespace, the program itself).

pub mod init;
pub mod program;
pub mod sync;

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType};

use crate::error::{Context, Error, Result};
use sync::{Channel, Msg};

/// What stage 1 does before forking the container process.
pub struct NamespacePlan {
    /// Namespaces to join, as fds opened by the runtime (user first is handled here).
    pub join: Vec<(LinuxNamespaceType, OwnedFd)>,
    /// Namespaces to create (without `CLONE_NEWUSER`, which `new_user` says).
    pub create: CloneFlags,
    pub new_user: bool,
    pub uid_mappings: Vec<LinuxIdMapping>,
    pub gid_mappings: Vec<LinuxIdMapping>,
    /// `linux.timeOffsets` for a new time namespace: (clock, secs, nanosecs).
    pub time_offsets: Vec<(String, i64, u32)>,
    /// `execCPUAffinity.initial` (exec only): stage 1 pins itself before joining.
    pub initial_cpus: Option<String>,
    /// The container's cgroup on a pure cgroup v2 host, to clone the process straight
    /// into (`CLONE_INTO_CGROUP`) instead of moving it there by a `cgroup.procs` write.
    pub into_cgroup: Option<OwnedFd>,
}

impl NamespacePlan {
    /// True when stage 1 has nothing to do but create namespaces, which the clone of
    /// the container process itself can do.
    fn is_direct(&self) -> bool {
        self.join.is_empty()
            && !self.new_user
            && self.time_offsets.is_empty()
            && self.initial_cpus.is_none()
            && !self.create.contains(CloneFlags::CLONE_NEWUSER)
            // clone(2) reads this bit as part of the exit signal: unshare only.
            && !self.create.contains(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
    }
}

pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The order namespaces are joined in: the user namespace first (it owns the others),
/// the mount namespace last (it changes how paths resolve).
fn join_rank(t: LinuxNamespaceType) -> u8 {
    match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Ipc => 1,
        LinuxNamespaceType::Uts => 2,
        LinuxNamespaceType::Network => 3,
        LinuxNamespaceType::Pid => 4,
        LinuxNamespaceType::Cgroup => 5,
        LinuxNamespaceType::Time => 6,
        LinuxNamespaceType::Mount => 7,
    }
}

/// Refuses a multi-threaded caller (see [`Error::MultiThreaded`]) before anything is
/// made: a fork from it works until the day another thread holds the allocator's lock.
pub fn ensure_single_threaded(op: &'static str) -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")
        .ctx(|| "reading /proc/self/status to count the caller's threads")?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or_else(|| Error::Other("/proc/self/status has no Threads line".into()))?;
    if threads > 1 {
        return Err(Error::MultiThreaded { op, threads });
    }
    Ok(())
}

/// What every entry point that forks checks first: one thread (see
/// [`ensure_single_threaded`]) and a binary the container cannot write (see
/// [`crate::selfclone`]).
pub fn ensure_safe_to_fork(op: &'static str) -> Result<()> {
    ensure_single_threaded(op)?;
    if !crate::selfclone::running_protected() {
        return Err(unprotected(op, None));
    }
    Ok(())
}

/// [`ensure_safe_to_fork`] for a foreground `run` or an attached create (`op`), which
/// may also run from a writable binary when its init qualifies for the exec trampoline
/// (see [`crate::trampoline`]): then the trampoline, made now, is returned.
pub fn ensure_safe_to_run(
    op: &'static str,
    spec: &oci_spec::runtime::Spec,
    preserve_fds: u32,
) -> Result<Option<crate::trampoline::Trampoline>> {
    ensure_single_threaded(op)?;
    if crate::selfclone::running_protected() {
        return Ok(None);
    }
    if let Some(why) = crate::trampoline::unsupported(spec, preserve_fds) {
        return Err(unprotected(op, Some(why.to_string())));
    }
    crate::trampoline::Trampoline::new()
        .map(Some)
        .map_err(|e| unprotected(op, Some(e.to_string())))
}

fn unprotected(op: &'static str, why: Option<String>) -> Error {
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("unknown: {e}"));
    let why = why.map_or(String::new(), |w| format!(" (no exec trampoline: {w})"));
    Error::Unprotected { op, exe, why }
}

/// Forks stage 1 and drives it until the container process exists. `place` runs in
/// the runtime with the container process's pid (to put it in the container's
/// cgroups), after which it is sent `Placed`; `container` runs in the container
/// process and never returns.
pub fn spawn(
    mut plan: NamespacePlan,
    place: impl FnOnce(i32) -> Result<()>,
    container: impl FnOnce(Channel) -> std::convert::Infallible,
) -> Result<(i32, Channel)> {
    let (parent_end, child_end) = Channel::pair().ctx(|| "creating the sync socketpair")?;
    plan.join.sort_by_key(|(t, _)| join_rank(*t));
    // The runtime's own procfs, opened before stage 1 joins a mount namespace (by path)
    // whose /proc would be the container's to fake.
    let host_proc = if plan.time_offsets.is_empty() {
        None
    } else {
        Some(open_host_proc()?)
    };
    let parent_pid = std::process::id() as i32;
    if plan.is_direct() {
        return spawn_direct(&plan, parent_end, child_end, parent_pid, place, container);
    }
    // SAFETY: the runtime is single-threaded when it creates containers (see DESIGN.md).
    let stage1 = unsafe { crate::sys::fork_with_flags(0) }
        .ctx(|| "forking the container's first process")?;
    if stage1 == 0 {
        // Before anything else, and before any namespace is joined: a process that is
        // not dumpable cannot be ptrace-attached or have its /proc/PID/mem, fds or exe
        // opened by the container's processes, which could otherwise reach this copy of
        // the runtime (its memory, its host fds) while it sets up. Every fork below
        // inherits it; only the execve of the user's program makes the process dumpable
        // again.
        crate::sys::set_dumpable(false);
        drop(parent_end);
        let staged = stage1_main(&plan, host_proc.as_ref(), &child_end, parent_pid);
        // The container process must not hold the host's /proc, even close-on-exec.
        drop(host_proc);
        let forked = staged.and_then(|()| {
            // SAFETY: still single-threaded; the child becomes our parent's child.
            unsafe { crate::sys::fork_with_flags(libc::CLONE_PARENT) }
                .ctx(|| "forking the container process")
        });
        let code = match forked {
            #[allow(unreachable_code)]
            Ok(0) => absurd(container(child_end)),
            Ok(pid) => child_end.send(&Msg::InitPid(pid)).map_or(1, |_| 0),
            Err(e) => {
                let _ = child_end.send(&Msg::Error(e.to_string()));
                1
            }
        };
        // SAFETY: _exit skips destructors and atexit handlers that belong to the parent.
        unsafe { libc::_exit(code) };
    }
    drop(child_end);
    drop(host_proc);
    let reap = |_: ()| {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(stage1), None);
    };
    let result = drive_stage1(stage1, &plan, &parent_end);
    if result.is_err() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(stage1),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    reap(());
    let pid = result?;
    codex_sys::trace::phase("rt: init forked");
    place_and_release(pid, place, parent_end)
}

/// The common case without stage 1 (nothing to join, no user namespace, no time
/// offsets): one clone makes the container process in its new namespaces, as the
/// runtime's child, the way stage 1's `CLONE_PARENT` fork would have. Saves a fork,
/// an exit and a round trip on the channel (measured: 0.2 ms of CPU per `run`).
fn spawn_direct(
    plan: &NamespacePlan,
    parent_end: Channel,
    child_end: Channel,
    parent_pid: i32,
    place: impl FnOnce(i32) -> Result<()>,
    container: impl FnOnce(Channel) -> std::convert::Infallible,
) -> Result<(i32, Channel)> {
    // A move by a `cgroup.procs` write takes the kernel's cgroup migration lock for
    // writing, which first waits an RCU grace period (4 to 12 ms on an idle host); a
    // process cloned into its cgroup is never moved. Where the kernel cannot (before
    // 5.7) the placement below writes as before.
    let into = plan.into_cgroup.as_ref().and_then(|cg| {
        // SAFETY: as for fork_with_flags below.
        match unsafe { crate::sys::clone_into_cgroup(plan.create.bits(), cg.as_fd()) } {
            Ok(pid) => Some(Ok(pid)),
            Err(e) if crate::sys::clone3_unsupported(&e) => None,
            Err(e) => Some(Err(e)),
        }
    });
    let placed = into.is_some();
    let pid = match into {
        Some(r) => r,
        // SAFETY: the runtime is single-threaded when it creates containers (see
        // DESIGN.md).
        None => unsafe { crate::sys::fork_with_flags(plan.create.bits()) },
    }
    .ctx(|| {
        format!(
            "creating the container process in namespaces {:?}",
            plan.create
        )
    })?;
    if pid == 0 {
        // As stage 1 does first (see `spawn`): nothing may ptrace this copy of the
        // runtime or open its exe and fds. Its namespaces are new and empty, so no
        // container process exists yet that could have done so before this line.
        crate::sys::set_dumpable(false);
        drop(parent_end);
        let code = match die_with_parent(parent_pid) {
            #[allow(unreachable_code)]
            Ok(()) => absurd(container(child_end)),
            Err(e) => {
                let _ = child_end.send(&Msg::Error(e.to_string()));
                1
            }
        };
        // SAFETY: _exit skips destructors and atexit handlers that belong to the parent.
        unsafe { libc::_exit(code) };
    }
    drop(child_end);
    codex_sys::trace::phase(if placed {
        "rt: init cloned into its cgroup"
    } else {
        "rt: init forked"
    });
    if placed {
        return place_and_release(pid, |_| Ok(()), parent_end);
    }
    place_and_release(pid, place, parent_end)
}

/// Puts the container process `pid` in its cgroups (`place`) and sends it `Placed`;
/// on failure kills and reaps it.
fn place_and_release(
    pid: i32,
    place: impl FnOnce(i32) -> Result<()>,
    parent_end: Channel,
) -> Result<(i32, Channel)> {
    let placed = place(pid).and_then(|()| {
        parent_end.send(&Msg::Placed).map_err(|e| {
            // The process died first: its own report says why.
            match parent_end.recv() {
                Ok(Some(m @ (Msg::Error(_) | Msg::ExecFailed { .. }))) => m
                    .into_error()
                    .unwrap_or_else(|| Error::Other("failed".into())),
                _ => Error::Io {
                    context: "releasing the container process".into(),
                    cause: e,
                },
            }
        })
    });
    if let Err(e) = placed {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        return Err(e);
    }
    Ok((pid, parent_end))
}

fn absurd(never: std::convert::Infallible) -> i32 {
    match never {}
}

fn drive_stage1(stage1: i32, plan: &NamespacePlan, ch: &Channel) -> Result<i32> {
    loop {
        match ch.recv().ctx(|| "waiting for the container process")? {
            Some(Msg::UsernsReady) => {
                write_id_maps(stage1, plan)?;
                ch.send(&Msg::MapsWritten)
                    .ctx(|| "confirming the id maps")?;
            }
            Some(Msg::InitPid(pid)) => return Ok(pid),
            Some(m @ (Msg::Error(_) | Msg::ExecFailed { .. })) => {
                return Err(m
                    .into_error()
                    .unwrap_or_else(|| Error::Other("failed".into())))
            }
            Some(m) => {
                return Err(Error::Other(format!(
                    "unexpected message from the first process: {m:?}"
                )))
            }
            None => {
                return Err(Error::Container(
                    "the container's first process exited during setup".into(),
                ))
            }
        }
    }
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

fn write_id_maps(pid: i32, plan: &NamespacePlan) -> Result<()> {
    let uid = format!("/proc/{pid}/uid_map");
    std::fs::write(&uid, map_text(&plan.uid_mappings))
        .map_err(|e| Error::config("linux.uidMappings", format!("writing {uid}: {e}")))?;
    let gid = format!("/proc/{pid}/gid_map");
    std::fs::write(&gid, map_text(&plan.gid_mappings))
        .map_err(|e| Error::config("linux.gidMappings", format!("writing {gid}: {e}")))?;
    Ok(())
}

/// Kills the calling process when the runtime dies during setup, so a crashed `create`
/// never leaves a half-made container behind.
pub fn die_with_parent(parent: i32) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // In a new PID namespace the parent is outside it and getppid() says 0; the next
    // message on the sync channel then tells whether the runtime is still there.
    let ppid = nix::unistd::getppid().as_raw();
    if ppid != 0 && ppid != parent {
        return Err(Error::Other("the runtime exited during setup".into()));
    }
    Ok(())
}

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

fn open_host_proc() -> Result<OwnedFd> {
    let proc: OwnedFd = crate::rootfs::mount::open_path(std::path::Path::new("/proc"))
        .ctx(|| "opening the host's /proc")?
        .into();
    let st = nix::sys::statfs::fstatfs(proc.as_fd()).ctx(|| "checking the host's /proc")?;
    if st.filesystem_type().0 as i64 != PROC_SUPER_MAGIC {
        return Err(Error::Other("the runtime's /proc is not procfs".into()));
    }
    Ok(proc)
}

/// Writes `linux.timeOffsets` through the host's procfs: `self` there is this process.
fn write_time_offsets(host_proc: Option<&OwnedFd>, plan: &NamespacePlan) -> Result<()> {
    let proc = host_proc.ok_or_else(|| Error::Other("no host /proc for timeOffsets".into()))?;
    let text: String = plan
        .time_offsets
        .iter()
        .map(|(clock, s, ns)| format!("{clock} {s} {ns}\n"))
        .collect();
    let f = crate::sys::openat2(
        proc.as_fd(),
        std::path::Path::new("self/timens_offsets"),
        libc::O_WRONLY,
        0,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_XDEV | libc::RESOLVE_NO_MAGICLINKS,
    )
    .and_then(|f| std::fs::File::from(f).write_all(text.as_bytes()));
    f.map_err(|e| {
        Error::config(
            "linux.timeOffsets",
            format!("writing /proc/self/timens_offsets: {e}"),
        )
    })
}

fn stage1_main(
    plan: &NamespacePlan,
    host_proc: Option<&OwnedFd>,
    ch: &Channel,
    parent: i32,
) -> Result<()> {
    die_with_parent(parent)?;
    if let Some(cpus) = &plan.initial_cpus {
        crate::security::set_affinity(cpus, "process.execCPUAffinity.initial")?;
    }
    for (t, fd) in &plan.join {
        nix::sched::setns(fd.as_fd(), clone_flag(*t))
            .ctx(|| format!("joining the {t} namespace"))?;
        if *t == LinuxNamespaceType::User {
            become_root_in_userns()?;
        }
    }
    let mut create = plan.create;
    let time = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    if create.contains(time) && !plan.time_offsets.is_empty() {
        // Writing the offsets needs CAP_SYS_TIME over the namespace's owner, which a
        // process inside a new user namespace does not have over the host: create
        // the time namespace (owned by the runtime's user namespace) and set its
        // clocks before entering the user namespace.
        nix::sched::unshare(time).ctx(|| "creating the time namespace")?;
        create.remove(time);
        write_time_offsets(host_proc, plan)?;
    }
    if plan.new_user {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER).ctx(|| "creating the user namespace")?;
        ch.send(&Msg::UsernsReady).ctx(|| "asking for id maps")?;
        ch.wait_for(&Msg::MapsWritten, "waiting for id maps")
            .map_err(Error::Container)?;
        become_root_in_userns()?;
    }
    if !create.is_empty() {
        nix::sched::unshare(create).ctx(|| format!("creating namespaces {create:?}"))?;
    }
    Ok(())
}

fn become_root_in_userns() -> Result<()> {
    nix::unistd::setresgid(0.into(), 0.into(), 0.into())
        .ctx(|| "becoming gid 0 in the user namespace")?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into())
        .ctx(|| "becoming uid 0 in the user namespace")?;
    Ok(())
}
