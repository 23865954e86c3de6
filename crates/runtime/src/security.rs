//! The process's privileges and limits: rlimits, user and groups, the five capability
//! sets, no_new_privs, and the scheduling attributes of runtime-spec 1.2.

use std::collections::HashSet;

use oci_spec::runtime::{LinuxCapabilities, PosixRlimit, Process};

use crate::error::{Context, Error, Result};

/// A capability set as a bit mask, built from OCI names (`CAP_NET_ADMIN`).
fn mask(field: &str, set: Option<&HashSet<oci_spec::runtime::Capability>>) -> Result<u64> {
    let mut m = 0u64;
    for c in set.into_iter().flatten() {
        let name = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let cap: caps::Capability = name
            .parse()
            .map_err(|_| Error::config(field.to_string(), format!("unknown capability {name}")))?;
        m |= 1u64 << cap.index();
    }
    Ok(m)
}

/// The capability masks a process should end with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapMasks {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapMasks {
    pub fn from_spec(c: &LinuxCapabilities) -> Result<CapMasks> {
        Ok(CapMasks {
            bounding: mask("process.capabilities.bounding", c.bounding().as_ref())?,
            effective: mask("process.capabilities.effective", c.effective().as_ref())?,
            permitted: mask("process.capabilities.permitted", c.permitted().as_ref())?,
            inheritable: mask("process.capabilities.inheritable", c.inheritable().as_ref())?,
            ambient: mask("process.capabilities.ambient", c.ambient().as_ref())?,
        })
    }

    /// The ambient capabilities the kernel would refuse to raise: an ambient capability
    /// must be both permitted and inheritable. `runc spec` writes ambient capabilities
    /// with no inheritable set, and runc and crun run that config.
    pub fn unraisable_ambient(&self) -> u64 {
        self.ambient & !(self.permitted & self.inheritable)
    }

    /// These masks without [`CapMasks::unraisable_ambient`]: what the process gets.
    pub fn raisable(mut self) -> CapMasks {
        self.ambient &= self.permitted & self.inheritable;
        self
    }
}

/// The names (`CAP_KILL`) of the ambient capabilities of `c` that cannot be raised
/// ([`CapMasks::unraisable_ambient`]), sorted; for the warning `create` gives.
pub fn unraisable_ambient_names(c: &LinuxCapabilities) -> Result<Vec<String>> {
    let masks = CapMasks::from_spec(c)?;
    let dropped = masks.unraisable_ambient();
    let mut names: Vec<String> = c
        .ambient()
        .iter()
        .flatten()
        .filter_map(|cap| {
            let name = serde_json::to_value(cap).ok()?.as_str()?.to_string();
            let bit = name.parse::<caps::Capability>().ok()?.index();
            (dropped & (1u64 << bit) != 0).then_some(name)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The highest capability the running kernel knows: `PR_CAPBSET_READ` answers EINVAL
/// past it. Never read from /proc/sys/kernel/cap_last_cap: the bounding set is dropped
/// after pivot_root, where /proc is the container's (absent, or a tmpfs that lies, and a
/// lie of 3 would keep every capability above 3 in the bounding set).
///
/// The kernel knows capabilities 0 to the last, densely, so a binary search finds it in
/// 6 calls instead of the 42 of a scan (one for each capability, at every container
/// start).
pub fn last_cap() -> u32 {
    let known = |cap: u32| {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) >= 0 }
    };
    // known(lo) holds (capability 0, CAP_CHOWN, always exists); known(hi) does not (a
    // capability set is 64 bits).
    let (mut lo, mut hi) = (0u32, 64u32);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if known(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Drops from the bounding set every capability not in `bounding`.
pub fn drop_bounding(bounding: u64) -> Result<()> {
    for cap in 0..=last_cap() {
        if bounding & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if r < 0 {
                return Err(std::io::Error::last_os_error())
                    .ctx(|| format!("dropping capability {cap} from the bounding set"));
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Sets effective, permitted and inheritable at once, then the ambient set.
pub fn set_capabilities(m: &CapMasks) -> Result<()> {
    if m.effective & !m.permitted != 0 {
        return Err(Error::config(
            "process.capabilities.effective",
            "contains capabilities that are not in permitted",
        ));
    }
    let header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let split = |v: u64| [(v & 0xffff_ffff) as u32, (v >> 32) as u32];
    let (e, p, i) = (split(m.effective), split(m.permitted), split(m.inheritable));
    let data = [
        CapData {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        CapData {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: header and data are valid v3 capset structures that outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "setting capabilities (capset)");
    }
    // No ambient set (the usual case): no need to know the last capability.
    let ambient_last = if m.ambient == 0 { 0 } else { last_cap() };
    for cap in (0..=ambient_last).filter(|_| m.ambient != 0) {
        if m.ambient & (1 << cap) != 0 {
            // SAFETY: prctl with integer arguments only.
            let r = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error()).ctx(|| {
                    format!(
                        "raising ambient capability {cap} (it must be permitted and inheritable)"
                    )
                });
            }
        }
    }
    Ok(())
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// Sets each rlimit; one above the current hard limit fails with a message that says
/// so (raising needs CAP_SYS_RESOURCE, which the runtime may not have).
pub fn set_rlimits(rlimits: &[PosixRlimit]) -> Result<()> {
    for (i, r) in rlimits.iter().enumerate() {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let field = format!("process.rlimits[{i}]");
        let res = rlimit_resource(&name)
            .ok_or_else(|| Error::config(&field, format!("unknown rlimit {name}")))?;
        if r.soft() > r.hard() {
            return Err(Error::config(
                &field,
                format!("{name}: soft {} is above hard {}", r.soft(), r.hard()),
            ));
        }
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: lim is a valid rlimit that outlives the call.
        if unsafe { libc::setrlimit(res, &lim) } < 0 {
            let err = std::io::Error::last_os_error();
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: cur is a valid out-pointer.
            unsafe { libc::getrlimit(res, &mut cur) };
            return Err(Error::config(
                field,
                format!(
                    "{name} soft={} hard={}: {err} (the current hard limit is {}; raising it needs CAP_SYS_RESOURCE)",
                    r.soft(),
                    r.hard(),
                    cur.rlim_max
                ),
            ));
        }
    }
    Ok(())
}

/// Switches to the spec's user and groups, keeping the permitted capabilities so that
/// they can be set to the spec's sets afterwards.
pub fn switch_user(p: &Process, userns: bool) -> Result<()> {
    let u = p.user();
    let groups: Vec<libc::gid_t> = u.additional_gids().clone().unwrap_or_default();
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    // In a user namespace whose setgroups file says deny, setgroups fails: skip it
    // only when there is nothing to set.
    if !(userns && groups.is_empty()) {
        // SAFETY: groups is a valid array of its length.
        if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } < 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| format!("setgroups {groups:?}"));
        }
    }
    nix::unistd::setresgid(u.gid().into(), u.gid().into(), u.gid().into())
        .ctx(|| format!("setting gid {}", u.gid()))?;
    nix::unistd::setresuid(u.uid().into(), u.uid().into(), u.uid().into())
        .ctx(|| format!("setting uid {}", u.uid()))?;
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    if let Some(mask) = u.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}

pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "setting no_new_privs");
    }
    Ok(())
}

