//! Cgroups on v1, v2 and hybrid hosts: where a container's cgroups live, creating and
//! removing them, placing processes, and writing `linux.resources`.
//!
//! A thin own layer over cgroupfs (see docs/design-decisions.md): hierarchies are read
//! from /proc/self/mountinfo and /proc/self/cgroup, so the same code works on the real
//! host, on a pure v2 VM and on a fake tree in unit tests.

mod brief;
mod devices_bpf;
mod kill;
mod resources;
mod stats;
mod sub;
pub mod warm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
pub use resources::apply_resources;

/// One hierarchy the container has a cgroup in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    /// Controllers of a v1 hierarchy (`memory`, `cpu,cpuacct`, `name=systemd`), or
    /// empty for the v2 (unified) hierarchy.
    pub controllers: String,
    /// The container's directory in the host's cgroupfs.
    pub path: PathBuf,
    /// The directory name under /sys/fs/cgroup where the hierarchy is mounted
    /// (`memory`, `unified`; empty on a pure v2 host).
    pub mount_dir: String,
    /// The highest directory above `path` that creating the container made (a
    /// relative cgroupsPath `pod/c1` makes `pod` too): delete removes up to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_above: Option<PathBuf>,
}

impl CgroupDir {
    pub fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.split(',').any(|c| c == controller)
    }
}

/// Where the container's cgroups are, one entry per hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroups {
    pub dirs: Vec<CgroupDir>,
}

/// A hierarchy as the container's `cgroup` mount shows it.
#[derive(Debug, Clone)]
pub struct MountSource {
    pub dir: String,
    pub fstype: &'static str,
    pub options: Vec<String>,
    pub host_path: PathBuf,
}

/// A mounted hierarchy of the host.
#[derive(Debug, Clone)]
struct Hierarchy {
    controllers: String,
    mount_point: PathBuf,
    mount_root: PathBuf,
}

fn hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let controllers = match post[0] {
            "cgroup2" => String::new(),
            "cgroup" => post[2]
                .split(',')
                .filter(|o| {
                    !matches!(*o, "rw" | "ro" | "nosuid" | "nodev" | "noexec" | "relatime")
                        && !o.starts_with("release_agent")
                        && *o != "clone_children"
                        && *o != "xattr"
                        && *o != "noprefix"
                })
                .collect::<Vec<_>>()
                .join(","),
            _ => continue,
        };
        let mount_point = PathBuf::from(unescape(pre[4]));
        if out.iter().any(|h: &Hierarchy| h.controllers == controllers) {
            continue; // the same hierarchy mounted twice: the first is enough
        }
        out.push(Hierarchy {
            controllers,
            mount_point,
            mount_root: PathBuf::from(unescape(pre[3])),
        });
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// `/proc/self/cgroup`: controllers -> the caller's cgroup in that hierarchy.
fn own_cgroups(proc_cgroup: &str) -> Vec<(String, PathBuf)> {
    proc_cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let ctrl = parts.next()?.to_string();
            let path = PathBuf::from(parts.next()?);
            Some((ctrl, path))
        })
        .collect()
}

