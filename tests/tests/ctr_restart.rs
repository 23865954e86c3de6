//! Restart policies end to end (`--restart`, docs/monitors.md): the supervisor runs a
//! container again after its process ends, with backoff; a user's `stop`/`kill` is
//! never undone; `rm -f` and a killed supervisor between runs leave nothing a later
//! command cannot repair; `start --all-restartable` brings containers back.

use codex_tests::ctr::Ctr;
use codex_tests::*;
use serde_json::Value;
use std::time::Duration;

/// A generous bound for things that take well under a second on an idle machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn status(c: &Ctr, name: &str) -> Value {
    c.inspect(name)
}

/// Waits until `f` holds for the container's record; panics with the last one if not.
#[track_caller]
fn wait_for(c: &Ctr, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(PATIENCE, || {
        last = status(c, name);
        f(&last)
    });
    assert!(ok, "{name} never got {what}: {last:#}");
    last
}

/// The times (seconds since midnight UTC) of a container's log lines that say `word`.
fn log_times(c: &Ctr, id: &str, word: &str) -> Vec<f64> {
    let log = read_lossy(&c.root.join("containers").join(id).join("container.log"));
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["log"] == word)
        .map(|v| {
            // 2026-11-23T10:00:00.123456789Z
            let t = v["time"].as_str().unwrap();
            let hms = &t[11..t.len() - 1];
            let mut p = hms.split(':');
            let h: f64 = p.next().unwrap().parse().unwrap();
            let m: f64 = p.next().unwrap().parse().unwrap();
            let s: f64 = p.next().unwrap().parse().unwrap();
            h * 3600.0 + m * 60.0 + s
        })
        .collect()
}

/// The processes alive among `pids`.
fn alive(pids: &[i64]) -> Vec<i64> {
    pids.iter().copied().filter(|p| pid_alive(*p)).collect()
}

#[test]
fn on_failure_3_restarts_exactly_three_times_with_backoff_then_stays_exited() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:3",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 3",
    ])
    .assert_ok();
    // `wait` sleeps through the restarts and returns the last run's code.
    let w = c.run(&["wait", "flaky"]);
    w.assert_ok();
    assert_eq!(w.stdout.trim(), "3", "{w:?}");
    let v = status(&c, "flaky");
    assert_eq!(v["status"], "exited", "{v:#}");
    assert_eq!(v["restart_count"], 3, "{v:#}");
    assert_eq!(v["exit_code"], 3);
    assert!(
        v["supervisor_pid"].is_null() && v["restart_at"].is_null(),
        "{v:#}"
    );
    // Nothing comes after the third restart.
    std::thread::sleep(Duration::from_secs(1));
    let later = status(&c, "flaky");
    assert_eq!(
        (later["status"].clone(), later["restart_count"].clone()),
        (v["status"].clone(), v["restart_count"].clone())
    );
    let id = v["id"].as_str().unwrap();
    let runs = log_times(&c, id, "run");
    assert_eq!(runs.len(), 4, "one first run and three restarts: {runs:?}");
    // The backoff: at least 100, 200, 400 ms between runs (a start adds its own
    // time, so only a lower bound and a generous upper one).
    for (i, pair) in runs.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let min = 0.1 * f64::from(1 << i);
        assert!(
            gap >= min - 0.005 && gap < min + 10.0,
            "gap {i} is {gap:.3} s, want ~{min} s: {runs:?}"
        );
    }
    let ps = c.run(&["ps", "-a"]);
    assert!(ps.stdout.contains("RESTARTS"), "{ps:?}");
    let row = ps
        .lines()
        .into_iter()
        .find(|l| l.contains("flaky"))
        .unwrap()
        .to_string();
    assert!(row.split_whitespace().any(|w| w == "3"), "{row}");
    // A user's start counts afresh.
    c.run(&["start", "flaky"]).assert_ok();
    c.run(&["wait", "flaky"]).assert_ok();
    assert_eq!(status(&c, "flaky")["restart_count"], 3);
}

#[test]
fn on_failure_does_not_restart_a_clean_exit_and_no_never_restarts() {
    let c = Ctr::new();
    for (name, policy, cmd) in [("clean", "on-failure", "exit 0"), ("never", "no", "exit 1")] {
        c.run(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "busybox",
            "sh",
            "-c",
            cmd,
        ])
        .assert_ok();
        c.run(&["wait", name]).assert_ok();
        std::thread::sleep(Duration::from_millis(500));
        let v = status(&c, name);
        assert_eq!(v["status"], "exited", "{v:#}");
        assert_eq!(v["restart_count"], 0, "{v:#}");
    }
}

