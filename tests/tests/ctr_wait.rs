//! `wait --condition running|healthy|exited|removed [--timeout D]` end to end: it
//! returns when the condition holds (not before), times out with exit code 1, and
//! fails at once when the condition can never come by itself.

use codex_tests::ctr::Ctr;
use codex_tests::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Starts `codex-ctr args...` in the background (its own process group).
fn spawn(c: &Ctr, args: &[&str]) -> std::process::Child {
    let mut cmd = c.cmd(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    own_group(&mut cmd).spawn().expect("spawn codex-ctr")
}

/// Whether process `pid` has an inotify instance open (the engine's wait is watching).
fn watches(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|d| {
        d.flatten().any(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains("inotify"))
        })
    })
}

/// Waits (bounded) for a background command; its exit code and stdout (its stderr is
/// printed when it failed, for the test's report).
fn finish(mut child: std::process::Child) -> (Option<i32>, String) {
    let status = wait_child(&mut child, Duration::from_secs(60));
    let Some(status) = status else {
        kill_group(&mut child);
        panic!("the background codex-ctr did not finish");
    };
    let mut out = String::new();
    use std::io::Read;
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    if status.code() != Some(0) {
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        eprintln!("the background codex-ctr ended {status:?}; its stderr: {err}");
    }
    (status.code(), out)
}

#[test]
fn wait_healthy_returns_once_the_service_answers_and_not_before() {
    let c = Ctr::new();
    // Answers HTTP only after 2 s.
    c.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "svc",
        "--health-http",
        "8080/",
        "--health-interval",
        "200ms",
        "busybox",
        "sh",
        "-c",
        "sleep 2; mkdir -p /w; echo hi > /w/index.html; exec httpd -f -p 8080 -h /w",
    ])
    .assert_ok();
    assert_eq!(c.inspect("svc")["health"]["status"], "starting");
    let t0 = Instant::now();
    let o = c.run(&["wait", "--condition", "healthy", "--timeout", "60s", "svc"]);
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "svc");
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "returned too early"
    );
    let v = c.inspect("svc");
    assert_eq!(v["health"]["status"], "healthy", "{v:#}");
    // Already healthy: at once, and running holds too.
    c.run(&["wait", "--condition", "healthy", "svc"])
        .assert_ok();
    c.run(&["wait", "--condition", "running", "svc"])
        .assert_ok();
}

#[test]
fn wait_times_out_with_exit_code_1_and_fails_fast_when_it_never_can() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "sick",
        "--health-cmd",
        "false",
        "--health-interval",
        "200ms",
        "busybox",
        "sleep",
        "1000",
    ])
    .assert_ok();
    let t0 = Instant::now();
    let o = c.run(&["wait", "--condition", "healthy", "--timeout", "1s", "sick"]);
    o.assert_code(1);
    o.assert_stderr_mentions("timed out");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(20),
        "{took:?}"
    );
    // A container that ends can never turn healthy: at once, not at the timeout.
    c.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "quitter",
        "--health-cmd",
        "true",
        "--health-interval",
        "5s",
        "busybox",
        "sh",
        "-c",
        "sleep 0.5; exit 2",
    ])
    .assert_ok();
    let t0 = Instant::now();
    let o = c.run(&[
        "wait",
        "--condition",
        "healthy",
        "--timeout",
        "60s",
        "quitter",
    ]);
    o.assert_code(1);
    o.assert_stderr_mentions("ended before");
    assert!(t0.elapsed() < Duration::from_secs(20));
    // No check at all: refused, naming the condition.
    c.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "plain",
        "busybox",
        "sleep",
        "100",
    ])
    .assert_ok();
    c.run(&["wait", "--condition", "healthy", "plain"])
        .assert_code(1)
        .assert_stderr_mentions("no health check");
    c.run(&["wait", "--condition", "up", "plain"])
        .assert_refused_naming("condition");
}

#[test]
fn wait_running_blocks_until_another_process_starts_it() {
    let c = Ctr::new();
    c.run(&[
        "create",
        "--network",
        "none",
        "--name",
        "later",
        "busybox",
        "sleep",
        "100",
    ])
    .assert_ok();
    let waiter = spawn(&c, &["wait", "--condition", "running", "later"]);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        c.inspect("later")["status"],
        "created",
        "control: not started yet"
    );
    c.run(&["start", "later"]).assert_ok();
    let (code, out) = finish(waiter);
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), "later");
}

#[test]
fn wait_exited_sleeps_through_restarts_and_wait_removed_sees_rm() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "retry",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 4",
    ])
    .assert_ok();
    c.run(&["wait", "--condition", "exited", "retry"])
        .assert_ok();
    let v = c.inspect("retry");
    assert_eq!(
        (v["status"].as_str(), v["restart_count"].as_u64()),
        (Some("exited"), Some(2)),
        "{v:#}"
    );
    // `--rm`: removed once it ends.
    c.run(&[
        "run",
        "-d",
        "--rm",
        "--network",
        "none",
        "--name",
        "brief",
        "busybox",
        "sleep",
        "1",
    ])
    .assert_ok();
    let o = c.run(&[
        "wait",
        "--condition",
        "removed",
        "--timeout",
        "60s",
        "brief",
    ]);
    o.assert_ok();
    c.run(&["inspect", "brief"]).assert_refused();
    // Waiting for `exited` of a `--rm` container that goes: it ended.
    c.run(&[
        "run",
        "-d",
        "--rm",
        "--network",
        "none",
        "--name",
        "brief2",
        "busybox",
        "sleep",
        "0.5",
    ])
    .assert_ok();
    c.run(&[
        "wait",
        "--condition",
        "exited",
        "--timeout",
        "60s",
        "brief2",
    ])
    .assert_ok();
    // Several names share one deadline.
    c.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "a1",
        "busybox",
        "sleep",
        "100",
    ])
    .assert_ok();
    c.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "a2",
        "busybox",
        "sleep",
        "100",
    ])
    .assert_ok();
    let waiter = spawn(&c, &["wait", "--condition", "removed", "a1", "a2"]);
    // Removed only once the waiter waits (it has found both and watches with inotify):
    // a fixed pause lost that race on a loaded machine (the names were gone first).
    let waiting = wait_until(Duration::from_secs(30), || watches(waiter.id()));
    assert!(waiting, "the waiter never started waiting");
    c.run(&["rm", "-f", "a1", "a2"]).assert_ok();
    let (code, out) = finish(waiter);
    assert_eq!(code, Some(0));
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["a1", "a2"]);
}

#[test]
fn wait_for_a_missing_container_is_an_engine_error() {
    let c = Ctr::new();
    let o = c.run(&[
        "wait",
        "--condition",
        "running",
        "--timeout",
        "1s",
        "nosuch",
    ]);
    o.assert_code(125);
    o.assert_stderr_mentions("nosuch");
}
