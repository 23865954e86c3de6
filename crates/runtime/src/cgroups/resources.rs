//! Writing `linux.resources` into the container's cgroups. This covers what platforms
//! send on every create (device rules, pids, memory, cpu); the rest of the resource
//! spec is refused at load time until it is implemented.

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::devices_bpf::{self, Rule};
use super::{CgroupDir, Cgroups};
use crate::error::{Context, Error, Result};
use crate::rootfs::devices::DEFAULT_DEVICES;

fn write(dir: &CgroupDir, file: &str, value: &str) -> Result<()> {
    let p = dir.path.join(file);
    std::fs::write(&p, value).ctx(|| format!("writing {value:?} to {}", p.display()))
}

fn find<'a>(cg: &'a Cgroups, controller: &str, field: &str) -> Result<&'a CgroupDir> {
    if let Some(d) = cg.dirs.iter().find(|d| d.has(controller)) {
        return Ok(d);
    }
    if let Some(d) = cg.dirs.iter().find(|d| d.is_v2()) {
        let enabled = std::fs::read_to_string(
            d.path
                .parent()
                .unwrap_or(Path::new("/"))
                .join("cgroup.subtree_control"),
        )
        .unwrap_or_default();
        if enabled.split_whitespace().any(|c| c == controller) {
            return Ok(d);
        }
    }
    let why = match cg.dirs.iter().find(|d| d.is_v2()) {
        Some(d) => {
            let parent = d.path.parent().unwrap_or(Path::new("/"));
            let has_procs = std::fs::read_to_string(parent.join("cgroup.procs"))
                .is_ok_and(|s| !s.trim().is_empty());
            if has_procs {
                format!(
                    "{} holds processes, so it cannot delegate controllers (cgroup v2's \
                     no-internal-processes rule): run the runtime from another cgroup or give \
                     the container an absolute linux.cgroupsPath",
                    parent.display()
                )
            } else {
                format!(
                    "{} does not delegate it (cgroup.subtree_control)",
                    parent.display()
                )
            }
        }
        None => "no hierarchy on this host has it".to_string(),
    };
    Err(Error::Unsupported(format!(
        "{field}: the {controller} controller is not available to this container's cgroup: {why}"
    )))
}

/// Applies `res` (with the spec's extra devices allowed) to the container's cgroups.
/// `initial` is true at create; an update replaces the v2 device program.
pub fn apply_resources(
    cg: &Cgroups,
    res: &LinuxResources,
    spec_devices: &[oci_spec::runtime::LinuxDevice],
    initial: bool,
) -> Result<()> {
    if let Some(pids) = res.pids() {
        let d = find(cg, "pids", "linux.resources.pids")?;
        let v = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".into()
        };
        write(d, "pids.max", &v)?;
    }
    if let Some(mem) = res.memory() {
        apply_memory(cg, mem)?;
    }
    if let Some(cpu) = res.cpu() {
        apply_cpu(cg, cpu)?;
    }
    if let Some(rules) = res.devices() {
        apply_devices(cg, rules, spec_devices, initial)?;
    }
    if let Some(io) = res.block_io() {
        apply_block_io(cg, io)?;
    }
    for (i, h) in res.hugepage_limits().iter().flatten().enumerate() {
        let field = format!("linux.resources.hugepageLimits[{i}]");
        let size = h.page_size();
        if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::config(
                format!("{field}.pageSize"),
                format!("{size:?} is not a page size like 2MB"),
            ));
        }
        let d = find(cg, "hugetlb", &field)?;
        let file = if d.is_v2() {
            format!("hugetlb.{size}.max")
        } else {
            format!("hugetlb.{size}.limit_in_bytes")
        };
        if !d.path.join(&file).exists() {
            return Err(Error::Unsupported(format!(
                "{field}: this host has no {size} huge pages"
            )));
        }
        write(d, &file, &h.limit().to_string())?;
    }
    if let Some(unified) = res.unified().as_ref().filter(|u| !u.is_empty()) {
        let d = cg.dirs.iter().find(|d| d.is_v2()).ok_or_else(|| {
            Error::Unsupported(
                "linux.resources.unified: this host has no cgroup v2 hierarchy".into(),
            )
        })?;
        let mut keys: Vec<_> = unified.keys().collect();
        keys.sort();
        for k in keys {
            let field = format!("linux.resources.unified.{k}");
            if k.contains('/') || k.starts_with('.') || !k.contains('.') {
                return Err(Error::config(
                    field,
                    "is not a cgroup v2 interface file name",
                ));
            }
            if !d.path.join(k).exists() {
                return Err(Error::Unsupported(format!(
                    "{field}: {} has no such file (controller not enabled?)",
                    d.path.display()
                )));
            }
            write(d, k, &unified[k])?;
        }
    }
    Ok(())
}

