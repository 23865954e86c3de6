//! Warms the kernel's cgroup migration lock ahead of placing a container's init on
//! cgroup v1.
//!
//! Moving a process into a v1 cgroup (the write of the init's pid to each hierarchy's
//! `cgroup.procs`) takes `cgroup_threadgroup_rwsem` for writing, and the first writer
//! after a quiet spell waits a full RCU grace period for it (`rcu_sync_enter`):
//! measured here 0.4 to 22 ms, 8 ms typical with both CPUs idle, on the critical path of
//! every start. A writer that comes while the lock is still warm (within about a grace
//! period of the previous writer) does not wait. So the engine's start has another
//! thread move its process into the cgroup it is already in (a no-op for it) while the
//! start goes on: the grace period then runs alongside the start instead of after it. Failure changes nothing but the timing, so errors are ignored. Pure
//! cgroup v2 is left alone (there the placement is not done by a write).

use std::io::Write;
use std::path::PathBuf;

/// Starts the warm-up on a short-lived thread and returns at once. For the engine's
/// `start`, which runs in the CLI (or an embedding program) while the container's
/// supervisor, another process, places the init about 10 ms later. Not for the bare
/// runtime: it must be single-threaded when it forks the init, and a forked helper
/// started at its `create` was measured slower, not faster (its head start is about
/// 3 ms of a grace period of 4 to 12, and the fork and the reap cost more).
///
/// The returned guard joins the thread when dropped: keep it until the start is done
/// (its grace period has passed by then), so that the caller is single-threaded again
/// for whatever forks next (an in-process `exec` refuses a multi-threaded caller).
pub fn warm_in_thread() -> WarmThread {
    let Some(procs) = own_v1_procs_file() else {
        return WarmThread(None);
    };
    let thread = std::thread::Builder::new()
        .name("cgroup-warm".into())
        .spawn(move || {
            test_pause();
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&procs) {
                // "0": the writing process itself, moved to where it already is.
                let _ = f.write_all(b"0");
            }
        });
    WarmThread(thread.ok())
}

/// The warm-up thread of [`warm_in_thread`], joined on drop.
pub struct WarmThread(Option<std::thread::JoinHandle<()>>);

impl Drop for WarmThread {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            let _ = t.join();
        }
    }
}

/// Debug builds: `CODEX_TEST_PAUSE=cgroup-warm:MS` holds the thread MS milliseconds
/// first (a test's slow grace period), as the engine's test hooks do.
fn test_pause() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("CODEX_TEST_PAUSE")
        .ok()
        .and_then(|v| v.strip_prefix("cgroup-warm:")?.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(10_000)));
    }
}

/// `cgroup.procs` of this process's cgroup in the first v1 hierarchy with a single
/// named controller, if mounted where it usually is.
fn own_v1_procs_file() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let (controller, path) = first_v1_controller(&text)?;
    let procs = std::path::Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(path.trim_start_matches('/'))
        .join("cgroup.procs");
    procs.exists().then_some(procs)
}

/// (controller, path) of the first `/proc/self/cgroup` line of a v1 hierarchy with a
/// single named controller (mounted as /sys/fs/cgroup/CONTROLLER).
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
        assert_eq!(first_v1_controller(""), None);
    }
}
