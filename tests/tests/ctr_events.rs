//! `codex-ctr events`: persisted JSON lines written by the CLI, the supervisors and the
//! health probe; read back after the fact (`--since/--until/--filter`), and followed
//! live without `--until`.

use codex_tests::ctr::Ctr;
use codex_tests::*;
use serde_json::Value;
use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

fn events(c: &Ctr, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["events", "--until", "0s", "--format", "json"];
    all.extend_from_slice(args);
    let o = c.run(&all);
    o.assert_ok();
    o.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event is one JSON line"))
        .collect()
}

fn actions(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_containers_life_is_in_the_events_after_the_fact_and_filters_select() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "life",
        "-l",
        "tier=web",
        "--restart",
        "on-failure:1",
        "--health-cmd",
        "true",
        "--health-interval",
        "200ms",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 3",
    ])
    .assert_ok();
    c.run(&["wait", "--condition", "exited", "life"])
        .assert_ok();
    c.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "other",
        "busybox",
        "sleep",
        "100",
    ])
    .assert_ok();
    c.run(&["stop", "-t", "1", "other"]).assert_ok();
    c.run(&["rm", "life", "other"]).assert_ok();
    let mine = events(&c, &["--filter", "container=life"]);
    let got = actions(&mine);
    // Two runs, a health check that turned healthy in each, one restart.
    let want_in_order = [
        "create",
        "start",
        "health_status",
        "die",
        "restart",
        "start",
        "health_status",
        "die",
        "destroy",
    ];
    let mut it = got.iter();
    for w in want_in_order {
        assert!(it.any(|g| g == w), "{w} missing or out of order in {got:?}");
    }
    let dies: Vec<&Value> = mine.iter().filter(|e| e["action"] == "die").collect();
    assert_eq!(dies.len(), 2, "{got:?}");
    assert_eq!(dies[0]["attributes"]["exit_code"], "3");
    assert_eq!(
        dies[0]["attributes"]["tier"], "web",
        "labels are attributes"
    );
    let health = mine
        .iter()
        .find(|e| e["action"] == "health_status")
        .unwrap();
    assert_eq!(health["attributes"]["health_status"], "healthy");
    // Filters: by event (alternatives), by label, combined.
    let stops = events(&c, &["--filter", "event=stop"]);
    assert_eq!(
        stops
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["other"]
    );
    let either = actions(&events(
        &c,
        &["--filter", "event=stop", "--filter", "event=restart"],
    ));
    assert_eq!(either, ["restart", "stop"]);
    assert!(events(
        &c,
        &["--filter", "label=tier=web", "--filter", "container=other"]
    )
    .is_empty());
    // --since after everything: nothing; --until before everything: nothing.
    assert!(events(&c, &["--since", "0s"]).is_empty());
    let o = c.run(&["events", "--until", "1970-01-02T00:00:00Z"]);
    o.assert_ok();
    assert_eq!(o.stdout, "");
    c.run(&["events", "--filter", "colour=red", "--until", "0s"])
        .assert_refused_naming("filter");
    // The file is the engine's own: not readable by other users.
    let meta = std::fs::metadata(c.root.join("events.jsonl")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077,
        0
    );
}

#[test]
fn events_follows_new_ones_and_a_killed_supervisor_shows_as_a_die() {
    let c = Ctr::new();
    let mut cmd = c.cmd(&[
        "events",
        "--format",
        "json",
        "--filter",
        "container=followed",
    ]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = own_group(&mut cmd).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    c.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "followed",
        "busybox",
        "sleep",
        "1000",
    ])
    .assert_ok();
    let next = |want: &str| -> Value {
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(v) if v["action"] == want => return v,
                Ok(_) => continue,
                Err(e) => panic!("no {want} event followed: {e}"),
            }
        }
    };
    next("create");
    next("start");
    // The supervisor dies: nothing records the end, the next command repairs the
    // record and says so in an event.
    let v = c.inspect("followed");
    let (sup, init) = (
        v["supervisor_pid"].as_i64().unwrap(),
        v["pid"].as_i64().unwrap(),
    );
    host_sh(&format!("kill -9 {sup} {init}")).assert_ok();
    assert!(wait_until(Duration::from_secs(30), || !pid_alive(sup)
        && !pid_alive(init)));
    c.run(&["ps", "-a"]).assert_ok();
    let die = next("die");
    assert!(
        die["attributes"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("supervisor died"),
        "{die:#}"
    );
    c.run(&["rm", "-f", "followed"]).assert_ok();
    next("destroy");
    kill_group(&mut child);
    let _ = child.wait();
}