fn same_controllers(a: &str, b: &str) -> bool {
    let mut a: Vec<&str> = a.split(',').collect();
    let mut b: Vec<&str> = b.split(',').collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

impl Cgroups {
    /// Where a container with `cgroups_path` (OCI `linux.cgroupsPath`) goes: absolute
    /// paths are taken from each hierarchy's root, relative or empty ones are nested
    /// under the caller's own cgroup (`<own>/<path>`, or `<own>/<id>` when empty).
    pub fn resolve(cgroups_path: Option<&Path>, id: &str) -> Result<Cgroups> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .ctx(|| "reading /proc/self/mountinfo")?;
        let own =
            std::fs::read_to_string("/proc/self/cgroup").ctx(|| "reading /proc/self/cgroup")?;
        let has_procs = |p: &Path| {
            std::fs::read_to_string(p.join("cgroup.procs")).is_ok_and(|s| !s.trim().is_empty())
        };
        Self::resolve_from(&mountinfo, &own, cgroups_path, id, &has_procs)
    }

    fn resolve_from(
        mountinfo: &str,
        own: &str,
        cgroups_path: Option<&Path>,
        id: &str,
        has_procs: &dyn Fn(&Path) -> bool,
    ) -> Result<Cgroups> {
        if let Some(p) = cgroups_path {
            let s = p.to_string_lossy();
            if s.contains(':') && !s.starts_with('/') {
                return Err(Error::Unsupported(format!(
                    "linux.cgroupsPath {s:?} in systemd form (slice:prefix:name); use a cgroupfs path"
                )));
            }
            if p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(Error::config(
                    "linux.cgroupsPath",
                    format!("{s:?} must not contain '..'"),
                ));
            }
        }
        let own = own_cgroups(own);
        let mut dirs = Vec::new();
        for h in hierarchies(mountinfo) {
            let Some((_, own_path)) = own
                .iter()
                .find(|(c, _)| same_controllers(c, &h.controllers))
            else {
                continue;
            };
            let host_path = |cg: &Path| {
                // The mount may show only part of the hierarchy (its root is not `/`).
                let below = cg.strip_prefix(&h.mount_root).unwrap_or(cg);
                h.mount_point.join(below.strip_prefix("/").unwrap_or(below))
            };
            // On v2 a cgroup that holds processes cannot give controllers to children
            // (the no-internal-processes rule), and the caller's cgroup holds the
            // caller: nest beside it, under its parent, as runc does.
            let mut base = own_path.clone();
            if h.controllers.is_empty() && base != Path::new("/") && has_procs(&host_path(&base)) {
                base = base.parent().unwrap_or(Path::new("/")).to_path_buf();
            }
            let rel = match cgroups_path {
                Some(p) if p.is_absolute() => p.to_path_buf(),
                Some(p) if !p.as_os_str().is_empty() => base.join(p),
                _ => base.join(id),
            };
            let full = host_path(&rel);
            let below_root = full
                .strip_prefix(&h.mount_point)
                .unwrap_or(&full)
                .to_path_buf();
            let mount_dir = h
                .mount_point
                .strip_prefix("/sys/fs/cgroup")
                .map(|d| d.to_string_lossy().trim_start_matches('/').to_string())
                .unwrap_or_default();
            dirs.push(CgroupDir {
                controllers: h.controllers.clone(),
                path: h.mount_point.join(below_root),
                mount_dir,
                created_above: None,
            });
        }
        if dirs.is_empty() {
            return Err(Error::Other(
                "no cgroup hierarchy is mounted on this host".into(),
            ));
        }
        Ok(Cgroups { dirs })
    }

    /// The host kind, for `features` and error messages.
    pub fn host_kind(&self) -> &'static str {
        let v2 = self.dirs.iter().any(|d| d.is_v2());
        let v1 = self.dirs.iter().any(|d| !d.is_v2());
        match (v1, v2) {
            (true, true) => "hybrid",
            (true, false) => "v1",
            _ => "v2",
        }
    }

    /// Creates every directory. Returns an error naming the one that failed.
    /// Creates every directory. On v2, `controllers` (what the container's resources
    /// need, see [`needed_controllers`]) are enabled along the path.
    pub fn create(&mut self, controllers: &[&str]) -> Result<()> {
        for d in &mut self.dirs {
            let mut top = None;
            let mut p = d.path.parent();
            while let Some(dir) = p.filter(|dir| !dir.exists()) {
                top = Some(dir.to_path_buf());
                p = dir.parent();
            }
            d.created_above = top;
            std::fs::create_dir_all(&d.path)
                .ctx(|| format!("creating cgroup {}", d.path.display()))?;
            if d.is_v2() && !controllers.is_empty() {
                enable_controllers(d, controllers);
            }
            if d.has("cpuset") {
                inherit_cpuset(&d.path)?;
            }
        }
        Ok(())
    }

    /// An fd of the container's cgroup when it is a single v2 hierarchy (a pure v2
    /// host), to clone the init into; `None` with v1 hierarchies.
    pub fn v2_only_dir(&self) -> Result<Option<std::os::fd::OwnedFd>> {
        match self.dirs.as_slice() {
            [d] if d.is_v2() => {
                use std::os::unix::fs::OpenOptionsExt;
                let f = std::fs::File::options()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                    .open(&d.path)
                    .ctx(|| format!("opening {}", d.path.display()))?;
                Ok(Some(f.into()))
            }
            _ => Ok(None),
        }
    }

    /// Moves `pid` into the container's cgroup in every hierarchy.
    pub fn add(&self, pid: i32) -> Result<()> {
        for d in &self.dirs {
            let f = d.path.join("cgroup.procs");
            std::fs::write(&f, pid.to_string())
                .ctx(|| format!("adding pid {pid} to {}", f.display()))?;
        }
        Ok(())
    }

    /// The directory whose `cgroup.procs` lists every process of the container.
    fn procs_dir(&self) -> Option<&CgroupDir> {
        self.dirs
            .iter()
            .find(|d| d.has("pids") || d.has("freezer"))
            .or_else(|| self.dirs.iter().find(|d| d.is_v2()))
            .or(self.dirs.first())
    }

    /// Every process in the container's cgroup (empty when it is gone).
    pub fn pids(&self) -> Vec<i32> {
        let Some(d) = self.procs_dir() else {
            return Vec::new();
        };
        std::fs::read_to_string(d.path.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Removes every directory, retrying while the kernel still counts exiting tasks.
    pub fn remove(&self) -> Result<()> {
        for d in &self.dirs {
            // Sub-cgroups first (`exec --cgroup` targets, a nested manager's own):
            // a cgroup with children cannot be removed.
            remove_children(&d.path, 0)?;
            remove_dir(&d.path)?;
            // Parents made for this container go too, unless something else has
            // come to live in them since.
            if let Some(top) = &d.created_above {
                let mut p = d.path.parent();
                while let Some(dir) = p.filter(|dir| dir.starts_with(top)) {
                    if std::fs::remove_dir(dir).is_err() {
                        break;
                    }
                    p = dir.parent();
                }
            }
        }
        Ok(())
    }

    /// Freezes every process (v1 freezer, or v2 `cgroup.freeze`) and waits until the
    /// kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        // (directory, file to write, value, file to check, line that says done)
        let (dir, file, value, check, want) =
            if let Some(d) = self.dirs.iter().find(|d| d.has("freezer")) {
                let v = if frozen { "FROZEN" } else { "THAWED" };
                (&d.path, "freezer.state", v, "freezer.state", v)
            } else if let Some(d) = self.dirs.iter().find(|d| d.is_v2()) {
                let (v, w) = if frozen {
                    ("1", "frozen 1")
                } else {
                    ("0", "frozen 0")
                };
                (&d.path, "cgroup.freeze", v, "cgroup.events", w)
            } else {
                return Err(Error::Unsupported("pause: no freezer on this host".into()));
            };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut delay = Duration::from_micros(100);
        loop {
            // v1 may stay FREEZING while tasks are busy: writing again retries.
            std::fs::write(dir.join(file), value)
                .ctx(|| format!("writing {value} to {}", dir.join(file).display()))?;
            let state = std::fs::read_to_string(dir.join(check)).unwrap_or_default();
            if state.lines().any(|l| l.trim() == want) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::Other(format!(
                    "{} did not reach {want} within 10 s",
                    dir.display()
                )));
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    /// The hierarchies as the container's `cgroup` mount should show them.
    pub fn mount_sources(&self) -> Vec<MountSource> {
        self.dirs
            .iter()
            .map(|d| MountSource {
                dir: d.mount_dir.clone().replace("name=", ""),
                fstype: if d.is_v2() { "cgroup2" } else { "cgroup" },
                options: if d.is_v2() {
                    Vec::new()
                } else {
                    d.controllers.split(',').map(String::from).collect()
                },
                host_path: d.path.clone(),
            })
            .collect()
    }
}

/// The v2 controllers a set of resources needs.
pub fn needed_controllers(res: Option<&oci_spec::runtime::LinuxResources>) -> Vec<&'static str> {
    let Some(r) = res else { return Vec::new() };
    let mut out = Vec::new();
    if r.memory().is_some() {
        out.push("memory");
    }
    if let Some(cpu) = r.cpu() {
        if cpu.shares().is_some()
            || cpu.quota().is_some()
            || cpu.period().is_some()
            || cpu.idle().is_some()
        {
            out.push("cpu");
        }
        if cpu.cpus().is_some() || cpu.mems().is_some() {
            out.push("cpuset");
        }
    }
    if r.pids().is_some() {
        out.push("pids");
    }
    if r.block_io().is_some() {
        out.push("io");
    }
    if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        out.push("hugetlb");
    }
    out
}

