//! `kill -9` in the middle of things: the `codex-ctr` CLI during `create`, `start` and
//! `rm -f` (killed after a delay that walks through the command's life), and a running
//! container's supervisor (alone, or with the container's init). After each, the next
//! `ps -a` must succeed and tell the truth about every container, and `rm -f` must leave
//! nothing: no container dir, runtime state, mount under the root, cgroup, or process.

use codex_tests::ctr::Ctr;
use codex_tests::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// What a test saw of its containers, to be checked gone after `rm -f`.
#[derive(Default)]
struct Seen {
    ids: BTreeSet<String>,
    pids: BTreeSet<i64>,
}

impl Seen {
    /// The ids and processes of the records `listed`.
    fn note(&mut self, listed: &[Value]) {
        for r in listed {
            self.ids.insert(r["id"].as_str().unwrap().to_string());
            for k in ["pid", "supervisor_pid"] {
                self.pids.extend(r[k].as_i64());
            }
        }
    }

    /// Also every process in the cgroups of a running container; its `inspect`.
    fn note_running(&mut self, c: &Ctr, name: &str) -> Value {
        let v = c.inspect(name);
        self.note(std::slice::from_ref(&v));
        self.pids.extend(cgroup_procs(&v));
        v
    }
}

/// The names in a directory (none if it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let d = std::fs::read_dir(dir).into_iter().flatten().flatten();
    d.map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The runtime root's containers: its entries but the seccomp program cache, which
/// outlives them by design (docs/seccomp.md).
fn runtime_containers(dir: &Path) -> Vec<String> {
    let mut v = entries(dir);
    v.retain(|n| n != codex_runtime::seccomp_cache::DIR_NAME);
    v
}

/// The processes in a container's cgroups, from its `inspect` JSON.
fn cgroup_procs(v: &Value) -> BTreeSet<i64> {
    let dirs = v["cgroups"].as_array().into_iter().flatten();
    dirs.flat_map(|cg| {
        let text = read_lossy(&Path::new(cg["path"].as_str().unwrap()).join("cgroup.procs"));
        text.lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect::<Vec<i64>>()
    })
    .collect()
}

/// This test's live codex-ctr processes (CLIs, forks not yet exec'd, supervisors):
/// those whose environment or arguments name its root.
fn root_processes(c: &Ctr) -> Vec<i64> {
    let root = c.root.to_string_lossy().into_owned();
    let env = format!("CODEX_CTR_ROOT={root}");
    let names_root = |file: &str, pid: i64| {
        let b = std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
        b.split(|c| *c == 0)
            .any(|a| a == root.as_bytes() || a == env.as_bytes())
    };
    let pids = entries(Path::new("/proc"))
        .into_iter()
        .filter_map(|n| n.parse().ok());
    pids.filter(|&p| (names_root("environ", p) || names_root("cmdline", p)) && pid_alive(p))
        .collect()
}

/// A `Ctr` that, even when the test fails, first kills this test's codex-ctr processes
/// (by pid) and force-deletes runtime containers the registry lost, then lets the
/// fixture `rm -f` the rest.
struct Guard(Ctr);