/// `linux.resources.blockIO`: v1 blkio (BFQ or CFQ weights, throttles) or v2 io.
fn apply_block_io(cg: &Cgroups, io: &oci_spec::runtime::LinuxBlockIo) -> Result<()> {
    const F: &str = "linux.resources.blockIO";
    let d = find(
        cg,
        if cg.dirs.iter().any(|d| d.has("blkio")) {
            "blkio"
        } else {
            "io"
        },
        F,
    )?;
    if io.leaf_weight().is_some()
        || io
            .weight_device()
            .iter()
            .flatten()
            .any(|w| w.leaf_weight().is_some())
    {
        return Err(Error::Unsupported(format!(
            "{F}.leafWeight (removed from the kernel)"
        )));
    }
    let pick = |names: &[&str]| {
        names
            .iter()
            .find(|n| d.path.join(n).exists())
            .map(|n| n.to_string())
    };
    if let Some(w) = io.weight() {
        if !(10..=1000).contains(&w) {
            return Err(Error::config(
                format!("{F}.weight"),
                format!("{w} is outside 10..1000"),
            ));
        }
        if d.is_v2() {
            match pick(&["io.bfq.weight", "io.weight"]) {
                // v2's io.weight is 1..10000: the conversion runc uses.
                Some(f) if f == "io.weight" => write(
                    d,
                    &f,
                    &format!("default {}", 1 + (w as u64 - 10) * 9999 / 990),
                )?,
                Some(f) => write(d, &f, &w.to_string())?,
                None => {
                    return Err(Error::Unsupported(format!(
                        "{F}.weight: no io weight file (no BFQ or io.weight)"
                    )))
                }
            }
        } else {
            let f = pick(&["blkio.bfq.weight", "blkio.weight"]).ok_or_else(|| {
                Error::Unsupported(format!(
                    "{F}.weight: no blkio weight file (no BFQ or CFQ scheduler)"
                ))
            })?;
            write(d, &f, &w.to_string())?;
        }
    }
    for (i, wd) in io.weight_device().iter().flatten().enumerate() {
        let Some(w) = wd.weight() else { continue };
        let field = format!("{F}.weightDevice[{i}]");
        let line = format!("{}:{} {w}", wd.major(), wd.minor());
        let names: &[&str] = if d.is_v2() {
            &["io.bfq.weight", "io.weight"]
        } else {
            &["blkio.bfq.weight_device", "blkio.weight_device"]
        };
        let f = pick(names)
            .ok_or_else(|| Error::Unsupported(format!("{field}: no per-device weight file")))?;
        write(d, &f, &line)?;
    }
    let throttles = [
        (
            io.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
            "rbps",
            "throttleReadBpsDevice",
        ),
        (
            io.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
            "wbps",
            "throttleWriteBpsDevice",
        ),
        (
            io.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
            "riops",
            "throttleReadIOPSDevice",
        ),
        (
            io.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
            "wiops",
            "throttleWriteIOPSDevice",
        ),
    ];
    for (list, v1_file, v2_key, name) in throttles {
        for t in list.iter().flatten() {
            if d.is_v2() {
                let rate = if t.rate() == 0 {
                    "max".to_string()
                } else {
                    t.rate().to_string()
                };
                write(
                    d,
                    "io.max",
                    &format!("{}:{} {v2_key}={rate}", t.major(), t.minor()),
                )?;
            } else {
                write(
                    d,
                    v1_file,
                    &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
                )
                .map_err(|e| Error::config(format!("{F}.{name}"), e.to_string()))?;
            }
        }
    }
    Ok(())
}

