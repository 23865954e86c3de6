//! The default seccomp profile: equivalent in effect to Docker's default, used by the
//! engine's `standard` isolation and written by `codex-oci spec --seccomp-default`.
//!
//! The profile is data, `seccomp-default.json` next to this file, compiled into the
//! binary: themed groups of syscall names, each optionally tied to a capability or an
//! architecture. [`default_profile`] turns it into an OCI `linux.seccomp` for a given
//! capability set; the result can be printed and diffed like any other profile.
//!
//! # What the profile does
//!
//! - Every syscall that is not listed fails with `EPERM` (`SCMP_ACT_ERRNO`, errno 1),
//!   never killing the process, so programs see an ordinary permission error.
//! - The listed groups (355 names, plus 3 on x86_64 and 6 on aarch64) are what ordinary
//!   programs use: processes, credentials, signals, memory, clocks, scheduling, futexes,
//!   files, paths, xattrs, polling, aio and io_uring, sockets, IPC, getrandom, and the
//!   architecture's own entry points. The kernel still applies its own permission checks
//!   to all of them.
//! - A few are allowed only with safe arguments: `socket` for every family but AF_VSOCK,
//!   `personality` only for PER_LINUX, PER_LINUX32, UNAME26, both, and the 0xffffffff query;
//!   `clone` only without namespace flags (unless CAP_SYS_ADMIN); `clone3` fails with
//!   ENOSYS (unless CAP_SYS_ADMIN), because seccomp cannot read its flags from memory and
//!   the C library falls back to `clone` on ENOSYS.
//! - Capability-gated groups are added when the container holds the capability (its
//!   bounding set): CAP_SYS_ADMIN (namespaces, mounts, hostnames, quotas, fanotify, syslog,
//!   bpf, perf), CAP_SYS_PTRACE, CAP_SYS_MODULE, CAP_SYS_BOOT, CAP_SYS_CHROOT, CAP_SYS_TIME,
//!   CAP_SYS_NICE (NUMA policy), CAP_SYS_PACCT, CAP_SYS_RAWIO, CAP_SYSLOG, CAP_BPF,
//!   CAP_PERFMON, CAP_SYS_TTY_CONFIG and CAP_DAC_READ_SEARCH.
//!
//! # What is denied, and why
//!
//! The capabilities already stop most of these; the profile is the second wall, and it
//! also shrinks the kernel surface a container can reach with a kernel bug.
//!
//! - Kernel keyring (`add_key`, `request_key`, `keyctl`): keys are not namespaced; a
//!   container could read or fill the host's keyrings.
//! - Namespaces without CAP_SYS_ADMIN (`unshare`, `setns`, `clone` with CLONE_NEW*,
//!   `clone3`): new user namespaces hand out capabilities over kernel code that was
//!   never meant to be reachable unprivileged, the source of many escapes.
//! - Mounting without CAP_SYS_ADMIN (`mount`, `umount2`, `pivot_root`, the new mount API
//!   `fsopen`/`fsmount`/`move_mount`/`open_tree`/`mount_setattr`).
//! - Kernel modules (`init_module`, `finit_module`, `delete_module`) without
//!   CAP_SYS_MODULE; `create_module`, `query_module`, `get_kernel_syms` always.
//! - Replacing the kernel (`kexec_load`, `kexec_file_load`): always.
//! - `reboot` without CAP_SYS_BOOT (in a pid namespace it would kill the container's init,
//!   outside one the host).
//! - Swap (`swapon`, `swapoff`): host-wide, always denied.
//! - Tracing other processes (`ptrace`, `process_vm_readv`/`writev`, `kcmp`,
//!   `pidfd_getfd`, `process_madvise`) without CAP_SYS_PTRACE: ptrace could bypass seccomp
//!   on kernels before 4.8 and reads other processes' memory. (Docker allows `ptrace` and
//!   `process_vm_readv`/`writev` without the capability on kernels from 4.8; codex keeps
//!   them behind it, so debuggers need `--cap-add CAP_SYS_PTRACE`.)
//! - eBPF (`bpf`) without CAP_BPF or CAP_SYS_ADMIN, `perf_event_open` without CAP_PERFMON
//!   or CAP_SYS_ADMIN: large kernel surfaces that leak kernel addresses.
//! - `userfaultfd`: lets an attacker stall the kernel in the middle of a copy, the
//!   classic way to win races in kernel exploits.
//! - The host clock (`settimeofday`, `stime`, `clock_settime`) without CAP_SYS_TIME:
//!   clocks are not namespaced.
//! - `open_by_handle_at` without CAP_DAC_READ_SEARCH: the "shocker" escape opened host
//!   files by guessing handles.
//! - The kernel log (`syslog`) without CAP_SYSLOG/CAP_SYS_ADMIN: it leaks kernel addresses.
//! - Process accounting (`acct`), I/O ports (`iopl`, `ioperm`), `vhangup`, NUMA policy
//!   (`mbind`, `set_mempolicy`, ...) without their capabilities.
//! - Obsolete or dangerous interfaces, always: `uselib`, `_sysctl`, `sysfs`, `ustat`,
//!   `nfsservctl`, `vm86`, `vm86old`, `lookup_dcookie` (CAP_SYS_ADMIN only),
//!   `move_pages`, and `personality` with any other persona.
//! - Anything newer than this list: a syscall the list does not name is denied (EPERM,
//!   not ENOSYS, so a program probing a new syscall sees a refusal rather than "not
//!   implemented") until it is reviewed and added.
//!
//! Syscall names the installed libseccomp does not know are skipped when the profile is
//! compiled (see [`crate::seccomp::Filter::compile`]), so they are denied too.
//!
//! # Data format (`seccomp-default.json`)
//!
//! `defaultAction`, `defaultErrnoRet` as in OCI; `architectures` maps the build target
//! (`std::env::consts::ARCH`) to OCI architecture names (none for other targets: native
//! only). Each entry of `groups` becomes one OCI syscall rule:
//! `names`, `action` (default `SCMP_ACT_ALLOW`), `errnoRet`, `args` (OCI argument
//! conditions; `value`/`valueTwo` may be numbers or `"0x…"` strings), `onlyWith` (kept if
//! the container has any of these capabilities), `onlyWithout` (dropped if it has any),
//! `onlyOn` (kept on these build targets), and a free-form `comment`.

