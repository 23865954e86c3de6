//! `linux.seccomp`: the OCI profile compiled with libseccomp.
//!
//! libseccomp rather than seccompiler (docs/design-decisions.md): it takes syscall
//! names for every architecture, expresses all six comparison operators and masked
//! equality, multiple actions in one filter, and SCMP_ACT_NOTIFY.
//!
//! The filter is compiled before the container is reported created (a bad profile
//! fails `create`) and loaded as late as the kernel allows: just before execve when
//! no_new_privs is set, otherwise just before the capabilities are dropped (loading
//! needs CAP_SYS_ADMIN without no_new_privs), as runc does. A filter with
//! SCMP_ACT_NOTIFY rules is the exception: it is loaded at create, before "created",
//! so that its fd reaches the agent during `create` (see [`crate::seccomp_notify`]).

use std::collections::HashSet;
use std::io::{Read, Seek};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction};

use crate::error::{Error, Result};
use crate::process::sync::{Channel, Msg};
use crate::seccomp_bpf::{self, BpfProgram};
use crate::seccomp_cache::{self, Cache, Miss};
use crate::seccomp_notify::{self, Listener, HANDOFF_SYSCALLS};

/// A profile made ready to load, before the fork into the container (where the state
/// root, and so the cache, is out of reach).
pub enum Prepared {
    /// The program, from the cache or compiled and exported now; loaded with seccomp(2).
    Raw(BpfProgram),
    /// Profiles libseccomp must load itself: notify rules (the listener fd and its
    /// hand-off) or SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (see [`seccomp_bpf::load_flags`]).
    Lib(Filter),
}

impl Prepared {
    /// Whether a rule notifies (the filter then has a listener to reach).
    pub fn notifies(&self) -> bool {
        matches!(self, Prepared::Lib(f) if f.notifies())
    }

    /// Loads the filter into the calling process (see [`Filter::load`]).
    pub fn load(&self, handoff: &Channel) -> Result<()> {
        match self {
            Prepared::Raw(p) => p.load(),
            Prepared::Lib(f) => f.load(handoff),
        }
    }
}

/// Makes `s` ready to load: from the cache under `root` when it holds the program, else
/// compiled (a bad profile fails here with the errors [`Filter::compile`] gives) and
/// stored. A cache that cannot be used is reported through `warn` and compiled around.
pub fn prepare(s: &LinuxSeccomp, root: Option<&Path>, warn: &dyn Fn(&str)) -> Result<Prepared> {
    let notifies = name_of(&s.default_action()) == "SCMP_ACT_NOTIFY"
        || s.syscalls()
            .iter()
            .flatten()
            .any(|r| name_of(&r.action()) == "SCMP_ACT_NOTIFY");
    let Some(flags) = seccomp_bpf::load_flags(s).filter(|_| !notifies) else {
        return Filter::compile(s).map(Prepared::Lib);
    };
    let cached = root.and_then(|root| {
        let key = seccomp_cache::key_for(s)
            .map_err(|e| warn(&format!("seccomp cache not used: {e}")))
            .ok()?;
        let cache = Cache::open(root)
            .map_err(|e| warn(&format!("seccomp cache not used: {e}")))
            .ok()?;
        Some((key, cache))
    });
    if let Some((key, cache)) = &cached {
        match cache.get(key) {
            Ok(program) => match BpfProgram::from_bytes(&program, flags) {
                Ok(p) => return Ok(Prepared::Raw(p)),
                Err(e) => warn(&format!("ignoring a seccomp cache entry: {e}")),
            },
            Err(Miss::Absent) => {}
            Err(Miss::Bad(why)) => warn(&format!(
                "ignoring a seccomp cache entry ({why}): compiling the profile again"
            )),
        }
    }
    let filter = Filter::compile(s)?;
    let bytes = filter.export()?;
    // A program the kernel would refuse (too long) stays with libseccomp, whose load
    // reports it just before the exec as without the cache.
    let Ok(program) = BpfProgram::from_bytes(&bytes, flags) else {
        return Ok(Prepared::Lib(filter));
    };
    if let Some((key, cache)) = &cached {
        if let Err(e) = cache.put(key, &bytes) {
            warn(&format!("seccomp cache: {e}"));
        }
    }
    Ok(Prepared::Raw(program))
}

