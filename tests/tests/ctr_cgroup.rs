//! The engine's own use of a container's cgroup, on whichever hierarchy the host has
//! (these run in the cgroup v2 VM tier too, vm/README.md): OOM detection (the supervisor
//! reads `memory.events` oom_kill on v2, `memory.oom_control` on v1, before it deletes
//! the cgroup), `update --cpus` of a running container, and ending a paused (frozen)
//! container with stop, kill and rm -f. Every container has `--network none`: none of
//! this needs a network, and the VM has no bridge.

use codex_tests::ctr::Ctr;
use codex_tests::*;

fn oom_events(c: &Ctr, name: &str) -> usize {
    let filter = format!("container={name}");
    let o = c.run(&[
        "events", "--until", "0s", "--format", "json", "--filter", &filter,
    ]);
    o.assert_ok();
    o.stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("an event is one JSON line"))
        .filter(|e| e["action"] == "oom")
        .count()
}

#[test]
fn a_container_killed_by_the_oom_killer_is_recorded_as_oom_killed_with_an_event() {
    let c = Ctr::new();
    // Positive control first: the same limit with a program that fits is no OOM kill, so
    // the flag below comes from the kill, not from the limit.
    let fits = [
        "run",
        "--name",
        "fits",
        "--memory",
        "32m",
        "--network",
        "none",
    ];
    c.run(&[&fits[..], &["busybox", "true"]].concat())
        .assert_ok();
    assert_eq!(c.inspect("fits")["oom_killed"], false);
    assert_eq!(oom_events(&c, "fits"), 0);
    // `tail /dev/zero` keeps one ever-growing line in memory: 32 MiB are soon used up.
    let hog = [
        "run",
        "--name",
        "hog",
        "--memory",
        "32m",
        "--network",
        "none",
    ];
    let o = c.run(&[&hog[..], &["busybox", "tail", "/dev/zero"]].concat());
    o.assert_code(137);
    let v = c.inspect("hog");
    assert_eq!(v["exit_code"], 137, "{v}");
    assert_eq!(v["oom_killed"], true, "{v}");
    assert_eq!(oom_events(&c, "hog"), 1);
    c.run(&["rm", "fits", "hog"]).assert_ok();
    assert_eq!(c.containers(), 0);
}

/// `cpu.max` as the container sees it (v2), or the v1 quota and period in that form.
fn cpu_max(c: &Ctr, name: &str) -> String {
    let o = c.run(&[
        "exec",
        name,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/cpu.max 2>/dev/null || \
         echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)",
    ]);
    o.assert_ok();
    o.stdout.trim().to_string()
}

#[test]
fn update_cpus_changes_a_running_containers_quota_at_once_and_for_later_starts() {
    let c = Ctr::new();
    let run = [
        "run",
        "-d",
        "--name",
        "q",
        "--cpus",
        "0.5",
        "--network",
        "none",
    ];
    c.run(&[&run[..], &["busybox", "sleep", "300"]].concat())
        .assert_ok();
    assert_eq!(cpu_max(&c, "q"), "50000 100000");
    c.run(&["update", "--cpus", "1.5", "q"]).assert_ok();
    assert_eq!(cpu_max(&c, "q"), "150000 100000");
    c.run(&["restart", "-t", "1", "q"]).assert_ok();
    assert_eq!(cpu_max(&c, "q"), "150000 100000");
    c.run(&["rm", "-f", "q"]).assert_ok();
}

/// A running container of `sleep` as its init (which ignores SIGTERM: it is PID 1 and
/// sets no handler), paused: every process in the container's cgroup frozen.
fn paused(c: &Ctr, name: &str) -> serde_json::Value {
    let run = ["run", "-d", "--name", name, "--network", "none"];
    c.run(&[&run[..], &["busybox", "sleep", "300"]].concat())
        .assert_ok();
    c.run(&["pause", name]).assert_ok();
    let v = c.inspect(name);
    assert_eq!(v["status"], "paused", "{v}");
    v
}

#[test]
fn stop_kill_and_rm_force_end_a_paused_container() {
    let c = Ctr::new();
    // stop: SIGTERM is ignored, so the timeout passes and SIGKILL ends it
    paused(&c, "s");
    c.run(&["stop", "-t", "1", "s"]).assert_ok();
    let v = c.inspect("s");
    assert_eq!(
        (&v["status"], &v["exit_code"]),
        (&"stopped".into(), &137.into()),
        "{v}"
    );
    // kill: SIGKILL by default
    let k = paused(&c, "k");
    let pid = k["pid"].as_i64().expect("a running container's pid");
    c.run(&["kill", "k"]).assert_ok();
    let w = c.run(&["wait", "k"]);
    w.assert_ok();
    assert_eq!(w.stdout.trim(), "137", "{w:?}");
    assert!(
        !pid_alive(pid),
        "the init {pid} of a killed paused container lives on"
    );
    // rm -f: nothing left, not the record, not the init
    let r = paused(&c, "r");
    let pid = r["pid"].as_i64().expect("a running container's pid");
    c.run(&["rm", "-f", "r"]).assert_ok();
    assert!(
        !pid_alive(pid),
        "the init {pid} of a removed paused container lives on"
    );
    c.run(&["rm", "s", "k"]).assert_ok();
    assert_eq!(c.containers(), 0);
}
