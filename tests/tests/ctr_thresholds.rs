//! Thresholds and the usage history (docs/monitors.md, "Thresholds" and "Usage
//! history"): `--warn-memory` reports a crossing once and again only after the use
//! fell back; `--stop-on-memory` kills the container, and its restart policy runs it
//! again; `--warn-cpu` with a busy loop (and not with an idle container);
//! `stats --interval`; `stats --plot` writes well-formed SVG whose data is what the
//! container did. Memory is used by writing to the container's /dev/shm (a tmpfs
//! charged to its memory cgroup); containers have no network.

use codex_tests::ctr::Ctr;
use codex_tests::*;
use serde_json::Value;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;

fn events(c: &Ctr, name: &str, action: &str) -> Vec<Value> {
    let o = c.run(&[
        "events",
        "--until",
        "0s",
        "--format",
        "json",
        "--filter",
        &format!("container={name}"),
        "--filter",
        &format!("event={action}"),
    ]);
    o.assert_ok();
    o.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event is one JSON line"))
        .collect()
}

fn attr_u64(e: &Value, key: &str) -> u64 {
    e["attributes"][key]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not a number: {e:#}"))
}

fn attr_f64(e: &Value, key: &str) -> f64 {
    e["attributes"][key]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not a number: {e:#}"))
}

fn run_d(c: &Ctr, args: &[&str]) {
    let mut all = vec!["run", "-d", "--network", "none"];
    all.extend_from_slice(args);
    c.run(&all).assert_ok();
}

/// Waits until `name` has `n` events `action`; panics with what it has if not.
#[track_caller]
fn wait_events(c: &Ctr, name: &str, action: &str, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    let ok = wait_until(PATIENCE, || {
        got = events(c, name, action);
        got.len() >= n
    });
    assert!(ok, "{name}: {n} {action} events never came: {got:#?}");
    got
}

#[test]
fn a_memory_warning_comes_once_per_crossing_and_again_after_the_use_fell() {
    let c = Ctr::new();
    run_d(
        &c,
        &[
            "--name",
            "leak",
            "--warn-memory",
            "24m",
            "--monitor-interval",
            "200ms",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    // The config is kept and shown.
    let v = c.inspect("leak");
    assert_eq!(v["config"]["monitor"]["warn_memory"], 24 * MIB, "{v:#}");
    assert_eq!(v["config"]["monitor"]["interval_ms"], 200);
    // Control: below the threshold, samples come and say nothing.
    std::thread::sleep(Duration::from_millis(1000));
    assert!(events(&c, "leak", "threshold").is_empty());
    let fill = |file: &str| {
        c.run(&[
            "exec",
            "leak",
            "dd",
            "if=/dev/zero",
            &format!("of=/dev/shm/{file}"),
            "bs=1M",
            "count=32",
        ])
        .assert_ok();
    };
    fill("a");
    let got = wait_events(&c, "leak", "threshold", 1);
    let e = &got[0];
    assert_eq!(e["attributes"]["threshold"], "warn-memory", "{e:#}");
    assert_eq!(attr_u64(e, "limit"), 24 * MIB);
    assert!(attr_u64(e, "value") > 24 * MIB, "{e:#}");
    // Still above it for many more samples: no second event.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(events(&c, "leak", "threshold").len(), 1);
    // Below 90% of it re-arms the warning; the next crossing is reported.
    c.run(&["exec", "leak", "rm", "/dev/shm/a"]).assert_ok();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(events(&c, "leak", "threshold").len(), 1);
    fill("b");
    let got = wait_events(&c, "leak", "threshold", 2);
    assert_eq!(got[1]["attributes"]["threshold"], "warn-memory");
    // A warning does not touch the container.
    assert_eq!(c.inspect("leak")["status"], "running");
    c.run(&["rm", "-f", "leak"]).assert_ok();
}

#[test]
fn stop_on_memory_kills_it_and_its_restart_policy_runs_it_again() {
    let c = Ctr::new();
    let leak = "sleep 0.5; dd if=/dev/zero of=/dev/shm/a bs=1M count=40; sleep 1000";
    // No policy: it ends with 137 and says why.
    run_d(
        &c,
        &[
            "--name",
            "capped",
            "--stop-on-memory",
            "24m",
            "--monitor-interval",
            "200ms",
            "busybox",
            "sh",
            "-c",
            leak,
        ],
    );
    c.run(&[
        "wait",
        "--condition",
        "exited",
        "--timeout",
        "30s",
        "capped",
    ])
    .assert_ok();
    let v = c.inspect("capped");
    assert_eq!(v["status"], "exited", "{v:#}");
    assert_eq!(v["exit_code"], 137, "{v:#}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("stop-on-memory")),
        "{v:#}"
    );
    let t = events(&c, "capped", "threshold");
    assert_eq!(t.len(), 1, "{t:#?}");
    assert_eq!(t[0]["attributes"]["threshold"], "stop-on-memory");
    assert_eq!(t[0]["attributes"]["action"], "stop");
    assert!(attr_u64(&t[0], "value") > 24 * MIB);
    let die = events(&c, "capped", "die");
    assert_eq!(die[0]["attributes"]["stopped_by"], "stop-on-memory");
    assert_eq!(die[0]["attributes"]["exit_code"], "137");
    // Control: the same container without the ceiling keeps running.
    run_d(&c, &["--name", "uncapped", "busybox", "sh", "-c", leak]);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(c.inspect("uncapped")["status"], "running");
    // --restart always: killed and run again, each run leaking anew (a fresh /dev/shm).
    run_d(
        &c,
        &[
            "--name",
            "healed",
            "--restart",
            "always",
            "--stop-on-memory",
            "24m",
            "--monitor-interval",
            "200ms",
            "busybox",
            "sh",
            "-c",
            leak,
        ],
    );
    let mut last = Value::Null;
    let ok = wait_until(PATIENCE, || {
        last = c.inspect("healed");
        last["restart_count"].as_u64() >= Some(2)
    });
    assert!(ok, "never restarted twice: {last:#}");
    assert_eq!(last["exit_code"], 137, "the last run's end: {last:#}");
    assert!(events(&c, "healed", "threshold").len() >= 2);
    assert!(events(&c, "healed", "restart").len() >= 2);
    // A user's stop still wins over the policy.
    c.run(&["stop", "-t", "1", "healed"]).assert_ok();
    let v = c.inspect("healed");
    assert_eq!(v["status"], "stopped", "{v:#}");
    c.run(&["rm", "-f", "capped", "uncapped", "healed"])
        .assert_ok();
}

#[test]
fn a_cpu_warning_comes_for_a_busy_loop_and_not_for_an_idle_container() {
    let c = Ctr::new();
    // 20% of one core: a busy loop gets far more even on a loaded 2-core machine.
    for (name, cmd) in [("busy", "while :; do :; done"), ("idle", "sleep 1000")] {
        run_d(
            &c,
            &[
                "--name",
                name,
                "--warn-cpu",
                "20",
                "--monitor-interval",
                "300ms",
                "busybox",
                "sh",
                "-c",
                cmd,
            ],
        );
    }
    let got = wait_events(&c, "busy", "threshold", 1);
    let e = &got[0];
    assert_eq!(e["attributes"]["threshold"], "warn-cpu", "{e:#}");
    assert!(attr_f64(e, "value") > 20.0, "{e:#}");
    assert_eq!(attr_f64(e, "limit"), 20.0);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(events(&c, "idle", "threshold").is_empty());
    c.run(&["rm", "-f", "busy", "idle"]).assert_ok();
}

#[test]
fn thresholds_that_cannot_work_are_refused_naming_the_flag() {
    let c = Ctr::new();
    let refused = |args: &[&str], field: &str| {
        let mut all = vec!["create", "--network", "none"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["busybox", "true"]);
        c.run(&all).assert_refused_naming(field);
    };
    refused(&["--warn-memory", "lots"], "warn-memory");
    refused(&["--warn-cpu=-3"], "warn-cpu");
    refused(
        &["--stop-on-memory", "64m", "--memory", "32m"],
        "stop_on_memory",
    );
    refused(
        &["--warn-memory", "64m", "--stop-on-memory", "32m"],
        "warn_memory",
    );
    refused(&["--monitor-interval", "10ms"], "interval");
    assert_eq!(c.containers(), 0, "nothing is left of a refused create");
}

#[test]
fn stats_streams_at_its_interval() {
    let c = Ctr::new();
    run_d(&c, &["--name", "s", "busybox", "sleep", "1000"]);
    let mut cmd = c.cmd(&["stats", "--interval", "300ms", "--format", "json", "s"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = own_group(&mut cmd).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<(Instant, Value)>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send((Instant::now(), v));
            }
        }
    });
    let mut got = Vec::new();
    while got.len() < 5 {
        match rx.recv_timeout(PATIENCE) {
            Ok(x) => got.push(x),
            Err(e) => panic!("stats printed only {} lines: {e}", got.len()),
        }
    }
    kill_group(&mut child);
    let _ = child.wait();
    for (_, v) in &got {
        assert_eq!(v[0]["name"], "s", "{v}");
    }
    // Each refresh takes the interval (never less; a generous bound above).
    let spans: Vec<Duration> = got.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let total = got[4].0 - got[0].0;
    assert!(total >= Duration::from_millis(4 * 280), "{spans:?}");
    assert!(total < Duration::from_secs(20), "{spans:?}");
    c.run(&["stats", "--interval", "soon", "s"])
        .assert_refused_naming("interval");
    c.run(&["stats", "--interval", "10ms", "s"])
        .assert_refused_naming("interval");
    // --no-stream with an interval: one sample over it.
    let o = c.run(&[
        "stats",
        "--no-stream",
        "--interval",
        "200ms",
        "--format",
        "json",
        "s",
    ]);
    o.assert_ok();
    assert_eq!(o.lines().len(), 1);
    c.run(&["rm", "-f", "s"]).assert_ok();
}

/// The values (`data-values`) of the SVG element `id`, read with a real XML parser.
fn plotted(svg: &std::path::Path) -> (Vec<f64>, Vec<f64>) {
    let script = r#"
import sys, json, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
out = {}
for el in root.iter():
    if el.get("id") in ("cpu", "memory"):
        out[el.get("id")] = [float(x) for x in el.get("data-values", "").split()]
print(json.dumps(out))
"#;
    let o = run_command(Command::new("python3").arg("-c").arg(script).arg(svg));
    o.assert_ok();
    let v = o.json();
    let nums = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .unwrap_or_else(|| panic!("no {k} line: {v}"))
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    (nums("cpu"), nums("memory"))
}

#[test]
fn stats_plot_writes_an_svg_of_what_the_container_did() {
    let c = Ctr::new();
    for (name, cmd) in [
        ("busy", "while :; do :; done"),
        (
            "holder",
            "dd if=/dev/zero of=/dev/shm/a bs=1M count=40; exec sleep 1000",
        ),
    ] {
        run_d(
            &c,
            &[
                "--name",
                name,
                "--monitor-interval",
                "250ms",
                "busybox",
                "sh",
                "-c",
                cmd,
            ],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("busy.svg");
    let svg_s = svg.to_string_lossy().to_string();
    // Enough samples for a line: at least 8 CPU figures.
    let mut cpu = Vec::new();
    let ok = wait_until(PATIENCE, || {
        if !c.run(&["stats", "--plot", &svg_s, "busy"]).ok() {
            return false;
        }
        cpu = plotted(&svg).0;
        cpu.len() >= 8
    });
    assert!(ok, "never 8 CPU samples: {cpu:?}");
    let (cpu, mem) = plotted(&svg);
    assert!(
        mem.len() > cpu.len(),
        "the first sample of a run has no CPU figure"
    );
    // A busy loop: near a whole core when the machine is free; on this shared
    // 2-core machine at least a fifth of one, sample after sample.
    let mut sorted = cpu.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = sorted[sorted.len() / 2];
    assert!(median > 20.0, "busy loop plotted at {cpu:?}");
    assert!(sorted.last().unwrap() < &210.0, "{cpu:?}");
    // The holder: idle CPU, and its 40 MiB in memory.
    let held = dir.path().join("holder.svg");
    let held_s = held.to_string_lossy().to_string();
    let mut mem = Vec::new();
    let ok = wait_until(PATIENCE, || {
        if !c.run(&["stats", "--plot", &held_s, "holder"]).ok() {
            return false;
        }
        mem = plotted(&held).1;
        mem.len() >= 4 && mem.last().is_some_and(|m| *m >= 40.0 * MIB as f64)
    });
    assert!(ok, "holder's memory never plotted at 40 MiB: {mem:?}");
    let (hcpu, _) = plotted(&held);
    assert!(hcpu.iter().skip(1).all(|c| *c < 10.0), "{hcpu:?}");
    // --since: only the recent part.
    let recent = dir.path().join("recent.svg");
    let recent_s = recent.to_string_lossy().to_string();
    c.run(&["stats", "--plot", &recent_s, "busy", "--since", "1s"])
        .assert_ok();
    let (_, all_mem) = plotted(&svg);
    let (_, recent_mem) = plotted(&recent);
    assert!(
        !recent_mem.is_empty() && recent_mem.len() < all_mem.len(),
        "{} of {}",
        recent_mem.len(),
        all_mem.len()
    );
    // A stopped container's history can still be plotted.
    c.run(&["stop", "-t", "0", "busy"]).assert_ok();
    c.run(&["stats", "--plot", &svg_s, "busy"]).assert_ok();
    // Errors: no container, two, none of that history; nothing written.
    let nothing = dir.path().join("nothing.svg");
    let nothing_s = nothing.to_string_lossy().to_string();
    c.run(&["stats", "--plot", &nothing_s])
        .assert_refused_naming("plot");
    c.run(&["stats", "--plot", &nothing_s, "busy", "holder"])
        .assert_refused_naming("plot");
    c.run(&[
        "stats",
        "--plot",
        &nothing_s,
        "busy",
        "--since",
        "2099-01-01T00:00:00Z",
    ])
    .assert_refused_naming("plot");
    assert!(!nothing.exists());
    c.run(&["rm", "-f", "busy", "holder"]).assert_ok();
}