fn apply_memory(cg: &Cgroups, mem: &oci_spec::runtime::LinuxMemory) -> Result<()> {
    const F: &str = "linux.resources.memory";
    if mem.kernel().is_some() || mem.kernel_tcp().is_some() {
        return Err(Error::Unsupported(format!(
            "{F}.kernel and kernelTCP (removed from the kernel)"
        )));
    }
    let d = find(cg, "memory", F)?;
    let limit = |v: i64| {
        if v < 0 {
            "-1".to_string()
        } else {
            v.to_string()
        }
    };
    if d.is_v2() {
        let max = |v: i64| {
            if v < 0 {
                "max".to_string()
            } else {
                v.to_string()
            }
        };
        if let Some(l) = mem.limit() {
            write(d, "memory.max", &max(l))?;
        }
        if let Some(r) = mem.reservation() {
            write(d, "memory.low", &max(r))?;
        }
        if let Some(s) = mem.swap() {
            // OCI's swap is memory+swap; v2 limits swap alone.
            let v = match mem.limit() {
                Some(l) if s >= 0 && l >= 0 => (s - l).max(0).to_string(),
                _ => max(s),
            };
            write(d, "memory.swap.max", &v)?;
        }
        if mem.disable_oom_killer() == Some(true) {
            return Err(Error::Unsupported(format!(
                "{F}.disableOOMKiller on cgroup v2"
            )));
        }
        if mem.swappiness().is_some() {
            return Err(Error::Unsupported(format!("{F}.swappiness on cgroup v2")));
        }
        return Ok(());
    }
    // v1: memsw must never be below the limit, so the order depends on the direction.
    if let Some(l) = mem.limit() {
        if let Some(s) = mem.swap() {
            if !d.path.join("memory.memsw.limit_in_bytes").exists() {
                return Err(Error::Unsupported(format!(
                    "{F}.swap: swap accounting is off on this host"
                )));
            }
            if write(d, "memory.limit_in_bytes", &limit(l)).is_err() {
                write(d, "memory.memsw.limit_in_bytes", &limit(s))?;
                write(d, "memory.limit_in_bytes", &limit(l))?;
            } else {
                write(d, "memory.memsw.limit_in_bytes", &limit(s))?;
            }
        } else {
            write(d, "memory.limit_in_bytes", &limit(l))?;
        }
    } else if let Some(s) = mem.swap() {
        write(d, "memory.memsw.limit_in_bytes", &limit(s))?;
    }
    if let Some(r) = mem.reservation() {
        write(d, "memory.soft_limit_in_bytes", &limit(r))?;
    }
    if let Some(s) = mem.swappiness() {
        if s > 100 {
            return Err(Error::config(
                format!("{F}.swappiness"),
                format!("{s} is above 100"),
            ));
        }
        write(d, "memory.swappiness", &s.to_string())?;
    }
    if mem.disable_oom_killer() == Some(true) {
        write(d, "memory.oom_control", "1")?;
    }
    Ok(())
}

fn apply_cpu(cg: &Cgroups, cpu: &oci_spec::runtime::LinuxCpu) -> Result<()> {
    const F: &str = "linux.resources.cpu";
    if cpu.cpus().is_some() || cpu.mems().is_some() {
        let d = find(cg, "cpuset", F)?;
        if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
            write(d, "cpuset.cpus", c)?;
        }
        if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
            write(d, "cpuset.mems", m)?;
        }
    }
    if cpu.shares().is_none()
        && cpu.quota().is_none()
        && cpu.period().is_none()
        && cpu.idle().is_none()
    {
        if cpu.realtime_runtime().is_some() || cpu.realtime_period().is_some() {
            return Err(Error::Unsupported(format!(
                "{F}.realtimeRuntime/realtimePeriod"
            )));
        }
        return Ok(());
    }
    let d = find(cg, "cpu", F)?;
    if d.is_v2() {
        if let Some(s) = cpu.shares().filter(|s| *s > 0) {
            // The conversion runc and crun use, so a workload gets the same weight.
            let weight = 1 + ((s.clamp(2, 262_144) - 2) * 9999) / 262_142;
            write(d, "cpu.weight", &weight.to_string())?;
        }
        if cpu.quota().is_some() || cpu.period().is_some() {
            let quota = match cpu.quota() {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".into(),
            };
            let period = cpu.period().unwrap_or(100_000);
            write(d, "cpu.max", &format!("{quota} {period}"))?;
        }
        if let Some(i) = cpu.idle() {
            write(d, "cpu.idle", &i.to_string())?;
        }
        return Ok(());
    }
    if cpu.idle().is_some_and(|i| i != 0) {
        return Err(Error::Unsupported(format!("{F}.idle on cgroup v1")));
    }
    if let Some(s) = cpu.shares().filter(|s| *s > 0) {
        write(d, "cpu.shares", &s.to_string())?;
    }
    if let Some(p) = cpu.period().filter(|p| *p > 0) {
        write(d, "cpu.cfs_period_us", &p.to_string())?;
    }
    if let Some(q) = cpu.quota().filter(|q| *q != 0) {
        write(d, "cpu.cfs_quota_us", &q.to_string())?;
    }
    Ok(())
}