/// How libseccomp lays out the program's syscall checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// libseccomp's default: one check after the other.
    Chain,
    /// A binary tree of syscall numbers (SCMP_FLTATR_CTL_OPTIMIZE, level 2), what
    /// [`Filter::compile`] makes. Loading the engine's default profile went from 0.87
    /// to 0.24 ms with it (1.2x the instructions; docs/benchmarks.md): the kernel
    /// precomputes its per-syscall action cache by running the filter once for every
    /// syscall number, and a tree answers each in log(n) steps, as it then does for
    /// every syscall of the container the cache does not answer.
    Tree,
}

/// A compiled filter, ready to load.
pub struct Filter {
    ctx: ScmpFilterContext,
    /// Set when a rule notifies: where the notify fd goes.
    listener: Option<Listener>,
}

pub(crate) fn name_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn action(a: &LinuxSeccompAction, errno: Option<u32>, field: &str) -> Result<ScmpAction> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    Ok(match name_of(a).as_str() {
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(errno),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_TRACE" => ScmpAction::Trace(errno as u16),
        "SCMP_ACT_LOG" => ScmpAction::Log,
        "SCMP_ACT_NOTIFY" => ScmpAction::Notify,
        other => return Err(Error::config(field, format!("unknown action {other:?}"))),
    })
}

fn operator(op: &str, value: u64, value_two: u64, field: &str) -> Result<(ScmpCompareOp, u64)> {
    Ok(match op {
        "SCMP_CMP_NE" => (ScmpCompareOp::NotEqual, value),
        "SCMP_CMP_LT" => (ScmpCompareOp::Less, value),
        "SCMP_CMP_LE" => (ScmpCompareOp::LessOrEqual, value),
        "SCMP_CMP_EQ" => (ScmpCompareOp::Equal, value),
        "SCMP_CMP_GE" => (ScmpCompareOp::GreaterEqual, value),
        "SCMP_CMP_GT" => (ScmpCompareOp::Greater, value),
        // OCI: `value` is the mask, `valueTwo` the value the masked argument must equal.
        "SCMP_CMP_MASKED_EQ" => (ScmpCompareOp::MaskedEqual(value), value_two),
        other => return Err(Error::config(field, format!("unknown operator {other:?}"))),
    })
}

/// The actions and operators `features` reports.
pub const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];
pub const OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

impl Filter {
    /// Compiles the profile. Syscall names this libseccomp does not know are skipped,
    /// as runc does (profiles list syscalls of newer kernels).
    pub fn compile(s: &LinuxSeccomp) -> Result<Filter> {
        Self::compile_as(s, Layout::Tree)
    }