/// `process.ioPriority`, `process.scheduler`, `process.execCPUAffinity.final` and
/// `linux.personality`, applied to the calling process.
pub fn set_process_attributes(
    p: &Process,
    personality: Option<&oci_spec::runtime::LinuxPersonality>,
) -> Result<()> {
    if let Some(per) = personality {
        let domain = serde_json::to_value(per.domain())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let persona: libc::c_ulong = match domain.as_str() {
            "LINUX" => 0x0000,
            "LINUX32" => 0x0008,
            other => {
                return Err(Error::config(
                    "linux.personality.domain",
                    format!("unknown domain {other}"),
                ))
            }
        };
        if per.flags().as_ref().is_some_and(|f| !f.is_empty()) {
            return Err(Error::Unsupported("linux.personality.flags".into()));
        }
        // SAFETY: personality takes a plain integer.
        if unsafe { libc::personality(persona) } < 0 {
            return Err(std::io::Error::last_os_error())
                .ctx(|| format!("setting personality {domain}"));
        }
    }
    if let Some(io) = p.io_priority() {
        let class = serde_json::to_value(io.class())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let class_n: i64 = match class.as_str() {
            "IOPRIO_CLASS_RT" => 1,
            "IOPRIO_CLASS_BE" => 2,
            "IOPRIO_CLASS_IDLE" => 3,
            other => {
                return Err(Error::config(
                    "process.ioPriority.class",
                    format!("unknown class {other}"),
                ))
            }
        };
        if !(0..=7).contains(&io.priority()) {
            return Err(Error::config(
                "process.ioPriority.priority",
                "must be between 0 and 7",
            ));
        }
        let prio = (class_n << 13) | io.priority();
        // SAFETY: ioprio_set with integer arguments (IOPRIO_WHO_PROCESS = 1, self = 0).
        if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, prio) } < 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| "setting the I/O priority");
        }
    }
    if let Some(s) = p.scheduler() {
        set_scheduler(s)?;
    }
    Ok(())
}

#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

