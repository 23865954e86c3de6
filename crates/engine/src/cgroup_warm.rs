//! Warms the kernel's cgroup migration lock ahead of a container start on cgroup v1.
//!
//! Moving a process into a v1 cgroup (the runtime's write of the init's pid to each
//! hierarchy's `cgroup.procs`) takes `cgroup_threadgroup_rwsem` for writing, and the
//! first writer after a quiet spell waits a full RCU grace period for it
//! (`rcu_sync_enter`): measured here 0.4 to 22 ms, 9 ms typical, with both CPUs idle,
//! on the critical path of every start. A writer that comes while the lock is still
//! "warm" (within about a grace period of the previous writer) does not wait. So the
//! caller of a start has a short-lived thread move its own process into the cgroup it is
//! already in (a no-op for the process), while the start goes on; by the time the
//! supervisor places the container's init, the grace period has usually passed.
//! Failure changes nothing but the timing, so errors are ignored. Pure cgroup v2 is
//! left alone.

use std::io::Write;

/// Starts the warm-up in the background and returns at once.
pub(crate) fn warm_migration_lock() {
    let Some(procs) = own_v1_procs_file() else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("cgroup-warm".into())
        .spawn(move || {
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&procs) {
                // "0": the writing process itself, moved to where it already is.
                let _ = f.write_all(b"0");
            }
        });
}

/// `cgroup.procs` of this process's cgroup in the first v1 hierarchy with a controller.
fn own_v1_procs_file() -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let (controller, path) = first_v1_controller(&text)?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(controller);
    let procs = dir.join(path.trim_start_matches('/')).join("cgroup.procs");
    procs.exists().then_some(procs)
}

/// (controller, path) of the first `/proc/self/cgroup` line of a v1 hierarchy with a
/// single named controller (a mount point such as /sys/fs/cgroup/pids).
fn first_v1_controller(text: &str) -> Option<(&str, &str)> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        (!controllers.is_empty() && !controllers.contains(',') && !controllers.contains('='))
            .then_some((controllers, path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_single_controller_v1_line_is_chosen() {
        let text = "12:cpu,cpuacct:/a\n11:name=systemd:/b\n10:pids:/c/d\n0::/e\n";
        assert_eq!(first_v1_controller(text), Some(("pids", "/c/d")));
        assert_eq!(first_v1_controller("0::/only-v2\n"), None);
    }
}
