//! The container's init, from its fork to the execve of the user's program.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::LinuxNamespaceType;

use super::program::{self, Program};
use super::sync::{Channel, Msg};
use crate::cgroups::Cgroups;
use crate::error::{Context, Error, Result};
use crate::hooks::{self, HookKind};
use crate::rootfs::{self, RootfsSetup};
use crate::seccomp::Prepared;
use crate::spec::{self, Bundle};
use crate::terminal;

/// How the init learns that it may run the program.
pub enum StartSignal {
    /// `create`: a connection on the listening start socket (kept in the state dir).
    Socket {
        listener: OwnedFd,
        state_dir: OwnedFd,
    },
    /// foreground `run`: a `Start` message on the sync channel.
    Channel,
}

pub struct InitArgs<'a> {
    pub bundle: &'a Bundle,
    pub cgroups: &'a Cgroups,
    pub start: StartSignal,
    pub console: Option<OwnedFd>,
    pub no_pivot: bool,
    /// Join a new session keyring named after the container (unless --no-new-keyring).
    pub new_keyring: bool,
    pub preserve_fds: u32,
    pub runtime_pid: i32,
    pub id: &'a str,
    /// `linux.seccomp`, prepared by the runtime before the fork (compiled, or read from
    /// its cache under the state root, which the init cannot reach after the pivot).
    pub seccomp: Option<&'a Prepared>,
    /// Set when the runtime runs from a writable binary (a foreground `run` that
    /// qualifies, see [`crate::trampoline`]): the program is exec'd through it.
    pub trampoline: Option<&'a crate::trampoline::Trampoline>,
}

/// Runs in the container process. Reports any failure to whoever waits (the runtime,
/// or `start`) and exits; on success it becomes the user's program.
pub fn init_main(args: InitArgs, ch: Channel) -> std::convert::Infallible {
    // The root changes below: trace lines go only to the file opened before the fork.
    codex_sys::trace::pin();
    let err = match setup(&args, &ch) {
        Ok(reply) => {
            let err = run_program(&args, reply.as_ref().unwrap_or(&ch));
            // The program could not be exec'd: tell whoever started us.
            let target = reply.as_ref().unwrap_or(&ch);
            let _ = target.send(&Msg::failure(&err));
            // SAFETY: _exit in a forked child.
            unsafe { libc::_exit(127) }
        }
        Err(e) => e,
    };
    let _ = ch.send(&Msg::failure(&err));
    // SAFETY: _exit in a forked child.
    unsafe { libc::_exit(1) }
}