#[test]
fn always_restarts_after_exit_0_and_stop_wins() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "echo tick; sleep 0.3; exit 0",
    ])
    .assert_ok();
    let v = wait_for(&c, "loop", "two restarts", |v| {
        v["restart_count"].as_u64() >= Some(2)
    });
    assert_eq!(v["exit_code"], 0, "the last exit stays visible: {v:#}");
    // `restarting` is visible between runs.
    wait_for(&c, "loop", "restarting", |v| v["status"] == "restarting");
    c.run(&["stop", "-t", "1", "loop"]).assert_ok();
    let stopped = status(&c, "loop");
    assert_eq!(stopped["status"], "stopped", "{stopped:#}");
    std::thread::sleep(Duration::from_secs(2));
    let later = status(&c, "loop");
    assert_eq!(
        later["status"], "stopped",
        "the policy undid the stop: {later:#}"
    );
    assert_eq!(later["restart_count"], stopped["restart_count"]);
    assert!(later["supervisor_pid"].is_null(), "{later:#}");
}

#[test]
fn stop_and_kill_of_a_running_always_container_are_not_undone() {
    let c = Ctr::new();
    for name in ["stopme", "killme"] {
        c.run(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            "always",
            "busybox",
            "sleep",
            "1000",
        ])
        .assert_ok();
    }
    c.run(&["stop", "-t", "1", "stopme"]).assert_ok();
    c.run(&["kill", "killme"]).assert_ok();
    let v = wait_for(&c, "killme", "exited", |v| v["status"] == "exited");
    assert_eq!(v["exit_code"], 137);
    std::thread::sleep(Duration::from_secs(2));
    for (name, want) in [("stopme", "stopped"), ("killme", "exited")] {
        let v = status(&c, name);
        assert_eq!(v["status"], want, "{v:#}");
        assert_eq!(v["restart_count"], 0, "{v:#}");
    }
    // A signal that does not end it (a reload) leaves the policy alone: control.
    c.run(&[
        "run",
        "-d",
        "--name",
        "hup",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 5' HUP; while :; do sleep 0.1; done",
    ])
    .assert_ok();
    c.run(&["kill", "-s", "HUP", "hup"]).assert_ok();
    wait_for(&c, "hup", "a restart", |v| {
        v["restart_count"].as_u64() >= Some(1)
    });
}

/// A container that fails fast `n` times (its count kept in its own rootfs), then runs.
fn crash_then_run(n: u32) -> String {
    format!(
        "n=$(cat /count 2>/dev/null || echo 0); echo $((n+1)) > /count; \
         [ $n -ge {n} ] && exec sleep 1000; exit 1"
    )
}

#[test]
fn stop_during_the_backoff_ends_it_at_once_and_kills_the_sleeping_supervisor() {
    let c = Ctr::new();
    let script = crash_then_run(100);
    c.run(&[
        "run",
        "-d",
        "--name",
        "crashy",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        &script,
    ])
    .assert_ok();
    // From the fifth exit the backoff is 1.6 s and more: long enough to catch.
    let v = wait_for(&c, "crashy", "a long backoff", |v| {
        v["status"] == "restarting"
            && v["restart_count"].as_u64() >= Some(5)
            && v["restart_at"].is_string()
    });
    let sup = v["supervisor_pid"]
        .as_i64()
        .expect("a restarting record names its supervisor");
    assert!(pid_alive(sup));
    c.run(&["stop", "crashy"]).assert_ok();
    let after = status(&c, "crashy");
    assert_eq!(after["status"], "stopped", "{after:#}");
    assert!(after["supervisor_pid"].is_null(), "{after:#}");
    assert!(
        wait_until(PATIENCE, || !pid_alive(sup)),
        "the supervisor {sup} sleeps on"
    );
    std::thread::sleep(Duration::from_secs(3));
    let later = status(&c, "crashy");
    assert_eq!(later["status"], "stopped", "{later:#}");
    assert_eq!(later["restart_count"], after["restart_count"]);
}

#[test]
fn rm_f_of_a_restarting_container_removes_it_and_its_supervisor() {
    let c = Ctr::new();
    let script = crash_then_run(100);
    c.run(&[
        "run",
        "-d",
        "--name",
        "gone",
        "--restart",
        "on-failure",
        "busybox",
        "sh",
        "-c",
        &script,
    ])
    .assert_ok();
    let v = wait_for(&c, "gone", "restarting", |v| {
        v["status"] == "restarting" && v["restart_count"].as_u64() >= Some(3)
    });
    let sup = v["supervisor_pid"].as_i64().unwrap();
    c.run(&["rm", "-f", "gone"]).assert_ok();
    assert_eq!(c.containers(), 0);
    assert!(
        wait_until(PATIENCE, || alive(&[sup]).is_empty()),
        "supervisor {sup} lives on"
    );
    c.run(&["inspect", "gone"]).assert_refused();
}

