//! The supervisor execs codex-shim only when its worker calls for it: a container that
//! ends within the worker's first moments is recorded by the worker and its supervisor
//! exits as it is; one that runs on is handed over to the shim, output and all.

use std::fs;
use std::path::Path;
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;

/// The trace's events as (seconds, pid, what), in time order.
fn events(trace: &Path) -> Vec<(f64, i32, String)> {
    let text = fs::read_to_string(trace).unwrap_or_default();
    let mut events: Vec<(f64, i32, String)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(5, ' ').collect();
            match f.as_slice() {
                ["trace", pid, at, _, what] => {
                    Some((at.parse().ok()?, pid.parse().ok()?, what.to_string()))
                }
                _ => None,
            }
        })
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    events
}

fn at(events: &[(f64, i32, String)], what: &str) -> Option<f64> {
    events.iter().find(|e| e.2 == what).map(|e| e.0)
}

#[test]
fn a_short_container_never_execs_the_shim_and_a_long_one_is_handed_to_it() {
    let c = Ctr::new();
    let dir = tempfile::tempdir().unwrap();

    // Short: the worker records the end itself; nobody calls for the shim.
    let short = dir.path().join("short");
    let o = run_command(
        c.cmd(&["run", "--rm", "--network", "none", "busybox", "true"])
            .env("CODEX_TRACE", &short),
    );
    o.assert_ok();
    let ev = events(&short);
    assert!(
        at(&ev, "worker: init exited").is_some(),
        "the worker did not record the end: {ev:?}"
    );
    assert!(
        at(&ev, "sup: shim called").is_none() && at(&ev, "worker: shim ready").is_none(),
        "a container that ended at once had the shim executed: {ev:?}"
    );

    // Long: called for once its first moments are over, after `run -d` returned (the
    // supervisor let go of the status pipe at once, not at its exec).
    let long = dir.path().join("long");
    let o = run_command(
        c.cmd(&[
            "run",
            "-d",
            "--name",
            "long",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo before; sleep 0.8; echo after; sleep 60",
        ])
        .env("CODEX_TRACE", &long),
    );
    o.assert_ok();
    let handed = wait_until(Duration::from_secs(10), || {
        at(&events(&long), "worker: shim ready").is_some()
    });
    let ev = events(&long);
    assert!(handed, "no handover to the shim: {ev:?}");
    let (reported, called) = (
        at(&ev, "start: report read").unwrap(),
        at(&ev, "sup: shim called").unwrap(),
    );
    assert!(
        reported < called,
        "run -d waited for the supervisor's exec: {ev:?}"
    );
    let sup = c.inspect("long")["supervisor_pid"].as_i64().unwrap();
    let exe = fs::read_link(format!("/proc/{sup}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().ends_with("codex-shim"),
        "the supervisor {sup} runs {exe:?}"
    );
    // The shim carries on: the output after the handover reaches the log, and a stop
    // is recorded.
    let logged = wait_until(Duration::from_secs(10), || {
        c.run(&["logs", "long"]).stdout == "before\nafter\n"
    });
    assert!(logged, "{:?}", c.run(&["logs", "long"]));
    c.run(&["stop", "-t", "1", "long"]).assert_ok();
    assert_eq!(c.inspect("long")["status"], "stopped");
    c.run(&["rm", "long"]).assert_ok();
}