impl Drop for Guard {
    fn drop(&mut self) {
        // Twice: a process that was exec'ing is seen the second time.
        for _ in 0..2 {
            for pid in root_processes(&self.0) {
                // SAFETY: kill(2) with integers; the process works on this test's root.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let rt = self.0.root.join("runtime");
        for id in runtime_containers(&rt) {
            // bounded like every harness command; the Ctr drop that follows reports leftovers
            let mut del =
                std::process::Command::new(workspace_dir().join("target/debug/codex-oci"));
            del.arg("--root").arg(&rt).args(["delete", "--force", &id]);
            let (o, e) = (rt.with_extension("del.out"), rt.with_extension("del.err"));
            if let Err(e) = try_run_to(&mut del, &o, &e, cmd_timeout()) {
                eprintln!("{e}");
            }
        }
    }
}

impl std::ops::Deref for Guard {
    type Target = Ctr;
    fn deref(&self) -> &Ctr {
        &self.0
    }
}

/// `ps -a --format json`, which must succeed.
fn ps_all(c: &Ctr) -> Vec<Value> {
    let o = c.run(&["ps", "-a", "--format", "json"]);
    o.assert_ok();
    o.json().as_array().expect("ps prints an array").clone()
}

/// Runs `args` and SIGKILLs that process (by its pid) `delay` after spawning it.
fn kill_after(c: &Ctr, args: &[&str], delay: Duration) {
    let mut cmd = c.cmd(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn codex-ctr");
    std::thread::sleep(delay);
    let _ = child.kill();
    child.wait().expect("reap the killed codex-ctr");
}

/// What each status promises, checked against the container's files and processes.
fn assert_truthful(c: &Ctr, r: &Value) {
    let (id, status) = (r["id"].as_str().unwrap(), r["status"].as_str().unwrap());
    let error = r["error"].as_str().unwrap_or_default();
    match status {
        "created" => {
            assert!(r["pid"].is_null(), "{r}");
            // Created means startable: its OCI bundle is complete.
            c.run(&["inspect", "--spec", id]).assert_ok();
        }
        "running" => {
            assert!(r["pid"].as_i64().unwrap_or(0) > 0, "{r}");
            // The supervisor may have recorded the exit and ended since `r` was read.
            let sup = r["supervisor_pid"].as_i64().unwrap_or(0);
            let live = pid_alive(sup) || c.inspect(id)["status"] != "running";
            assert!(live || error.contains("supervisor died"), "{r}");
        }
        "exited" | "stopped" => {
            assert!(r["pid"].is_null() && r["supervisor_pid"].is_null(), "{r}");
            assert!(r["finished_at"].is_string(), "{r}");
            assert!(r["exit_code"].is_i64() || error.contains("unknown"), "{r}");
            let left = cgroup_procs(&c.inspect(id));
            assert!(left.is_empty(), "{left:?} of it still run: {r}");
        }
        "failed" => assert!(!error.is_empty(), "failed without an error: {r}"),
        // An rm claimed it and was killed: nothing may start it; the next rm finishes.
        "removing" => {
            assert!(r["pid"].is_null(), "{r}");
            let o = c.run(&["start", id]);
            assert!(!o.ok(), "a container being removed was started: {o:?}");
        }
        other => panic!("unexpected status {other}: {r}"),
    }
}

/// `rm -f` of every container, then nothing of any container `seen` may be left.
fn rm_all_and_assert_clean(c: &Ctr, seen: &mut Seen) {
    let listed = ps_all(c);
    seen.note(&listed);
    for r in &listed {
        c.run(&["rm", "-f", r["id"].as_str().unwrap()]).assert_ok();
    }
    assert_eq!(ps_all(c), Vec::<Value>::new(), "rm -f left a record");
    let index = std::fs::read(c.root.join("registry.json")).unwrap();
    let index: Value = serde_json::from_slice(&index).expect("registry.json parses");
    assert_eq!(
        index.get("containers"),
        None,
        "names live in names/: {index}"
    );
    assert!(c.root.join("names").is_dir(), "the root has names/");
    assert_eq!(
        entries(&c.root.join("names")),
        Vec::<String>::new(),
        "names left"
    );
    let dirs = entries(&c.root.join("containers"));
    let is_left = |n: &&String| !n.starts_with('.') || n.starts_with(".removing-");
    assert_eq!(dirs.iter().find(is_left), None, "left in containers/");
    assert_eq!(
        runtime_containers(&c.root.join("runtime")),
        Vec::<String>::new()
    );
    let root = c.root.to_string_lossy().into_owned();
    let mut mounts = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
    mounts.retain(|m| m.mount_point.starts_with(&root));
    assert!(mounts.is_empty(), "mounts left under the root: {mounts:?}");
    for id in &seen.ids {
        let left = cgroup_dirs_containing(id);
        assert!(left.is_empty(), "cgroups of {id} left: {left:?}");
    }
    let no_cli = wait_until(Duration::from_secs(10), || root_processes(c).is_empty());
    assert!(no_cli, "codex-ctr processes outlived rm -f");
    for &pid in &seen.pids {
        let gone = wait_until(Duration::from_secs(10), || !pid_alive(pid));
        assert!(gone, "process {pid} of a removed container still runs");
    }
}

/// Kills `create` after 0, 1, ... 39 ms; each time `ps -a` must tell the truth, a
/// listed container must be complete (it starts), and `rm -f` must clean.
#[test]
fn create_killed_at_any_point_leaves_a_startable_container_or_none() {
    let c = Guard(Ctr::new());
    let mut seen = Seen::default();
    for ms in 0..40 {
        let create = ["create", "--name", "victim", "busybox", "sleep", "100"];
        kill_after(&c, &create, Duration::from_millis(ms));
        let listed = ps_all(&c);
        seen.note(&listed);
        assert!(listed.len() <= 1, "one create: {listed:?}");
        for r in &listed {
            let id = r["id"].as_str().unwrap();
            assert_eq!(r["status"], "created", "{r}");
            c.run(&["inspect", "--spec", id]).assert_ok();
            assert_truthful(&c, r);
            c.run(&["start", id]).assert_ok();
            seen.note_running(&c, "victim");
        }
        rm_all_and_assert_clean(&c, &mut seen);
    }
    c.run(&["create", "--name", "victim", "busybox", "true"])
        .assert_ok();
}

/// What follows a `start` killed mid-way.
#[derive(Clone, Copy, PartialEq)]
enum Next {
    /// Wait until the detached supervisor has started the container or given up.
    Settle,
    /// `rm -f` at once, while that supervisor may still be starting it.
    RmForce,
    /// `start` again at once.
    StartAgain,
}

/// Kills `start` after 0 to 105 ms (denser early, around the spawn of the supervisor),
/// then does `next`; the state must be truthful and `rm -f` must clean.
fn kill_start_then(next: Next) {
    let c = Guard(Ctr::new());
    let mut seen = Seen::default();
    for ms in (0..30u64).map(|i| i * i / 8) {
        let o = c.run(&["create", "--name", "starter", "busybox", "sleep", "100"]);
        o.assert_ok();
        let id = o.stdout.trim();
        kill_after(&c, &["start", "starter"], Duration::from_millis(ms));
        if next == Next::RmForce {
            ps_all(&c).iter().for_each(|r| assert_truthful(&c, r));
            rm_all_and_assert_clean(&c, &mut seen);
            continue;
        }
        if next == Next::StartAgain {
            let o = c.run(&["start", id]);
            let busy = o.stderr.contains("running") || o.stderr.contains("being started");
            assert!(o.ok() || busy, "{o:?}");
        }
        // A process is not seen while it execs: "none" must hold for a few polls.
        let mut quiet = 0;
        let settled = wait_until(Duration::from_secs(20), || {
            let (procs, v) = (root_processes(&c), c.inspect(id));
            quiet = if procs.is_empty() { quiet + 1 } else { 0 };
            let sup = v["supervisor_pid"].as_i64().unwrap_or(0);
            quiet >= 5 || v["status"] == "running" && procs == [sup]
        });
        assert!(settled, "the supervisor never started it nor ended");
        let r = c.inspect(id);
        assert_truthful(&c, &r);
        match r["status"].as_str().unwrap() {
            "running" => {
                seen.note_running(&c, id);
                c.run(&["stop", "-t", "0", id]).assert_ok();
                assert_eq!(c.inspect(id)["status"], "stopped");
            }
            "created" if next == Next::Settle => {
                c.run(&["start", id]).assert_ok();
                seen.note_running(&c, id);
            }
            s => panic!("start was killed, not refused: {s}: {r}"),
        }
        rm_all_and_assert_clean(&c, &mut seen);
    }
}

#[test]
fn start_killed_at_any_point_leaves_a_truthful_state_and_rm_force_cleans() {
    kill_start_then(Next::Settle);
}

#[test]
fn rm_force_right_after_a_killed_start_cleans_even_a_container_still_starting() {
    kill_start_then(Next::RmForce);
}

#[test]
fn start_again_right_after_a_killed_start_runs_the_container_once() {
    kill_start_then(Next::StartAgain);
}

#[test]
fn rm_force_killed_at_any_point_is_finished_by_the_next_rm_force() {
    let c = Guard(Ctr::new());
    let mut seen = Seen::default();
    for ms in (0..60).step_by(3) {
        let run = ["run", "-d", "--name", "doomed", "busybox", "sleep", "100"];
        c.run(&run).assert_ok();
        let id = seen.note_running(&c, "doomed")["id"].clone();
        kill_after(&c, &["rm", "-f", "doomed"], Duration::from_millis(ms));
        let listed = ps_all(&c);
        assert!(listed.len() <= 1, "{listed:?}");
        for r in &listed {
            assert_eq!(r["id"], id);
            assert_truthful(&c, r);
        }
        rm_all_and_assert_clean(&c, &mut seen);
    }
}

/// Runs a container whose init has a background child, SIGKILLs its supervisor (and
/// with `with_init` its init too); `ps` must say what happened and `rm -f` must clean.
fn kill_supervisor(isolation: &str, with_init: bool) {
    let c = Guard(Ctr::new());
    let mut seen = Seen::default();
    let mut args = vec!["run", "-d", "--name", "sup", "--isolation", isolation];
    args.extend((isolation != "minimal").then_some("busybox"));
    args.extend(["/bin/sh", "-c", "sleep 1000 & sleep 1000; wait"]);
    c.run(&args).assert_ok();
    let all_up = || cgroup_procs(&seen.note_running(&c, "sup")).len() >= 3;
    assert!(wait_until(Duration::from_secs(10), all_up), "3 processes");
    let v = c.inspect("sup");
    let init = v["pid"].as_i64().unwrap();
    let mut victims = vec![v["supervisor_pid"].as_i64().unwrap()];
    victims.extend(with_init.then_some(init));
    for &p in &victims {
        // SAFETY: kill(2) with integers; `p` is this test's supervisor or init.
        unsafe { libc::kill(p as i32, libc::SIGKILL) };
    }
    let gone = || !victims.iter().any(|p| pid_alive(*p));
    assert!(wait_until(Duration::from_secs(10), gone));
    let listed = ps_all(&c);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let r = &listed[0];
    let want = if with_init { "exited" } else { "running" };
    assert_eq!(r["status"], want, "{isolation}: {r}");
    let error = r["error"].as_str().unwrap_or_default();
    assert!(error.contains("supervisor died"), "{isolation}: {r}");
    assert_truthful(&c, r);
    assert_eq!(pid_alive(init), !with_init);
    rm_all_and_assert_clean(&c, &mut seen);
}

#[test]
fn killed_supervisor_with_or_without_its_init_is_reported_and_rm_force_cleans() {
    // Standard isolation has a PID namespace: its init takes the background child along.
    kill_supervisor("standard", true);
    kill_supervisor("standard", false);
    kill_supervisor("minimal", false);
}

#[test]
fn killed_supervisor_and_init_of_a_minimal_container_leave_nothing_running() {
    kill_supervisor("minimal", true);
}