/// One rule in the kernel's v1 syntax: `c 1:3 rwm`, `a *:* rwm`.
fn rule_line(
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: Option<&str>,
) -> String {
    let t = match typ {
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => "c",
        Some(LinuxDeviceType::B) => "b",
        Some(LinuxDeviceType::P) => "p",
        Some(LinuxDeviceType::A) | None => "a",
    };
    let num = |n: Option<i64>| {
        n.filter(|n| *n >= 0)
            .map_or("*".to_string(), |n| n.to_string())
    };
    format!(
        "{t} {}:{} {}",
        num(major),
        num(minor),
        access.unwrap_or("rwm")
    )
}

/// The device allow list a container always has, after the spec's own rules:
/// the default devices, /dev/pts/*, /dev/ptmx, and the spec's `linux.devices`.
pub fn default_allow_rules(spec_devices: &[oci_spec::runtime::LinuxDevice]) -> Vec<String> {
    let mut rules: Vec<String> = DEFAULT_DEVICES
        .iter()
        .map(|d| format!("c {}:{} rwm", d.major, d.minor))
        .collect();
    rules.push("c 136:* rwm".into());
    rules.push("c 5:2 rwm".into());
    rules.push("c 5:1 rwm".into());
    // A FIFO (`p`) needs a node, not a rule: the device cgroup controls char and block
    // devices only, and v1's devices.allow refuses `p` (EINVAL).
    for d in spec_devices
        .iter()
        .filter(|d| d.typ() != LinuxDeviceType::P)
    {
        rules.push(rule_line(
            Some(d.typ()),
            Some(d.major()),
            Some(d.minor()),
            Some("rwm"),
        ));
    }
    rules
}

fn apply_devices(
    cg: &Cgroups,
    rules: &[LinuxDeviceCgroup],
    spec_devices: &[oci_spec::runtime::LinuxDevice],
    initial: bool,
) -> Result<()> {
    let mut lines = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        if let Some(a) = r.access() {
            if a.is_empty() || !a.chars().all(|c| "rwm".contains(c)) {
                return Err(Error::config(
                    format!("linux.resources.devices[{i}].access"),
                    format!("{a:?} must be a combination of r, w and m"),
                ));
            }
        }
        lines.push((
            r.allow(),
            rule_line(r.typ(), r.major(), r.minor(), r.access().as_deref()),
        ));
    }
    lines.extend(
        default_allow_rules(spec_devices)
            .into_iter()
            .map(|l| (true, l)),
    );
    if let Some(d) = cg.dirs.iter().find(|d| d.has("devices")) {
        for (allow, line) in &lines {
            write(
                d,
                if *allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                },
                line,
            )?;
        }
    }
    // v2 (and the unified half of a hybrid host): an eBPF program on the cgroup.
    if let Some(d) = cg.dirs.iter().find(|d| d.is_v2()) {
        let parsed: Vec<Rule> = lines
            .iter()
            .filter_map(|(allow, l)| Rule::parse(*allow, l))
            .collect();
        if initial {
            devices_bpf::attach(&d.path, &parsed)?;
        } else {
            devices_bpf::replace(&d.path, &parsed)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_use_the_kernel_syntax() {
        assert_eq!(rule_line(None, None, None, Some("rwm")), "a *:* rwm");
        assert_eq!(
            rule_line(Some(LinuxDeviceType::C), Some(1), Some(3), Some("rw")),
            "c 1:3 rw"
        );
        assert_eq!(
            rule_line(Some(LinuxDeviceType::B), Some(8), None, None),
            "b 8:* rwm"
        );
    }

    #[test]
    fn default_allow_list_covers_pts_and_default_devices() {
        let rules = default_allow_rules(&[]);
        assert!(rules.contains(&"c 1:3 rwm".to_string()));
        assert!(rules.contains(&"c 136:* rwm".to_string()));
    }
}