use std::collections::HashSet;

use oci_spec::runtime::LinuxSeccomp;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The profile's data, as shipped.
pub const DATA: &str = include_str!("seccomp-default.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Data<'a> {
    #[allow(dead_code)]
    comment: IgnoredAny,
    default_action: &'a str,
    default_errno_ret: u32,
    #[serde(borrow)]
    architectures: std::collections::BTreeMap<&'a str, Vec<&'a str>>,
    #[serde(borrow)]
    groups: Vec<Group<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Group<'a> {
    #[allow(dead_code)]
    comment: IgnoredAny,
    #[serde(borrow)]
    names: Vec<&'a str>,
    #[serde(default, borrow)]
    action: Option<&'a str>,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default, borrow)]
    args: Vec<Arg<'a>>,
    #[serde(default, borrow)]
    only_with: Vec<&'a str>,
    #[serde(default, borrow)]
    only_without: Vec<&'a str>,
    #[serde(default, borrow)]
    only_on: Vec<&'a str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Arg<'a> {
    index: u32,
    op: &'a str,
    #[serde(borrow)]
    value: Num<'a>,
    #[serde(default, borrow)]
    value_two: Option<Num<'a>>,
}

/// A number written as a JSON number or a `"0x…"` string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Num<'a> {
    N(u64),
    S(&'a str),
}

impl Num<'_> {
    fn get(&self) -> u64 {
        match self {
            Num::N(n) => *n,
            Num::S(s) => {
                let t = s.trim();
                let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(h) => u64::from_str_radix(h, 16),
                    None => t.parse(),
                };
                r.unwrap_or_else(|e| panic!("seccomp-default.json: bad number {s:?}: {e}"))
            }
        }
    }
}