fn set_scheduler(s: &oci_spec::runtime::Scheduler) -> Result<()> {
    let policy = serde_json::to_value(s.policy())
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let policy_n = match policy.as_str() {
        "SCHED_OTHER" => 0,
        "SCHED_FIFO" => 1,
        "SCHED_RR" => 2,
        "SCHED_BATCH" => 3,
        "SCHED_ISO" => 4,
        "SCHED_IDLE" => 5,
        "SCHED_DEADLINE" => 6,
        other => {
            return Err(Error::config(
                "process.scheduler.policy",
                format!("unknown policy {other}"),
            ))
        }
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        let name = serde_json::to_value(f)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        flags |= match name.as_str() {
            "SCHED_FLAG_RESET_ON_FORK" => 0x01,
            "SCHED_FLAG_RECLAIM" => 0x02,
            "SCHED_FLAG_DL_OVERRUN" => 0x04,
            "SCHED_FLAG_KEEP_POLICY" => 0x08,
            "SCHED_FLAG_KEEP_PARAMS" => 0x10,
            "SCHED_FLAG_UTIL_CLAMP_MIN" => 0x20,
            "SCHED_FLAG_UTIL_CLAMP_MAX" => 0x40,
            other => {
                return Err(Error::config(
                    "process.scheduler.flags",
                    format!("unknown flag {other}"),
                ))
            }
        };
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: policy_n,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: attr is a valid sched_attr of the size it declares.
    if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) } < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("setting scheduler {policy}"));
    }
    Ok(())
}

/// Parses a cpu list (`0-3,6`) and pins the calling process to it.
pub fn set_affinity(list: &str, field: &str) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) if a <= b => (a, b),
            _ => return Err(Error::config(field, format!("{list:?} is not a cpu list"))),
        };
        for cpu in a..=b {
            set.set(cpu)
                .map_err(|_| Error::config(field, format!("cpu {cpu} is out of range")))?;
        }
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .ctx(|| format!("setting CPU affinity {list}"))
}

/// `linux.memoryPolicy`: set_mempolicy(2) for the container process.
pub fn set_memory_policy(policy: &oci_spec::runtime::LinuxMemoryPolicy) -> Result<()> {
    const F: &str = "linux.memoryPolicy";
    let name = |v: serde_json::Result<serde_json::Value>| {
        v.ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    };
    let mode = name(serde_json::to_value(policy.mode()));
    let mut mode_n: i32 = match mode.as_str() {
        "MPOL_DEFAULT" => 0,
        "MPOL_PREFERRED" => 1,
        "MPOL_BIND" => 2,
        "MPOL_INTERLEAVE" => 3,
        "MPOL_LOCAL" => 4,
        "MPOL_PREFERRED_MANY" => 5,
        "MPOL_WEIGHTED_INTERLEAVE" => 6,
        other => {
            return Err(Error::config(
                format!("{F}.mode"),
                format!("unknown mode {other}"),
            ))
        }
    };
    for f in policy.flags().iter().flatten() {
        mode_n |= match name(serde_json::to_value(f)).as_str() {
            "MPOL_F_STATIC_NODES" => 1 << 15,
            "MPOL_F_RELATIVE_NODES" => 1 << 14,
            "MPOL_F_NUMA_BALANCING" => 1 << 13,
            other => {
                return Err(Error::config(
                    format!("{F}.flags"),
                    format!("unknown flag {other}"),
                ))
            }
        };
    }
    let mut mask: Vec<libc::c_ulong> = Vec::new();
    let nodes = policy.nodes().as_deref().unwrap_or("");
    for part in nodes.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) if a <= b && b < 4096 => (a, b),
            _ => {
                return Err(Error::config(
                    format!("{F}.nodes"),
                    format!("{nodes:?} is not a node list"),
                ))
            }
        };
        for n in a..=b {
            let (word, bit) = (n / 64, n % 64);
            if mask.len() <= word {
                mask.resize(word + 1, 0);
            }
            mask[word] |= 1 << bit;
        }
    }
    if matches!(mode_n & 0xff, 0 | 4) && !mask.is_empty() {
        return Err(Error::config(
            format!("{F}.nodes"),
            format!("{mode} takes no nodes"),
        ));
    }
    let maxnode = if mask.is_empty() {
        0
    } else {
        mask.len() * 64 + 1
    };
    let ptr = if mask.is_empty() {
        std::ptr::null()
    } else {
        mask.as_ptr()
    };
    // SAFETY: ptr points to maxnode-1 bits of mask (or is null with maxnode 0).
    if unsafe { libc::syscall(libc::SYS_set_mempolicy, mode_n, ptr, maxnode) } < 0 {
        return Err(std::io::Error::last_os_error())
            .ctx(|| format!("{F}: set_mempolicy {mode} {nodes:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn probed_last_cap_is_the_kernels() {
        let host: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(super::last_cap(), host);
    }

    #[test]
    fn ambient_capabilities_not_both_permitted_and_inheritable_are_dropped_and_named() {
        let caps: oci_spec::runtime::LinuxCapabilities =
            serde_json::from_value(serde_json::json!({
                "permitted": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"],
                "inheritable": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SETUID"],
                "ambient": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID"]
            }))
            .unwrap();
        let m = super::CapMasks::from_spec(&caps).unwrap();
        let (kill, chown, setuid) = (1u64 << 5, 1u64, 1u64 << 7);
        assert_eq!(m.unraisable_ambient(), kill | setuid);
        assert_eq!(m.raisable().ambient, chown);
        assert_eq!(m.raisable().permitted, m.permitted, "only ambient changes");
        assert_eq!(
            super::unraisable_ambient_names(&caps).unwrap(),
            ["CAP_KILL", "CAP_SETUID"]
        );
    }
}