    /// [`Filter::compile`] with the program laid out as `layout` (the tests compare the
    /// decisions of both layouts).
    pub fn compile_as(s: &LinuxSeccomp, layout: Layout) -> Result<Filter> {
        let lib = |what: &str, e: libseccomp::error::SeccompError| {
            Error::config("linux.seccomp", format!("{what}: {e}"))
        };
        let default = action(
            &s.default_action(),
            s.default_errno_ret(),
            "linux.seccomp.defaultAction",
        )?;
        let mut ctx = ScmpFilterContext::new(default).map_err(|e| lib("creating the filter", e))?;
        // no_new_privs is the spec's decision (process.noNewPrivileges), not libseccomp's.
        ctx.set_ctl_nnp(false)
            .map_err(|e| lib("clearing the nnp attribute", e))?;
        if layout == Layout::Tree {
            // A libseccomp older than 2.5 does not know the attribute: its chain is
            // kept, with no error (the same decisions, only slower).
            let _ = ctx.set_filter_attr(libseccomp::ScmpFilterAttr::CtlOptimize, 2);
        }
        for (i, arch) in s.architectures().iter().flatten().enumerate() {
            let name = name_of(arch);
            let a: ScmpArch = name.parse().map_err(|_| {
                Error::config(
                    format!("linux.seccomp.architectures[{i}]"),
                    format!("unknown architecture {name}"),
                )
            })?;
            if a != ScmpArch::native() {
                ctx.add_arch(a)
                    .map_err(|e| lib(&format!("adding architecture {name}"), e))?;
            }
        }
        for f in s.flags().iter().flatten() {
            match name_of(f).as_str() {
                "SECCOMP_FILTER_FLAG_TSYNC" => ctx.set_ctl_tsync(true).map(|_| ()),
                "SECCOMP_FILTER_FLAG_LOG" => ctx.set_ctl_log(true).map(|_| ()),
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => ctx.set_ctl_ssb(true).map(|_| ()),
                "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => ctx.set_ctl_waitkill(true).map(|_| ()),
                other => {
                    return Err(Error::config(
                        "linux.seccomp.flags",
                        format!("unknown flag {other}"),
                    ))
                }
            }
            .map_err(|e| lib("setting a filter flag", e))?;
        }
        if default == ScmpAction::Notify {
            // Every syscall the runtime makes after loading, the hand-off of the fd
            // included, would wait for an agent that does not have it yet (runc
            // refuses it too).
            return Err(Error::config(
                "linux.seccomp.defaultAction",
                "SCMP_ACT_NOTIFY cannot be the default action: the runtime's own syscalls between loading the filter and handing its fd to the agent would wait forever",
            ));
        }
        let notifies = s
            .syscalls()
            .iter()
            .flatten()
            .any(|r| name_of(&r.action()) == "SCMP_ACT_NOTIFY");
        let listener = seccomp_notify::listener(s, notifies)?;
        // A profile under which execve itself is refused would kill the container's
        // program before it starts, silently (not even exit_group may be allowed):
        // say so now.
        let allows_exec = default == ScmpAction::Allow
            || default == ScmpAction::Log
            || s.syscalls().iter().flatten().any(|r| {
                matches!(
                    name_of(&r.action()).as_str(),
                    "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG"
                ) && r.names().iter().any(|n| n == "execve" || n == "execveat")
            });
        if !allows_exec {
            return Err(Error::config(
                "linux.seccomp",
                "the profile does not allow execve, so the container's program could never start",
            ));
        }
        for (i, rule) in s.syscalls().iter().flatten().enumerate() {
            let field = format!("linux.seccomp.syscalls[{i}]");
            let act = action(&rule.action(), rule.errno_ret(), &format!("{field}.action"))?;
            if act == default {
                continue; // libseccomp refuses rules that repeat the default
            }
            if act == ScmpAction::Notify {
                if let Some(n) = rule
                    .names()
                    .iter()
                    .find(|n| HANDOFF_SYSCALLS.contains(&n.as_str()))
                {
                    return Err(Error::config(
                        format!("{field}.names"),
                        format!(
                            "SCMP_ACT_NOTIFY cannot be used for {n}: the runtime needs it to hand the notify fd to the agent (refused: {})",
                            HANDOFF_SYSCALLS.join(", ")
                        ),
                    ));
                }
            }
            let mut conds = Vec::new();
            for (j, a) in rule.args().iter().flatten().enumerate() {
                let afield = format!("{field}.args[{j}]");
                if a.index() > 5 {
                    return Err(Error::config(format!("{afield}.index"), "must be 0..5"));
                }
                let (op, datum) = operator(
                    &name_of(&a.op()),
                    a.value(),
                    a.value_two().unwrap_or(0),
                    &format!("{afield}.op"),
                )?;
                conds.push(ScmpArgCompare::new(a.index() as u32, op, datum));
            }
            // libseccomp cannot compare one argument twice in a rule: such conditions
            // become separate rules (an OR), as in runc.
            let mut seen = HashSet::new();
            let repeated = rule
                .args()
                .iter()
                .flatten()
                .any(|a| !seen.insert(a.index()));
            for name in rule.names() {
                let Ok(sc) = ScmpSyscall::from_name(name) else {
                    continue;
                };
                let res = if conds.is_empty() {
                    ctx.add_rule(act, sc)
                } else if repeated {
                    conds
                        .iter()
                        .try_for_each(|c| ctx.add_rule_conditional(act, sc, &[*c]).map(|_| ()))
                        .map(|_| &mut ctx)
                } else {
                    ctx.add_rule_conditional(act, sc, &conds)
                };
                res.map_err(|e| Error::config(format!("{field}.names"), format!("{name}: {e}")))?;
            }
        }
        Ok(Filter { ctx, listener })
    }

    /// Whether a rule notifies (the filter then has a listener to reach).
    pub fn notifies(&self) -> bool {
        self.listener.is_some()
    }