#[test]
fn a_supervisor_killed_while_restarting_leaves_state_the_next_command_repairs() {
    let c = Ctr::new();
    // Six quick failures, then it runs for good.
    let script = crash_then_run(6);
    c.run(&[
        "run",
        "-d",
        "--name",
        "orphan",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        &script,
    ])
    .assert_ok();
    let v = wait_for(&c, "orphan", "its fourth restart pending", |v| {
        v["status"] == "restarting"
            && v["restart_count"].as_u64() >= Some(3)
            && v["restart_at"].is_string()
    });
    let sup = v["supervisor_pid"].as_i64().unwrap();
    host_sh(&format!("kill -9 {sup}")).assert_ok();
    assert!(wait_until(PATIENCE, || !pid_alive(sup)));
    // The next look repairs the record: no supervisor will start it again.
    let ps = c.run(&["ps", "-a", "--format", "json"]);
    ps.assert_ok();
    let rec = ps.json()[0].clone();
    assert_eq!(rec["status"], "exited", "{rec:#}");
    assert_eq!(rec["exit_code"], 1, "the last run's code is kept: {rec:#}");
    assert!(
        rec["error"]
            .as_str()
            .unwrap_or_default()
            .contains("supervisor died"),
        "{rec:#}"
    );
    assert!(rec["supervisor_pid"].is_null());
    // ... and `start --all-restartable` brings it back, where it runs for good.
    let o = c.run(&["start", "--all-restartable"]);
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "orphan", "{o:?}");
    let up = wait_for(&c, "orphan", "running for good", |v| {
        v["status"] == "running"
            && read_lossy(
                &c.root
                    .join("containers")
                    .join(v["id"].as_str().unwrap())
                    .join("upper/count"),
            )
            .trim()
            .parse::<u32>()
            .is_ok_and(|n| n >= 7)
    });
    assert!(up["supervisor_pid"].as_i64().is_some_and(pid_alive));
    c.run(&["rm", "-f", "orphan"]).assert_ok();
    assert_eq!(c.containers(), 0);
}

#[test]
fn start_all_restartable_brings_back_always_and_unless_stopped_but_not_a_stopped_one() {
    let c = Ctr::new();
    for (name, policy) in [
        ("svc-always", "always"),
        ("svc-unless", "unless-stopped"),
        ("svc-stopped", "unless-stopped"),
        ("svc-plain", "no"),
    ] {
        c.run(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "busybox",
            "sleep",
            "1000",
        ])
        .assert_ok();
    }
    c.run(&["stop", "-t", "1", "svc-stopped"]).assert_ok();
    // Nothing to start while their supervisors run: control for the selection.
    let none = c.run(&["start", "--all-restartable"]);
    none.assert_ok();
    assert_eq!(none.stdout.trim(), "", "{none:?}");
    // A "reboot": every supervisor and container process of this root dies at once.
    let mut pids = Vec::new();
    for name in ["svc-always", "svc-unless", "svc-plain"] {
        let v = status(&c, name);
        pids.push(v["supervisor_pid"].as_i64().unwrap());
        pids.push(v["pid"].as_i64().unwrap());
    }
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    host_sh(&format!("kill -9 {}", list.join(" "))).assert_ok();
    assert!(
        wait_until(PATIENCE, || alive(&pids).is_empty()),
        "{:?}",
        alive(&pids)
    );
    let o = c.run(&["start", "--all-restartable"]);
    o.assert_ok();
    let mut started: Vec<&str> = o.stdout.split_whitespace().collect();
    started.sort();
    assert_eq!(started, ["svc-always", "svc-unless"], "{o:?}");
    for (name, want) in [
        ("svc-always", "running"),
        ("svc-unless", "running"),
        ("svc-stopped", "stopped"),
        ("svc-plain", "exited"),
    ] {
        let v = status(&c, name);
        assert_eq!(v["status"], want, "{name}: {v:#}");
    }
    // Once they run, a second call has nothing to do.
    let again = c.run(&["start", "--all-restartable"]);
    again.assert_ok();
    assert_eq!(again.stdout.trim(), "", "{again:?}");
}

#[test]
fn bad_restart_policies_are_refused_naming_the_flag() {
    let c = Ctr::new();
    for bad in ["sometimes", "on-failure:x", "always:2"] {
        c.run(&["create", "--restart", bad, "busybox", "true"])
            .assert_refused_naming("restart");
    }
    c.run(&["create", "--rm", "--restart", "always", "busybox", "true"])
        .assert_refused_naming("restart");
    assert_eq!(c.containers(), 0, "nothing half-made");
}

