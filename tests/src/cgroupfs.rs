//! The host's cgroup hierarchies, read the way the runtime reads them: the mounts in
//! /proc/self/mountinfo (a v1 hierarchy per controller, or a cgroup2 tree) and a process's
//! paths in /proc/PID/cgroup. Nothing here assumes `/sys/fs/cgroup/<controller>`, so the
//! tests that use it run on hybrid and pure cgroup v2 hosts alike.

use std::fs;
use std::path::{Path, PathBuf};

use crate::procfs::parse_mountinfo;

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub mount_point: PathBuf,
    /// v1: the controllers bound to it (`name=...` hierarchies have none); empty for v2.
    pub controllers: Vec<String>,
    pub v2: bool,
}

/// The cgroup hierarchies of a mountinfo text (first mount of each hierarchy root).
pub fn parse_cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    const V1_CONTROLLERS: &[&str] = &[
        "cpuset",
        "cpu",
        "cpuacct",
        "blkio",
        "io",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "perf_event",
        "net_prio",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
    ];
    let mut out: Vec<CgroupMount> = Vec::new();
    for m in parse_mountinfo(mountinfo) {
        let v2 = match m.fstype.as_str() {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let controllers = if v2 {
            Vec::new()
        } else {
            m.super_opts
                .iter()
                .filter(|o| V1_CONTROLLERS.contains(&o.as_str()))
                .cloned()
                .collect()
        };
        // a hierarchy mounted twice (a container's view, a bind) counts once
        if out
            .iter()
            .any(|c| c.v2 == v2 && c.controllers == controllers)
        {
            continue;
        }
        out.push(CgroupMount {
            mount_point: PathBuf::from(m.mount_point),
            controllers,
            v2,
        });
    }
    out
}

