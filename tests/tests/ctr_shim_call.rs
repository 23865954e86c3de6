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

/// `run -d --name NAME` of a container that prints on both sides of its handover to
/// the shim (250 ms into its life) and then waits.
fn across_the_handover(name: &str) -> Vec<&str> {
    vec![
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo before; sleep 0.8; echo after; sleep 60",
    ]
}

/// What its supervisor, shim or not, does with it afterwards: the output after the
/// handover reaches the log, and a stop is recorded.
fn supervised_to_its_stop(c: &Ctr, name: &str) {
    let logged = wait_until(Duration::from_secs(10), || {
        c.run(&["logs", name]).stdout == "before\nafter\n"
    });
    assert!(logged, "{:?}", c.run(&["logs", name]));
    assert_eq!(c.inspect(name)["status"], "running");
    c.run(&["stop", "-t", "1", name]).assert_ok();
    assert_eq!(c.inspect(name)["status"], "stopped");
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
        c.cmd(&across_the_handover("long"))
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
    supervised_to_its_stop(&c, "long");
    c.run(&["rm", "long"]).assert_ok();
}

/// When the shim cannot be executed (here a `codex-shim` that is no program), the
/// supervisor called for it stays what it is and supervises the container itself:
/// the output after the handover is logged and a stop is recorded.
#[test]
fn a_supervisor_whose_shim_cannot_run_supervises_the_container_itself() {
    let c = Ctr::new();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("codex-ctr");
    fs::copy(codex_tests::ctr::ctr_binary(), &bin).unwrap();
    fs::write(dir.path().join("codex-shim"), "not a program\n").unwrap();
    fs::set_permissions(
        dir.path().join("codex-shim"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let trace = dir.path().join("trace");
    let bin_s = bin.to_string_lossy().to_string();
    let mut argv = vec![bin_s.as_str()];
    argv.extend(across_the_handover("noshim"));
    let mut cmd = c.netns().cmd(&argv);
    cmd.env("CODEX_CTR_ROOT", &c.root)
        .env("CODEX_TRACE", &trace);
    run_command(&mut cmd).assert_ok();
    // Called for, the exec failed, and the worker handed the container over to the
    // supervisor as it is.
    let handed = wait_until(Duration::from_secs(10), || {
        at(&events(&trace), "worker: shim ready").is_some()
    });
    let ev = events(&trace);
    assert!(handed && at(&ev, "sup: shim called").is_some(), "{ev:?}");
    let sup = c.inspect("noshim")["supervisor_pid"].as_i64().unwrap();
    let exe = fs::read_link(format!("/proc/{sup}/exe")).unwrap();
    assert_eq!(exe, bin, "the supervisor {sup} runs {exe:?}");
    supervised_to_its_stop(&c, "noshim");
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(sup)),
        "the supervisor {sup} outlived its container"
    );
    c.run(&["rm", "noshim"]).assert_ok();
}