/// Everything up to "created", then the wait for start. Returns the channel to report
/// exec failures on (the start connection in create mode).
fn setup(args: &InitArgs, ch: &Channel) -> Result<Option<Channel>> {
    super::die_with_parent(args.runtime_pid)?;
    // Not dumpable since stage 1's first step (process::spawn): no process in the
    // container can open our /proc/PID/exe or fds.
    nix::unistd::setsid().ctx(|| "setsid")?;
    if args.new_keyring {
        join_session_keyring(args.id)?;
    }

    let spec = &args.bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::config("process", "missing"))?;
    let userns = spec::has_namespace(spec, LinuxNamespaceType::User);
    // Without a mount namespace of its own the container shares the runtime's mounts:
    // nothing is mounted (`rootfs::shared` refused all that would be, at create) and
    // the root changes by chroot, as with runc.
    let own_mounts = spec::has_namespace(spec, LinuxNamespaceType::Mount);
    if !own_mounts {
        rootfs::shared::check(spec)?;
    }
    // Only a namespace we made: a joined one (namespaces[].path) belongs to whoever
    // made it, who decides what is up in it.
    if spec::creates_namespace(spec, LinuxNamespaceType::Network) {
        crate::sys::loopback_up().ctx(|| "bringing up lo in the new network namespace")?;
    }
    let host_null = rootfs::open_host_null()?;
    let sources = args.cgroups.mount_sources();
    let setup = RootfsSetup {
        spec,
        rootfs: &args.bundle.rootfs,
        bundle: &args.bundle.dir,
        cgroup_sources: &sources,
        userns,
        host_null: host_null.as_fd(),
    };
    codex_sys::trace::phase("init: namespaces joined");
    let root = if own_mounts {
        let root = rootfs::enter(&setup)?;
        rootfs::populate(&setup, root.as_fd())?;
        codex_sys::trace::phase("init: mounts and devices made");
        root
    } else {
        rootfs::mount::open_path(&args.bundle.rootfs)
            .ctx(|| format!("opening the rootfs {}", args.bundle.rootfs.display()))?
            .into()
    };

    let mut pty = None;
    if process.terminal().unwrap_or(false) {
        let console = args.console.as_ref().ok_or_else(|| {
            Error::config("process.terminal", "a terminal needs --console-socket")
        })?;
        let p = terminal::open_pty(root.as_fd())?;
        if let Some(size) = process.console_size() {
            terminal::set_size(&p, size.height(), size.width())?;
        }
        terminal::bind_console(root.as_fd(), &p)?;
        terminal::send_master(console.as_fd(), &p)?;
        pty = Some(p.slave);
    }

    if own_mounts {
        rootfs::confine(&setup, root.as_fd())?;
        codex_sys::trace::phase("init: masked and read-only paths");
    }
    set_names_and_sysctls(spec)?;

    // The runtime has been writing our pid into the cgroups meanwhile.
    ch.wait_for(&Msg::Placed, "waiting for cgroup placement")
        .map_err(Error::Container)?;
    if spec::creates_namespace(spec, LinuxNamespaceType::Cgroup) {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .ctx(|| "creating the cgroup namespace")?;
    }

    let hooks = spec.hooks().as_ref();
    let has_runtime_hooks = hooks.is_some_and(|h| {
        !HookKind::Prestart.of(h).is_empty() || !HookKind::CreateRuntime.of(h).is_empty()
    });
    if has_runtime_hooks {
        ch.send(&Msg::RuntimeHooks)
            .ctx(|| "asking for runtime hooks")?;
        ch.wait_for(&Msg::HooksDone, "runtime hooks")
            .map_err(Error::Container)?;
    }
    if hooks.is_some() {
        let state = creating_state(args);
        hooks::run(HookKind::CreateContainer, hooks, &state)?;
    }
    let host_root = args.bundle.rootfs == std::path::Path::new("/");
    if own_mounts {
        rootfs::seal(spec, root.as_fd())?;
        rootfs::switch_root(root.as_fd(), args.no_pivot, spec, host_root)?;
    } else {
        rootfs::shared::chroot_into(root.as_fd(), host_root)?;
    }
    drop(root);
    drop(host_null);
    codex_sys::trace::phase("init: root switched");
    if let Some(slave) = &pty {
        terminal::make_controlling(slave.as_fd())?;
    }
    // rlimits now, so that one the runtime may not set fails `create`, as with runc.
    crate::security::set_rlimits(process.rlimits().as_deref().unwrap_or(&[]))?;
    // Resolve now: a missing program fails `create`, as with runc.
    Program::find(process)?;
    // The profile was compiled before the fork (a bad one failed `create` there); it is
    // loaded just before exec.
    // A filter that notifies is loaded now instead, so that its fd reaches the agent
    // during `create` (as with runc, and what agents expect: `create` fails when the
    // listener is unreachable). What the init does from here to execve is under the
    // filter (hooks, privilege drop), and the agent answers what it notifies.
    if let Some(f) = args.seccomp.filter(|f| f.notifies()) {
        f.load(ch)?;
    }

    // From here the container is to outlive the `create` command, so the parent-death
    // signal goes *before* "created": cleared after it, a runtime that records the
    // container and exits at once (a loaded machine deschedules this process in the
    // gap) would have the kernel kill the init it just recorded. A runtime that dies
    // before recording it is noticed on the channel instead: no "committed", EOF.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    codex_sys::trace::phase("init: created");
    ch.send(&Msg::Created).ctx(|| "reporting created")?;
    ch.wait_for(
        &Msg::Committed,
        "waiting for the runtime to record the container",
    )
    .map_err(Error::Container)?;
    match &args.start {
        StartSignal::Channel => {
            ch.wait_for(&Msg::Start, "waiting for start")
                .map_err(Error::Container)?;
            Ok(None)
        }
        StartSignal::Socket {
            listener,
            state_dir,
        } => {
            let conn = loop {
                match nix::sys::socket::accept4(
                    std::os::fd::AsRawFd::as_raw_fd(listener),
                    nix::sys::socket::SockFlag::SOCK_CLOEXEC,
                ) {
                    Ok(fd) => break fd,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e).ctx(|| "waiting for start"),
                }
            };
            // The socket's existence is what makes the container "created".
            let _ = nix::unistd::unlinkat(
                state_dir.as_fd(),
                crate::state::START_SOCKET,
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            // SAFETY: accept4 returned a new fd that nothing else owns.
            let conn: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(conn) };
            Ok(Some(Channel::from_fd(conn)))
        }
    }
}

