//! `linux.seccomp`: the OCI profile compiled with libseccomp.
//!
//! libseccomp rather than seccompiler (docs/design-decisions.md): it takes syscall
//! names for every architecture, expresses all six comparison operators and masked
//! equality, multiple actions in one filter, and SCMP_ACT_NOTIFY.
//!
//! The filter is compiled before the container is reported created (a bad profile
//! fails `create`) and loaded as late as the kernel allows: just before execve when
//! no_new_privs is set, otherwise just before the capabilities are dropped (loading
//! needs CAP_SYS_ADMIN without no_new_privs), as runc does.

use std::collections::HashSet;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction};

use crate::error::{Error, Result};

/// A compiled filter, ready to load.
pub struct Filter {
    ctx: ScmpFilterContext,
}

fn name_of<T: serde::Serialize>(v: &T) -> String {
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
        "SCMP_ACT_NOTIFY" => {
            return Err(Error::Unsupported(format!(
                "{field}: SCMP_ACT_NOTIFY (seccomp listeners)"
            )))
        }
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
        if s.listener_path().is_some() {
            return Err(Error::Unsupported(
                "linux.seccomp.listenerPath (seccomp notify)".into(),
            ));
        }
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
        Ok(Filter { ctx })
    }

    pub fn load(&self) -> Result<()> {
        self.ctx
            .load()
            .map_err(|e| Error::Container(format!("loading the seccomp filter: {e}")))
    }
}