/// The embedded data, its strings borrowed from it (it has no escapes to undo): this
/// runs in every `codex-ctr create`, on the start's path.
fn data() -> Data<'static> {
    serde_json::from_str(DATA)
        .unwrap_or_else(|e| panic!("the embedded seccomp-default.json is invalid: {e}"))
}

/// `CAP_SYS_ADMIN`, `cap_sys_admin` and `SYS_ADMIN` all name CAP_SYS_ADMIN.
fn normalize_cap(c: &str) -> String {
    let u = c.trim().to_ascii_uppercase();
    if u.starts_with("CAP_") {
        u
    } else {
        format!("CAP_{u}")
    }
}

impl Group<'_> {
    fn applies(&self, caps: &HashSet<String>, arch: &str) -> bool {
        (self.only_with.is_empty() || self.only_with.iter().any(|c| caps.contains(*c)))
            && !self.only_without.iter().any(|c| caps.contains(*c))
            && (self.only_on.is_empty() || self.only_on.contains(&arch))
    }
    fn is_plain_allow(&self) -> bool {
        self.args.is_empty() && self.action.unwrap_or("SCMP_ACT_ALLOW") == "SCMP_ACT_ALLOW"
    }
}

/// The profile for a container holding `caps` (capability names, normally the bounding
/// set; `CAP_` prefix optional), as OCI `linux.seccomp` JSON for the build target.
///
/// Rules keep the data's groups (one rule per group that applies, in order); a name that
/// an earlier unconditional allow rule already allows is left out of later ones, so no
/// name is allowed twice (CAP_SYS_ADMIN and CAP_BPF both allow `bpf`).
pub fn default_profile_json(caps: &[&str]) -> Value {
    profile_for(caps, std::env::consts::ARCH)
}

fn profile_for(caps: &[&str], arch: &str) -> Value {
    let d = data();
    let caps: HashSet<String> = caps.iter().map(|c| normalize_cap(c)).collect();
    let mut allowed: HashSet<&str> = HashSet::new();
    let mut rules = Vec::new();
    let text = |s: &str| Value::String(s.to_string());
    for g in d.groups.iter().filter(|g| g.applies(&caps, arch)) {
        let plain = g.is_plain_allow();
        let names: Vec<Value> = g
            .names
            .iter()
            .filter(|n| !plain || allowed.insert(n))
            .map(|n| text(n))
            .collect();
        if names.is_empty() {
            continue;
        }
        let mut r = Map::new();
        r.insert("names".into(), Value::Array(names));
        r.insert("action".into(), text(g.action.unwrap_or("SCMP_ACT_ALLOW")));
        if let Some(e) = g.errno_ret {
            r.insert("errnoRet".into(), e.into());
        }
        if !g.args.is_empty() {
            let args: Vec<Value> = g
                .args
                .iter()
                .map(|a| {
                    let mut v = json!({"index": a.index, "value": a.value.get(), "op": a.op});
                    if let Some(two) = &a.value_two {
                        v["valueTwo"] = json!(two.get());
                    }
                    v
                })
                .collect();
            r.insert("args".into(), Value::Array(args));
        }
        rules.push(Value::Object(r));
    }
    let architectures = d
        .architectures
        .get(arch)
        .map(|a| a.iter().map(|s| text(s)).collect());
    json!({
        "defaultAction": d.default_action,
        "defaultErrnoRet": d.default_errno_ret,
        "architectures": Value::Array(architectures.unwrap_or_default()),
        "syscalls": Value::Array(rules),
    })
}