/// After start: startContainer hooks, privileges, execve. Returns only on failure.
fn run_program(args: &InitArgs, reply: &Channel) -> Error {
    // The last line before exec: the seccomp filter, loaded below, may forbid writes.
    codex_sys::trace::phase("init: start received");
    // Widens the window in which the init, started, has not exec'd yet (tests of what
    // `exec` refuses then).
    codex_sys::testhook::pause("init-started");
    let spec = &args.bundle.spec;
    let Some(process) = spec.process().as_ref() else {
        return Error::config("process", "missing");
    };
    if let Some(h) = spec.hooks().as_ref() {
        let mut state = creating_state(args);
        state["status"] = "created".into();
        let env = process.env().as_deref().unwrap_or(&[]);
        if let Err(e) = hooks::run_start_container(h, &state, env) {
            return e;
        }
    }
    let program = match Program::find(process) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let userns = spec::has_namespace(spec, LinuxNamespaceType::User);
    if let Err(e) = program::drop_privileges(
        process,
        spec.linux().as_ref(),
        userns,
        args.preserve_fds,
        reply,
        args.trampoline.map(|t| t.fd()),
        // Never one that notifies: that was loaded at create (see `setup`), and its
        // fd must not go to the start connection.
        args.seccomp.filter(|f| !f.notifies()),
    ) {
        return e;
    }
    match args.trampoline {
        Some(t) => program.exec_through(t, reply),
        None => program.exec(),
    }
}

fn creating_state(args: &InitArgs) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": crate::spec::OCI_VERSION,
        "id": args.id,
        "status": "creating",
        "pid": std::process::id(),
        "bundle": args.bundle.dir,
        "annotations": args.bundle.spec.annotations().clone().unwrap_or_default(),
    })
}

/// hostname, domainname and sysctls: all need the namespaces they belong to.
fn set_names_and_sysctls(spec: &oci_spec::runtime::Spec) -> Result<()> {
    let uts = spec::has_namespace(spec, LinuxNamespaceType::Uts);
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        if !uts {
            return Err(Error::config(
                "hostname",
                "setting a hostname needs a UTS namespace",
            ));
        }
        nix::unistd::sethostname(h).ctx(|| format!("hostname: setting {h:?}"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        if !uts {
            return Err(Error::config(
                "domainname",
                "setting a domainname needs a UTS namespace",
            ));
        }
        // SAFETY: d is a valid buffer of its length.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } < 0 {
            return Err(std::io::Error::last_os_error())
                .ctx(|| format!("domainname: setting {d:?}"));
        }
    }
    if let Some(sysctls) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
        let mut keys: Vec<_> = sysctls.keys().collect();
        keys.sort();
        for k in keys {
            write_sysctl(spec, k, &sysctls[k])?;
        }
    }
    Ok(())
}

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Writes one sysctl through the host's procfs (still reachable: this runs before
/// pivot_root), refusing any path that is not a plain file on procfs.
fn write_sysctl(spec: &oci_spec::runtime::Spec, key: &str, value: &str) -> Result<()> {
    let field = format!("linux.sysctl.{key}");
    let ns = |t| spec::has_namespace(spec, t);
    let allowed = if key.starts_with("net.") {
        ns(LinuxNamespaceType::Network)
    } else if key.starts_with("kernel.shm")
        || key.starts_with("kernel.msg")
        || key == "kernel.sem"
        || key.starts_with("fs.mqueue.")
    {
        ns(LinuxNamespaceType::Ipc)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        ns(LinuxNamespaceType::Uts)
    } else {
        return Err(Error::config(
            field,
            "is not namespaced, so a container may not set it",
        ));
    };
    if !allowed {
        return Err(Error::config(
            field,
            "needs the namespace it belongs to in linux.namespaces",
        ));
    }
    if key.contains("..") || key.contains('/') || key.starts_with('.') || key.ends_with('.') {
        return Err(Error::config(field, "is not a sysctl name"));
    }
    let proc_sys =
        crate::rootfs::mount::open_path(Path::new("/proc/sys")).ctx(|| "opening /proc/sys")?;
    let st = nix::sys::statfs::fstatfs(proc_sys.as_fd()).ctx(|| "checking /proc/sys")?;
    if st.filesystem_type().0 as i64 != PROC_SUPER_MAGIC {
        return Err(Error::Other("/proc/sys is not procfs".into()));
    }
    let rel = key.replace('.', "/");
    let f = crate::sys::openat2(
        proc_sys.as_fd(),
        Path::new(&rel),
        libc::O_WRONLY | libc::O_TRUNC,
        0,
        libc::RESOLVE_BENEATH
            | libc::RESOLVE_NO_SYMLINKS
            | libc::RESOLVE_NO_MAGICLINKS
            | libc::RESOLVE_NO_XDEV,
    )
    .map_err(|e| Error::config(&field, format!("opening /proc/sys/{rel}: {e}")))?;
    let n = nix::unistd::write(&f, value.as_bytes())
        .map_err(|e| Error::config(&field, format!("writing {value:?}: {e}")))?;
    if n != value.len() {
        return Err(Error::config(field, "short write"));
    }
    Ok(())
}

/// A fresh session keyring, so the container does not share the caller's keys.
fn join_session_keyring(id: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = std::ffi::CString::new(format!("_ses.{id}"))
        .map_err(|_| Error::Other("container id contains NUL".into()))?;
    // SAFETY: name is a valid C string that outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        // Kernels without keyrings: nothing to isolate.
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(e).ctx(|| "joining a new session keyring");
        }
    }
    Ok(())
}