/// On v2, a controller reaches a cgroup only if every ancestor lists it in
/// `cgroup.subtree_control`: enable the ones asked for, top down, where available.
/// A cgroup that itself holds processes cannot delegate (the no-internal-processes
/// rule); that failure is left for the resource that needs the controller to report.
fn enable_controllers(d: &CgroupDir, wanted: &[&str]) {
    let root = Path::new("/sys/fs/cgroup").join(&d.mount_dir);
    let mut chain: Vec<&Path> = d
        .path
        .ancestors()
        .skip(1)
        .take_while(|p| p.starts_with(&root))
        .collect();
    chain.reverse();
    for dir in chain {
        // Never in a cgroup with processes (but the root): it would fail for domain
        // controllers and turn the cgroup "threaded" for the others.
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if dir != root && !procs.trim().is_empty() {
            break;
        }
        let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let enabled =
            std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        for c in available.split_whitespace().filter(|c| wanted.contains(c)) {
            if !enabled.split_whitespace().any(|e| e == c) {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
            }
        }
    }
}

/// How deep [`remove_children`] goes; a deeper tree is left (and its rmdir fails).
const MAX_CGROUP_DEPTH: usize = 64;

/// Removes every cgroup below `path`, deepest first. In cgroupfs every subdirectory is a
/// cgroup (the files cannot be removed and need not be).
fn remove_children(path: &Path, depth: usize) -> Result<()> {
    if depth >= MAX_CGROUP_DEPTH {
        return Ok(());
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("listing cgroup {}", path.display())),
    };
    for entry in entries.filter_map(|e| e.ok()) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let child = entry.path();
            remove_children(&child, depth + 1)?;
            remove_dir(&child)?;
        }
    }
    Ok(())
}