/// The cgroup hierarchies mounted in this test's mount namespace.
pub fn cgroup_mounts() -> Vec<CgroupMount> {
    parse_cgroup_mounts(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// True when the host has no v1 controller hierarchy: every controller is in cgroup2.
pub fn cgroup_v2_only() -> bool {
    !cgroup_mounts()
        .iter()
        .any(|m| !m.v2 && !m.controllers.is_empty())
}

/// The controllers a container's placement is checked in: `pids` and `memory` on a host
/// with v1 controllers, the one v2 tree ("") on a pure v2 host. Use with [`cgroup_of`],
/// [`cgroup_dir`] and [`parse_cgroup_line`].
pub fn placement_controllers() -> Vec<&'static str> {
    if cgroup_v2_only() {
        vec![""]
    } else {
        vec!["pids", "memory"]
    }
}

/// The host directory of the hierarchy holding `controller` ("" = the v2 tree), given the
/// mounts and a cgroup path (`/a/b`) in it.
pub fn cgroup_dir_in(mounts: &[CgroupMount], controller: &str, path: &str) -> Option<PathBuf> {
    let m = mounts.iter().find(|m| {
        if controller.is_empty() {
            m.v2
        } else {
            !m.v2 && m.controllers.iter().any(|c| c == controller)
        }
    })?;
    Some(m.mount_point.join(path.trim_start_matches('/')))
}

/// The host directory of `pid`'s cgroup for `controller` ("" = the v2 tree); on a pure v2
/// host a v1 controller name means the v2 tree (where every controller lives).
pub fn cgroup_dir(pid: i64, controller: &str) -> Option<PathBuf> {
    let ctrl = if cgroup_v2_only() { "" } else { controller };
    let path = cgroup_of(pid, ctrl)?;
    cgroup_dir_in(&cgroup_mounts(), ctrl, &path)
}

/// Directories in every mounted cgroup hierarchy whose name contains `needle`: leftovers
/// of a container. Callers show first that the walk finds the container's cgroup while it
/// exists (a walk that cannot find anything proves nothing).
pub fn cgroup_dirs_containing(needle: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, needle: &str, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.filter_map(|e| e.ok()) {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().contains(needle) {
                out.push(p.clone());
            }
            if depth > 0 {
                walk(&p, needle, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    if !needle.is_empty() {
        for m in cgroup_mounts() {
            walk(&m.mount_point, needle, 16, &mut out);
        }
    }
    out
}

/// The cgroup a container with an empty or relative `cgroupsPath`, created by this process,
/// is nested under in the hierarchy of `controller` ("" = the v2 tree): on a v1 hierarchy
/// the caller's own cgroup; on v2 the caller's cgroup holds the caller, and a cgroup with
/// processes cannot hand controllers to children (the no-internal-processes rule), so the
/// container goes beside it, under its parent (as runc does), unless the caller sits at
/// the root (exempt from the rule).
pub fn nesting_base(controller: &str) -> Option<String> {
    let own = cgroup_of(std::process::id() as i64, controller)?;
    Some(nesting_base_of(&own, controller.is_empty()))
}

/// [`nesting_base`] for a caller in cgroup `own` (which holds the caller).
pub fn nesting_base_of(own: &str, v2: bool) -> String {
    if !v2 || own == "/" {
        return own.to_string();
    }
    match Path::new(own).parent() {
        Some(p) => p.to_string_lossy().into_owned(),
        None => "/".to_string(),
    }
}

/// The cgroup path of `pid` for a v1 controller (e.g. "pids") or "" for the v2 line.
pub fn cgroup_of(pid: i64, controller: &str) -> Option<String> {
    let t = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    parse_cgroup_line(&t, controller)
}

/// Finds the path for `controller` in a /proc/PID/cgroup text ("" = the v2 `0::` line).
pub fn parse_cgroup_line(text: &str, controller: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
        let hit = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        hit.then(|| path.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate
33 30 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:7 - cgroup cgroup rw,pids
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd
36 30 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,memory
";
    const V2: &str = "\
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn a_hybrid_host_has_a_hierarchy_per_controller_and_the_v2_tree() {
        let m = parse_cgroup_mounts(HYBRID);
        assert_eq!(m.len(), 5, "{m:?}");
        assert!(m.iter().any(|m| !m.v2 && m.controllers.is_empty())); // name=systemd
        assert_eq!(
            cgroup_dir_in(&m, "pids", "/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/pids/a/b"))
        );
        assert_eq!(
            cgroup_dir_in(&m, "cpuacct", "/x"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/x"))
        );
        assert_eq!(
            cgroup_dir_in(&m, "", "/x"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/x"))
        );
        assert_eq!(cgroup_dir_in(&m, "hugetlb", "/x"), None);
    }

    #[test]
    fn a_pure_v2_host_has_one_tree() {
        let m = parse_cgroup_mounts(V2);
        assert_eq!(m.len(), 1);
        assert!(m[0].v2);
        assert_eq!(cgroup_dir_in(&m, "pids", "/a"), None);
        assert_eq!(
            cgroup_dir_in(&m, "", "/a"),
            Some(PathBuf::from("/sys/fs/cgroup/a"))
        );
    }

    #[test]
    fn containers_nest_under_the_caller_on_v1_and_beside_it_on_v2() {
        assert_eq!(nesting_base_of("/a/b", false), "/a/b");
        assert_eq!(nesting_base_of("/a/b", true), "/a");
        assert_eq!(nesting_base_of("/a", true), "/");
        assert_eq!(nesting_base_of("/", true), "/");
        assert_eq!(nesting_base_of("/", false), "/");
    }

    #[test]
    fn cgroup_lines_by_controller() {
        let t = "12:pids:/p/c\n3:cpu,cpuacct:/q\n0::/v2/c\n";
        assert_eq!(parse_cgroup_line(t, "pids").as_deref(), Some("/p/c"));
        assert_eq!(parse_cgroup_line(t, "cpuacct").as_deref(), Some("/q"));
        assert_eq!(parse_cgroup_line(t, "").as_deref(), Some("/v2/c"));
        assert_eq!(parse_cgroup_line("0::/only\n", "pids"), None);
    }

    #[test]
    fn this_host_reads_back_its_own_cgroup_dirs() {
        // the test process's own cgroup directory exists in every hierarchy it names
        let me = std::process::id() as i64;
        for c in placement_controllers() {
            let d = cgroup_dir(me, c).unwrap_or_else(|| panic!("no {c:?} hierarchy"));
            assert!(d.join("cgroup.procs").exists(), "{}", d.display());
        }
    }
}
