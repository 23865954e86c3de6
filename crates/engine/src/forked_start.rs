//! `run`'s supervisor forked from the command instead of executed: no read-only view
//! of the binary to make, no exec of the 15 MB binary and its start-up (together about
//! 1.5 ms of the start path, docs/benchmarks.md).
//!
//! An executed supervisor runs from a read-only view of the binary (the CVE-2019-5736
//! defence, codex_runtime::selfclone). A forked one runs from the writable binary, as
//! the command itself does, so it is used only where nothing of the container can
//! reach that binary, by the same rules as a foreground `codex-oci run` (docs/
//! design-decisions.md, "A foreground `run` protects the binary with an exec
//! trampoline"):
//!
//! - the container's init is created attached (`Runtime::create_attached`): only the
//!   worker can start it, and it execs its program through the runtime's exec
//!   trampoline, so a `#!/proc/self/exe` program reaches the trampoline, not this
//!   binary, and `exec` refuses to join before the program runs;
//! - the container has a pid namespace of its own (not `minimal` isolation), so no
//!   process of it can see the supervisor, the worker or the init before its exec;
//! - its seccomp profile is the isolation's default or none: a profile of the user's
//!   could refuse what the trampoline needs (the runtime checks again and refuses the
//!   create, naming why, if it does);
//! - the supervisor does not stay: it execs the shim from a read-only view of its
//!   directory as before, and the worker that holds the init ends within
//!   `HANDOVER_AFTER` (or with the container, if it ends first).
//!
//! Everything else (another seccomp profile, `minimal`, a multi-threaded caller such as
//! `serve`, an embedding program whose binary is not the supervisor's, other
//! architectures) executes the supervisor as before.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;

use nix::sched::CpuSet;
use nix::unistd::Pid;

use crate::config::security::Seccomp;
use crate::config::{ContainerConfig, Isolation};
use crate::engine::Engine;

/// Why `config`'s supervisor cannot be forked (see the module), or `None`.
pub(crate) fn unforkable(config: &ContainerConfig) -> Option<&'static str> {
    if !cfg!(target_arch = "x86_64") {
        return Some("the runtime has no exec trampoline for this architecture");
    }
    if config.isolation == Isolation::Minimal {
        return Some("minimal isolation gives the container no pid namespace");
    }
    if matches!(config.security.seccomp, Some(Seccomp::Profile(_))) {
        return Some("a seccomp profile of the user's may refuse the trampoline's calls");
    }
    None
}

impl Engine {
    /// Whether this process may fork `config`'s supervisor: the config qualifies, this
    /// process runs the supervisor's binary, and it has one thread (a fork of a process
    /// whose other thread holds a lock inherits the lock, held forever).
    pub(crate) fn can_fork_supervisor(&self, config: &ContainerConfig) -> bool {
        if unforkable(config).is_some() {
            return false;
        }
        let this = std::fs::read_link("/proc/self/exe");
        if this.ok().as_deref() != Some(self.supervisor_exe.as_path()) {
            return false;
        }
        codex_runtime::process::ensure_single_threaded("run").is_ok()
    }
}

/// Where the fork's two halves run. The command goes on creating the container (about
/// 1 ms) while its child sets the supervisor up (its mount namespace, the registry)
/// and waits for the id. A forked child is queued on its parent's CPU and, on these
/// VMs, ran only once the command blocked, after the create: its set-up then came
/// after the id instead of beside the create. So the command moves it at once to the
/// other CPUs it may use, and the child takes back the command's CPUs once it has the
/// id (before anything it starts inherits them). Nothing to do with one CPU.
pub(crate) struct Spread {
    /// The command's CPUs, which the child takes back.
    allowed: CpuSet,
    /// The same without the one the command runs on.
    others: CpuSet,
}