/// The default profile for a container holding `caps` (see [`default_profile_json`]).
pub fn default_profile(caps: &[&str]) -> LinuxSeccomp {
    serde_json::from_value(default_profile_json(caps))
        .unwrap_or_else(|e| panic!("the default seccomp profile is not a valid LinuxSeccomp: {e}"))
}

/// Sets `linux.seccomp` of a config.json value to the default profile for the
/// capabilities in its `process.capabilities.bounding` (none if absent).
pub fn set_default_profile(config: &mut Value) {
    let caps: Vec<String> = config
        .pointer("/process/capabilities/bounding")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    let profile = default_profile_json(&caps);
    if !config.get("linux").is_some_and(Value::is_object) {
        config["linux"] = json!({});
    }
    config["linux"]["seccomp"] = profile;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::Filter;

    /// Every capability the data gates a group on, plus one it does not mention.
    fn all_caps() -> Vec<String> {
        let mut v: Vec<String> = data()
            .groups
            .iter()
            .flat_map(|g| g.only_with.iter().chain(&g.only_without))
            .map(|c| c.to_string())
            .collect();
        v.push("CAP_NET_ADMIN".into());
        v.sort();
        v.dedup();
        v
    }

    fn rules(p: &Value) -> &Vec<Value> {
        p["syscalls"].as_array().expect("syscalls array")
    }

    /// Names allowed without conditions.
    fn plain_allowed(p: &Value) -> Vec<String> {
        rules(p)
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW" && r.get("args").is_none())
            .flat_map(|r| r["names"].as_array().unwrap().iter())
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    /// (action, errnoRet, args) of every rule naming `name`.
    fn rules_for<'a>(p: &'a Value, name: &str) -> Vec<&'a Value> {
        rules(p)
            .iter()
            .filter(|r| r["names"].as_array().unwrap().iter().any(|n| n == name))
            .collect()
    }

    fn cap_sets() -> Vec<Vec<String>> {
        let mut sets = vec![vec![], all_caps()];
        sets.extend(all_caps().into_iter().map(|c| vec![c]));
        sets
    }

    #[test]
    fn data_parses_and_every_profile_is_a_linux_seccomp() {
        for arch in ["x86_64", "aarch64", "riscv64"] {
            for caps in cap_sets() {
                let c: Vec<&str> = caps.iter().map(String::as_str).collect();
                let v = profile_for(&c, arch);
                let s: LinuxSeccomp = serde_json::from_value(v.clone())
                    .unwrap_or_else(|e| panic!("{arch} {caps:?}: {e}"));
                // and back: nothing is lost in the OCI type
                assert_eq!(serde_json::to_value(&s).unwrap(), v, "{arch} {caps:?}");
            }
        }
    }

    #[test]
    fn default_action_is_eperm_and_architectures_follow_the_target() {
        let p = default_profile_json(&[]);
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        assert_eq!(
            profile_for(&[], "x86_64")["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        assert_eq!(
            profile_for(&[], "aarch64")["architectures"],
            json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
        );
        assert_eq!(profile_for(&[], "riscv64")["architectures"], json!([]));
        // x86-only names only on x86_64 builds
        assert!(plain_allowed(&profile_for(&[], "x86_64")).contains(&"arch_prctl".into()));
        assert!(!plain_allowed(&profile_for(&[], "aarch64")).contains(&"arch_prctl".into()));
        assert!(plain_allowed(&profile_for(&[], "aarch64")).contains(&"set_tls".into()));
    }

    #[test]
    fn compiles_with_libseccomp_for_every_capability_set() {
        for caps in cap_sets() {
            let c: Vec<&str> = caps.iter().map(String::as_str).collect();
            let p = default_profile(&c);
            Filter::compile(&p).unwrap_or_else(|e| panic!("{caps:?}: {e}"));
        }
    }

    #[test]
    fn no_syscall_is_allowed_twice() {
        for arch in ["x86_64", "aarch64"] {
            for caps in cap_sets() {
                let c: Vec<&str> = caps.iter().map(String::as_str).collect();
                let names = plain_allowed(&profile_for(&c, arch));
                let mut seen = HashSet::new();
                let dups: Vec<&String> = names.iter().filter(|n| !seen.insert(*n)).collect();
                assert!(dups.is_empty(), "{arch} {caps:?}: allowed twice: {dups:?}");
            }
        }
        // In the data itself, no unconditional group repeats a name and no gated group
        // names something that is allowed anyway (the gate would mean nothing).
        let d = data();
        let mut base = HashSet::new();
        for g in d
            .groups
            .iter()
            .filter(|g| g.is_plain_allow() && g.only_with.is_empty() && g.only_without.is_empty())
        {
            for n in &g.names {
                assert!(base.insert(*n), "{n} is listed twice");
            }
        }
        for g in d.groups.iter().filter(|g| !g.only_with.is_empty()) {
            for n in &g.names {
                assert!(
                    !base.contains(n),
                    "{n} is gated on {:?} but allowed anyway",
                    g.only_with
                );
            }
        }
    }

    #[test]
    fn gated_syscalls_appear_only_with_their_capability() {
        let d = data();
        let none = plain_allowed(&default_profile_json(&[]));
        for g in d.groups.iter().filter(|g| !g.only_with.is_empty()) {
            for cap in &g.only_with {
                let with = plain_allowed(&default_profile_json(&[cap]));
                for n in g.names.iter().map(|n| n.to_string()) {
                    assert!(!none.contains(&n), "{n} is allowed without {cap}");
                    assert!(with.contains(&n), "{n} is not allowed with {cap}");
                }
            }
        }
        // spot checks against the brief
        let gated = [
            ("CAP_SYS_ADMIN", "mount"),
            ("CAP_SYS_ADMIN", "umount2"),
            ("CAP_SYS_ADMIN", "unshare"),
            ("CAP_SYS_ADMIN", "setns"),
            ("CAP_SYS_ADMIN", "pivot_root"),
            ("CAP_SYS_ADMIN", "bpf"),
            ("CAP_BPF", "bpf"),
            ("CAP_PERFMON", "perf_event_open"),
            ("CAP_SYS_PTRACE", "ptrace"),
            ("CAP_SYS_PTRACE", "process_vm_readv"),
            ("CAP_SYS_PTRACE", "kcmp"),
            ("CAP_SYS_MODULE", "finit_module"),
            ("CAP_SYS_BOOT", "reboot"),
            ("CAP_SYS_CHROOT", "chroot"),
            ("CAP_SYS_TIME", "settimeofday"),
            ("CAP_SYS_TIME", "clock_settime"),
            ("CAP_SYS_NICE", "mbind"),
            ("CAP_SYS_PACCT", "acct"),
            ("CAP_SYS_RAWIO", "iopl"),
            ("CAP_SYSLOG", "syslog"),
            ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
            ("CAP_SYS_TTY_CONFIG", "vhangup"),
        ];
        for (cap, n) in gated {
            assert!(!none.contains(&n.to_string()), "{n} allowed without {cap}");
            assert!(
                plain_allowed(&default_profile_json(&[cap])).contains(&n.to_string()),
                "{n} with {cap}"
            );
        }
        // the prefix and case do not matter
        assert!(plain_allowed(&default_profile_json(&["sys_admin"])).contains(&"mount".into()));
    }

    #[test]
    fn always_denied_syscalls_are_never_allowed() {
        let every: Vec<String> = all_caps();
        let c: Vec<&str> = every.iter().map(String::as_str).collect();
        for arch in ["x86_64", "aarch64"] {
            let p = profile_for(&c, arch);
            for n in [
                "add_key",
                "request_key",
                "keyctl",
                "kexec_load",
                "kexec_file_load",
                "swapon",
                "swapoff",
                "userfaultfd",
                "uselib",
                "_sysctl",
                "nfsservctl",
                "vm86",
                "move_pages",
                "create_module",
                "query_module",
                "get_kernel_syms",
            ] {
                assert!(rules_for(&p, n).is_empty(), "{n} must stay denied ({arch})");
            }
        }
    }

    #[test]
    fn clone_and_clone3_depend_on_cap_sys_admin() {
        let p = default_profile_json(&["CAP_KILL"]);
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1, "{clone:?}");
        assert_eq!(
            clone[0]["args"],
            json!([{
                "index": 0, "value": 0x7E02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"
            }])
        );
        assert_eq!(clone[0]["action"], "SCMP_ACT_ALLOW");
        let clone3 = rules_for(&p, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3[0]["errnoRet"], 38);

        let p = default_profile_json(&["CAP_SYS_ADMIN"]);
        for n in ["clone", "clone3"] {
            let r = rules_for(&p, n);
            assert_eq!(r.len(), 1, "{n}: {r:?}");
            assert_eq!(r[0]["action"], "SCMP_ACT_ALLOW");
            assert!(
                r[0].get("args").is_none(),
                "{n} unconditional with CAP_SYS_ADMIN"
            );
        }
    }

    #[test]
    fn personality_and_socket_are_allowed_only_with_safe_arguments() {
        let p = default_profile_json(&[]);
        let mut values: Vec<u64> = rules_for(&p, "personality")
            .iter()
            .map(|r| {
                let a = r["args"].as_array().expect("personality has args");
                assert_eq!(a.len(), 1);
                assert_eq!(a[0]["op"], "SCMP_CMP_EQ");
                assert_eq!(a[0]["index"], 0);
                a[0]["value"].as_u64().unwrap()
            })
            .collect();
        values.sort();
        assert_eq!(values, [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff]);
        let socket = rules_for(&p, "socket");
        assert_eq!(socket.len(), 1);
        assert_eq!(
            socket[0]["args"],
            json!([{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}])
        );
    }

    #[test]
    fn set_default_profile_uses_the_bounding_set() {
        let mut cfg = json!({"process": {"capabilities": {"bounding": ["CAP_SYS_ADMIN"]}}});
        set_default_profile(&mut cfg);
        assert_eq!(
            cfg["linux"]["seccomp"],
            default_profile_json(&["CAP_SYS_ADMIN"])
        );
        let mut cfg = json!({"linux": {"namespaces": []}});
        set_default_profile(&mut cfg);
        assert_eq!(cfg["linux"]["seccomp"], default_profile_json(&[]));
        assert_eq!(cfg["linux"]["namespaces"], json!([]));
    }

    /// Recent syscalls an older libseccomp may not know (2.5.4 of Debian 12 lacks `mseal`);
    /// any other name libseccomp does not know is a typo.
    const RECENT: &[&str] = &[
        "cachestat",
        "fchmodat2",
        "futex_requeue",
        "futex_wait",
        "futex_wake",
        "map_shadow_stack",
        "mseal",
        "set_mempolicy_home_node",
    ];

    #[test]
    fn every_name_is_a_syscall_libseccomp_knows() {
        use libseccomp::{ScmpArch, ScmpSyscall};
        let arches = [
            ScmpArch::X8664,
            ScmpArch::X86,
            ScmpArch::X32,
            ScmpArch::Aarch64,
            ScmpArch::Arm,
        ];
        let mut unknown = Vec::new();
        for g in data().groups {
            for n in g.names {
                let known = arches
                    .iter()
                    .any(|a| ScmpSyscall::from_name_by_arch(n, *a).is_ok());
                if !known && !RECENT.contains(&n) {
                    unknown.push(n);
                }
            }
        }
        assert!(
            unknown.is_empty(),
            "not syscall names (typos?): {unknown:?}"
        );
    }
}