fn remove_dir(path: &Path) -> Result<()> {
    let mut delay = Duration::from_millis(1);
    for _ in 0..12 {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Err(e) => return Err(e).ctx(|| format!("removing cgroup {}", path.display())),
        }
    }
    std::fs::remove_dir(path).ctx(|| format!("removing cgroup {} (still busy)", path.display()))
}

/// A new v1 cpuset cgroup starts with empty cpus/mems, and no task may join it until
/// they are set: copy them down from the closest ancestor that has them.
fn inherit_cpuset(path: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mut chain = Vec::new();
        let mut p = path.to_path_buf();
        loop {
            let v = std::fs::read_to_string(p.join(file)).unwrap_or_default();
            if !v.trim().is_empty() {
                for dir in chain.iter().rev() {
                    let f: PathBuf = PathBuf::from(dir).join(file);
                    std::fs::write(&f, v.trim()).ctx(|| format!("writing {}", f.display()))?;
                }
                break;
            }
            chain.push(p.clone());
            if !p.pop() || !p.join(file).exists() {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
30 22 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
";
    const HYBRID_OWN: &str = "4:memory:/process_api/abc\n3:cpuacct,cpu:/\n1:name=systemd:/\n0::/\n";

    #[test]
    fn empty_path_nests_under_the_callers_cgroup_per_hierarchy() {
        let cg =
            Cgroups::resolve_from(HYBRID_MOUNTINFO, HYBRID_OWN, None, "c1", &|_| false).unwrap();
        let paths: Vec<_> = cg
            .dirs
            .iter()
            .map(|d| d.path.to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "/sys/fs/cgroup/unified/c1",
                "/sys/fs/cgroup/memory/process_api/abc/c1",
                "/sys/fs/cgroup/cpu,cpuacct/c1",
                "/sys/fs/cgroup/systemd/c1"
            ]
        );
        assert_eq!(cg.host_kind(), "hybrid");
    }

    #[test]
    fn absolute_path_starts_at_each_hierarchy_root() {
        let cg = Cgroups::resolve_from(
            HYBRID_MOUNTINFO,
            HYBRID_OWN,
            Some(Path::new("/default/c2")),
            "c2",
            &|_| false,
        )
        .unwrap();
        assert_eq!(
            cg.dirs[1].path,
            Path::new("/sys/fs/cgroup/memory/default/c2")
        );
        assert_eq!(cg.dirs[1].controllers, "memory");
    }

    #[test]
    fn relative_path_nests_under_the_callers_cgroup() {
        let cg = Cgroups::resolve_from(
            HYBRID_MOUNTINFO,
            HYBRID_OWN,
            Some(Path::new("pod/c3")),
            "c3",
            &|_| false,
        )
        .unwrap();
        assert_eq!(
            cg.dirs[1].path,
            Path::new("/sys/fs/cgroup/memory/process_api/abc/pod/c3")
        );
    }

    #[test]
    fn pure_v2_host_has_one_unified_dir() {
        let mi = "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let cg = Cgroups::resolve_from(mi, "0::/user.slice\n", None, "x", &|_| false).unwrap();
        assert_eq!(cg.dirs.len(), 1);
        assert_eq!(cg.dirs[0].path, Path::new("/sys/fs/cgroup/user.slice/x"));
        assert_eq!(cg.host_kind(), "v2");
        assert_eq!(cg.mount_sources()[0].dir, "");
    }

    #[test]
    fn on_v2_a_caller_cgroup_with_processes_gets_a_sibling_not_a_child() {
        let mi = "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
        let busy = |p: &Path| p == Path::new("/sys/fs/cgroup/runner");
        let cg = Cgroups::resolve_from(mi, "0::/runner\n", None, "c9", &busy).unwrap();
        assert_eq!(cg.dirs[0].path, Path::new("/sys/fs/cgroup/c9"));
        let cg = Cgroups::resolve_from(mi, "0::/runner\n", Some(Path::new("pod/c9")), "c9", &busy)
            .unwrap();
        assert_eq!(cg.dirs[0].path, Path::new("/sys/fs/cgroup/pod/c9"));
        // v1 hierarchies have no such rule: still nested.
        let cg =
            Cgroups::resolve_from(HYBRID_MOUNTINFO, HYBRID_OWN, None, "c9", &|_| true).unwrap();
        assert_eq!(
            cg.dirs[1].path,
            Path::new("/sys/fs/cgroup/memory/process_api/abc/c9")
        );
    }

    #[test]
    fn systemd_style_paths_and_dotdot_are_refused() {
        assert!(Cgroups::resolve_from(
            HYBRID_MOUNTINFO,
            HYBRID_OWN,
            Some(Path::new("system.slice:codex:x")),
            "x",
            &|_| false
        )
        .is_err());
        assert!(Cgroups::resolve_from(
            HYBRID_MOUNTINFO,
            HYBRID_OWN,
            Some(Path::new("/a/../b")),
            "x",
            &|_| false
        )
        .is_err());
    }
}