impl Spread {
    pub(crate) fn plan() -> Option<Spread> {
        let allowed = nix::sched::sched_getaffinity(Pid::from_raw(0)).ok()?;
        // SAFETY: sched_getcpu takes no arguments.
        let here = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
        let mut others = allowed;
        others.unset(here).ok()?;
        let any = (0..CpuSet::count()).any(|c| others.is_set(c).unwrap_or(false));
        any.then_some(Spread { allowed, others })
    }

    /// In the command, right after the fork.
    pub(crate) fn move_child(&self, child: Pid) {
        let _ = nix::sched::sched_setaffinity(child, &self.others);
    }
}

/// The command's CPUs, for a forked supervisor to take back once it has its id.
static TAKE_BACK: OnceLock<CpuSet> = OnceLock::new();

/// In a forked supervisor that has its container's id: the command's CPUs again (see
/// [`Spread`]). The command moved it before it sent the id, so nothing undoes this.
pub(crate) fn take_back_cpus() {
    if let Some(allowed) = TAKE_BACK.get() {
        let _ = nix::sched::sched_setaffinity(Pid::from_raw(0), allowed);
    }
}

/// The forked child's whole life: `stdin` (or /dev/null) as fd 0, /dev/null as 1 and 2,
/// `status` as the supervisor's status fd and `id` as its id pipe, in a session of its
/// own with no signal blocked; then the supervisor, in this process (it does not fork
/// again to detach, as an executed one does: the command knows this pid, names it in
/// the record at the create, and never waits for it). Never returns.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forked_supervisor(
    root: &std::path::Path,
    exe: &std::path::Path,
    stdin: Option<&OwnedFd>,
    null: &OwnedFd,
    status: &OwnedFd,
    id: &OwnedFd,
    spread: Option<&Spread>,
) -> ! {
    if let Some(s) = spread {
        let _ = TAKE_BACK.set(s.allowed);
    }
    use crate::supervisor::{ID_FD, STATUS_FD};
    // Every source is above the targets (`above_child_fds`), so no dup2 overwrites a
    // source not yet copied; dup2 clears close-on-exec on the copy (kept by the shim's
    // exec where it must be).
    let stdin = stdin.unwrap_or(null);
    for (from, to) in [
        (stdin.as_raw_fd(), 0),
        (null.as_raw_fd(), 1),
        (null.as_raw_fd(), 2),
        (status.as_raw_fd(), STATUS_FD),
        (id.as_raw_fd(), ID_FD),
    ] {
        // SAFETY: dup2 between fds of this (single-threaded, just forked) process.
        if unsafe { libc::dup2(from, to) } < 0 {
            // SAFETY: ends the forked child at once; nothing to flush or unwind.
            unsafe { libc::_exit(1) }
        }
    }
    // Outlives the command and its terminal; signals as an executed process has them.
    let _ = nix::unistd::setsid();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    // SAFETY: restores the default action of SIGPIPE, which the command ignores.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    crate::trace::phase("sup: forked");
    let code = crate::supervisor::forked_main(root, exe);
    // SAFETY: ends the forked child without running the command's exit path (its
    // buffers and destructors are the command's, not this process's).
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_and_strict_isolations_fork_minimal_and_a_users_profile_do_not() {
        let standard = ContainerConfig::default();
        assert_eq!(unforkable(&standard), None);
        let strict = ContainerConfig {
            isolation: Isolation::Strict,
            ..ContainerConfig::default()
        };
        assert_eq!(unforkable(&strict), None);
        let mut unconfined = ContainerConfig::default();
        unconfined.security.seccomp = Some(Seccomp::Unconfined);
        assert_eq!(unforkable(&unconfined), None);

        let minimal = ContainerConfig {
            isolation: Isolation::Minimal,
            ..ContainerConfig::default()
        };
        assert!(unforkable(&minimal).is_some_and(|w| w.contains("pid namespace")));
        let mut profile = ContainerConfig::default();
        profile.security.seccomp = Some(Seccomp::Profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW"
        })));
        assert!(unforkable(&profile).is_some_and(|w| w.contains("seccomp")));
    }
}