/// A network namespace of the test's own, held by a `sleep` killed on drop (see
/// ctr_bridge.rs: the host's network is never touched).
struct Netns(std::process::Child);

impl Netns {
    fn new() -> Netns {
        let holder = std::process::Command::new("unshare")
            .args(["--net", "sleep", "1000"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("unshare --net");
        let ns = Netns(holder);
        let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert!(wait_until(Duration::from_secs(5), || {
            std::fs::read_link(format!("/proc/{}/ns/net", ns.0.id())).is_ok_and(|n| n != mine)
        }));
        ns
    }

    /// codex-ctr `args` on `c`'s root, inside the namespace.
    fn ctr(&self, c: &Ctr, args: &[&str]) -> Out {
        let mut cmd = std::process::Command::new("nsenter");
        cmd.arg(format!("--net=/proc/{}/ns/net", self.0.id()))
            .arg("--")
            .arg(codex_tests::ctr::ctr_binary())
            .args(args)
            .env("CODEX_CTR_ROOT", &c.root);
        run_command(&mut cmd)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn quick_restarts_on_a_bridge_network_get_their_veth_and_address_each_time() {
    let c = Ctr::new();
    let ns = Netns::new();
    ns.ctr(&c, &["network", "create", "backend"]).assert_ok();
    // Each run prints its address and fails at once: the restarts come 100, 200, 400,
    // 800 ms after a run whose namespace (and veth) the kernel is still tearing down.
    ns.ctr(
        &c,
        &[
            "run",
            "-d",
            "--name",
            "netloop",
            "--network",
            "backend",
            "--restart",
            "on-failure:4",
            "busybox",
            "sh",
            "-c",
            "ifconfig eth0 | grep -o 'inet addr:[0-9.]*'; exit 1",
        ],
    )
    .assert_ok();
    let w = ns.ctr(&c, &["wait", "netloop"]);
    w.assert_ok();
    assert_eq!(w.stdout.trim(), "1");
    let v = ns.ctr(&c, &["inspect", "netloop"]).json();
    assert_eq!(v["status"], "exited", "{v:#}");
    assert_eq!(v["restart_count"], 4, "{v:#}");
    let ip = v["networks"]["backend"]["ip"].as_str().unwrap().to_string();
    let logs = ns.ctr(&c, &["logs", "netloop"]);
    let addrs: Vec<&str> = logs.stdout.lines().collect();
    assert_eq!(
        addrs,
        vec![format!("inet addr:{ip}").as_str(); 5],
        "{logs:?}"
    );
    ns.ctr(&c, &["rm", "-f", "netloop"]).assert_ok();
    ns.ctr(&c, &["network", "rm", "backend"]).assert_ok();
}

#[test]
fn a_restart_that_cannot_start_is_tried_again_with_backoff_until_the_policy_is_spent() {
    let c = Ctr::new();
    let data = tempfile::tempdir().unwrap();
    let src = data.path().join("vol");
    std::fs::create_dir(&src).unwrap();
    let bind = format!("{}:/data", src.display());
    // Runs for good once /data/ok exists; until then fails after a moment.
    let script = "test -f /data/ok && exec sleep 1000; sleep 0.3; exit 1";
    for (name, policy) in [("svc", "always"), ("job", "on-failure:2")] {
        c.run(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            "--restart",
            policy,
            "-v",
            &bind,
            "busybox",
            "sh",
            "-c",
            script,
        ])
        .assert_ok();
    }
    // The bind source goes: the restarts cannot start.
    std::fs::remove_dir(&src).unwrap();
    let v = wait_for(&c, "svc", "a failed restart", |v| {
        v["status"] == "restarting"
            && v["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("restarting it failed") && e.contains("vol"))
    });
    assert!(v["supervisor_pid"].as_i64().is_some_and(pid_alive), "{v:#}");
    // on-failure:2 gives up after its two restarts: failed, saying why.
    let job = wait_for(&c, "job", "failed", |v| v["status"] == "failed");
    assert_eq!(job["restart_count"], 2, "{job:#}");
    assert!(job["error"].as_str().unwrap().contains("vol"), "{job:#}");
    assert!(job["supervisor_pid"].is_null());
    // `always` keeps trying and comes back once the source is there again.
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("ok"), "").unwrap();
    let o = c.run(&["wait", "--condition", "running", "--timeout", "90s", "svc"]);
    o.assert_ok();
    let v = status(&c, "svc");
    assert!(v["error"].is_null(), "{v:#}");
    c.run(&["rm", "-f", "svc", "job"]).assert_ok();
}