    /// The BPF program libseccomp generates for this filter: what its load would pass
    /// to the kernel. (`export_bpf_mem` needs libseccomp 2.6: through a memfd.)
    pub fn export(&self) -> Result<Vec<u8>> {
        let err = |e: &dyn std::fmt::Display| {
            Error::Container(format!("exporting the seccomp program: {e}"))
        };
        // SAFETY: a NUL-terminated name and plain flags; the kernel returns a new fd.
        let fd = unsafe { libc::memfd_create(c"codex-seccomp-bpf".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(err(&std::io::Error::last_os_error()));
        }
        // SAFETY: memfd_create returned a new fd that nothing else owns.
        let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        self.ctx.export_bpf(f.as_fd()).map_err(|e| err(&e))?;
        f.rewind().map_err(|e| err(&e))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out).map_err(|e| err(&e))?;
        Ok(out)
    }

    pub fn listener(&self) -> Option<&Listener> {
        self.listener.as_ref()
    }

    /// Loads the filter into the calling process. A filter that notifies is loaded with
    /// a new listener, whose fd goes to the runtime on `handoff` at once (the runtime
    /// sends it to the agent) and is closed here: nothing the container runs holds it.
    pub fn load(&self, handoff: &Channel) -> Result<()> {
        let load_err = |e: &dyn std::fmt::Display| {
            Error::Container(format!("loading the seccomp filter: {e}"))
        };
        if self.listener.is_none() {
            return self.ctx.load().map_err(|e| load_err(&e));
        }
        // Everything that allocates or probes the kernel happens before the load, so
        // that only the syscalls in HANDOFF_SYSCALLS run between it and the hand-off.
        let msg = Channel::encode(&Msg::SeccompNotifyFd)
            .map_err(|e| Error::Other(format!("encoding the notify fd message: {e}")))?;
        let api = libseccomp::get_api();
        if api < 6 {
            return Err(Error::config(
                "linux.seccomp",
                format!("SCMP_ACT_NOTIFY needs libseccomp API level 6 (kernel 5.5+), this host has {api}"),
            ));
        }
        self.ctx.load().map_err(|e| load_err(&e))?;
        let raw = self
            .ctx
            .get_notify_fd()
            .map_err(|e| load_err(&format!("no notify fd: {e}")))?;
        // SAFETY: the fd seccomp(2) returned for this filter's listener; libseccomp only
        // remembers its number and never closes it, so this is its one owner.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        handoff
            .send_encoded_with_fd(&msg, fd.as_fd())
            .map_err(|e| {
                Error::Container(format!("handing the seccomp notify fd to the runtime: {e}"))
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(v: serde_json::Value) -> Result<Filter> {
        Filter::compile(&serde_json::from_value(v).unwrap())
    }

    fn notify_rule(names: &[&str]) -> serde_json::Value {
        serde_json::json!({"names": names, "action": "SCMP_ACT_NOTIFY"})
    }

    #[test]
    fn notify_with_a_listener_compiles_and_carries_it() {
        let f = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "listenerMetadata": "meta",
            "syscalls": [notify_rule(&["mkdir", "getppid"])],
        }))
        .unwrap();
        assert!(f.notifies());
        let l = f.listener().unwrap();
        assert_eq!(l.path, std::path::Path::new("/run/agent.sock"));
        assert_eq!(l.metadata.as_deref(), Some("meta"));
    }

    #[test]
    fn a_listener_path_without_notify_rules_is_ignored() {
        let f = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
        }))
        .unwrap();
        assert!(!f.notifies());
    }

    #[test]
    fn notify_without_a_listener_is_refused_naming_listener_path() {
        let e = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [notify_rule(&["mkdir"])],
        }))
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("linux.seccomp.listenerPath"), "{e}");
    }

    #[test]
    fn notify_as_default_action_is_refused_naming_the_field() {
        let e = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_NOTIFY",
            "listenerPath": "/run/agent.sock",
        }))
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("linux.seccomp.defaultAction"), "{e}");
    }

    #[test]
    fn notify_on_a_handoff_syscall_is_refused_naming_the_rule() {
        for name in HANDOFF_SYSCALLS {
            let e = compile(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": "/run/agent.sock",
                "syscalls": [
                    {"names": ["chmod"], "action": "SCMP_ACT_ERRNO"},
                    notify_rule(&["mkdir", name]),
                ],
            }))
            .err()
            .unwrap()
            .to_string();
            assert!(e.contains("linux.seccomp.syscalls[1].names"), "{e}");
            assert!(e.contains(name), "{e}");
        }
        // The same syscalls with another action are fine.
        compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": HANDOFF_SYSCALLS, "action": "SCMP_ACT_LOG"}],
        }))
        .unwrap();
    }
}

#[cfg(test)]
#[path = "seccomp_layout_tests.rs"]
mod layout_tests;
