//! Health checks end to end (`--health-*`, docs/monitors.md): each probe kind's
//! transitions, the last results in `inspect` and the status in `ps`, a hung check
//! killed at its timeout with its process group, checks that never overlap, the start
//! period, and `--restart-on-unhealthy`. Containers have no network but their own
//! loopback (`--network none`): HTTP and TCP probes need no published port.

use codex_tests::ctr::Ctr;
use codex_tests::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

/// Waits until `f` holds for the container's record; panics with the last one if not.
#[track_caller]
fn wait_for(c: &Ctr, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(PATIENCE, || {
        last = c.inspect(name);
        f(&last)
    });
    assert!(ok, "{name} never got {what}: {last:#}");
    last
}

fn health_status(v: &Value) -> &str {
    v["health"]["status"].as_str().unwrap_or("")
}

/// Seconds since midnight of an RFC 3339 UTC time.
fn secs(t: &Value) -> f64 {
    let t = t.as_str().unwrap();
    let hms = &t[11..t.len() - 1];
    let p: Vec<f64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    p[0] * 3600.0 + p[1] * 60.0 + p[2]
}

fn run_d(c: &Ctr, args: &[&str]) {
    let mut all = vec!["run", "-d", "--network", "none"];
    all.extend_from_slice(args);
    c.run(&all).assert_ok();
}

#[test]
fn a_command_check_goes_starting_unhealthy_healthy_with_its_last_results() {
    let c = Ctr::new();
    run_d(
        &c,
        &[
            "--name",
            "cmd",
            "--health-cmd",
            "echo probing; test -f /ok",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    let v = c.inspect("cmd");
    assert_eq!(health_status(&v), "starting", "{v:#}");
    let v = wait_for(&c, "cmd", "unhealthy", |v| health_status(v) == "unhealthy");
    assert!(v["health"]["failing_streak"].as_u64() >= Some(2), "{v:#}");
    let last = &v["health"]["log"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["exit_code"], 1);
    assert_eq!(last["output"], "probing\n");
    let ps = c.run(&["ps"]);
    let row = ps
        .lines()
        .into_iter()
        .find(|l| l.contains("cmd"))
        .unwrap()
        .to_string();
    assert!(row.contains("unhealthy"), "{ps:?}");
    // The check runs inside the container: a file made there turns it healthy.
    c.run(&["exec", "cmd", "touch", "/ok"]).assert_ok();
    let v = wait_for(&c, "cmd", "healthy", |v| health_status(v) == "healthy");
    assert_eq!(v["health"]["failing_streak"], 0);
    // Only the last five results are kept.
    let v = wait_for(&c, "cmd", "five results", |v| {
        v["health"]["log"].as_array().is_some_and(|l| l.len() == 5)
            && v["health"]["log"][4]["exit_code"] == 0
    });
    std::thread::sleep(Duration::from_millis(600));
    let later = c.inspect("cmd");
    assert_eq!(
        later["health"]["log"].as_array().unwrap().len(),
        5,
        "{later:#}"
    );
    assert_ne!(
        later["health"]["log"][4], v["health"]["log"][4],
        "checks go on"
    );
    // A container without a check has no health.
    run_d(&c, &["--name", "plain", "busybox", "sleep", "1000"]);
    assert!(c.inspect("plain")["health"].is_null());
}

#[test]
fn an_http_check_is_healthy_on_2xx_and_unhealthy_on_404_without_a_published_port() {
    let c = Ctr::new();
    let serve = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www";
    for (name, target) in [("web-ok", "8080/index.html"), ("web-404", "8080/missing")] {
        run_d(
            &c,
            &[
                "--name",
                name,
                "--health-http",
                target,
                "--health-interval",
                "200ms",
                "--health-retries",
                "2",
                "busybox",
                "sh",
                "-c",
                serve,
            ],
        );
    }
    let ok = wait_for(&c, "web-ok", "healthy", |v| health_status(v) == "healthy");
    let last = ok["health"]["log"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["http_status"], 200, "{ok:#}");
    assert!(
        last["output"].as_str().unwrap().starts_with("HTTP/1."),
        "{last:#}"
    );
    let bad = wait_for(&c, "web-404", "unhealthy", |v| {
        health_status(v) == "unhealthy"
    });
    let last = bad["health"]["log"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["http_status"], 404, "{bad:#}");
    assert_eq!(last["exit_code"], 1);
    // The probe reached the container's own loopback: nothing listens on the host's.
    let host = host_sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/ || true");
    assert_ne!(
        host.stdout.trim(),
        "200",
        "a host server would make this test moot"
    );
}

#[test]
fn a_tcp_check_follows_a_listener_in_the_containers_own_netns() {
    let c = Ctr::new();
    // Listens only after 1.5 s: refused first, then accepted.
    run_d(
        &c,
        &[
            "--name",
            "tcp",
            "--health-tcp",
            "7070",
            "--health-interval",
            "200ms",
            "--health-retries",
            "1",
            "busybox",
            "sh",
            "-c",
            "sleep 1.5; mkdir -p /w; exec httpd -f -p 7070 -h /w",
        ],
    );
    let v = wait_for(&c, "tcp", "unhealthy", |v| health_status(v) == "unhealthy");
    let first = v["health"]["log"][0].clone();
    assert!(
        first["output"].as_str().unwrap().contains("refused"),
        "{first:#}"
    );
    wait_for(&c, "tcp", "healthy", |v| health_status(v) == "healthy");
}

#[test]
fn a_hung_check_is_killed_at_its_timeout_with_its_group_and_checks_never_overlap() {
    let c = Ctr::new();
    run_d(
        &c,
        &[
            "--name",
            "hung",
            "--health-cmd",
            "echo begun; sleep 1000 & sleep 999",
            "--health-interval",
            "1s",
            "--health-timeout",
            "300ms",
            "--health-retries",
            "1",
            "busybox",
            "sleep",
            "2000",
        ],
    );
    let v = wait_for(&c, "hung", "a failed check", |v| {
        v["health"]["log"].as_array().is_some_and(|l| !l.is_empty())
    });
    let r = v["health"]["log"][0].clone();
    assert_eq!(r["exit_code"], -1, "{r:#}");
    let out = r["output"].as_str().unwrap();
    assert!(
        out.starts_with("begun") && out.contains("timed out"),
        "{r:#}"
    );
    let took = secs(&r["end"]) - secs(&r["start"]);
    assert!((0.29..5.0).contains(&took), "the check took {took} s");
    assert_eq!(health_status(&v), "unhealthy");
    // Between checks nothing of the killed one is left in the container: only its
    // init runs (the next check is an interval away).
    let init = v["pid"].as_i64().unwrap();
    let procs: Vec<i64> = v["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|cg| {
            read_lossy(&Path::new(cg["path"].as_str().unwrap()).join("cgroup.procs"))
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i64>>()
        })
        .collect();
    assert!(
        procs.iter().all(|p| *p == init),
        "left in the container: {procs:?}"
    );
    // One at a time: each check began after the previous one ended.
    let v = wait_for(&c, "hung", "three results", |v| {
        v["health"]["log"].as_array().is_some_and(|l| l.len() >= 3)
    });
    let log = v["health"]["log"].as_array().unwrap();
    for w in log.windows(2) {
        assert!(secs(&w[1]["start"]) >= secs(&w[0]["end"]), "{log:#?}");
    }
}

#[test]
fn failures_in_the_start_period_do_not_count() {
    let c = Ctr::new();
    run_d(
        &c,
        &[
            "--name",
            "slow",
            "--health-cmd",
            "false",
            "--health-interval",
            "200ms",
            "--health-retries",
            "1",
            "--health-start-period",
            "60s",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    let v = wait_for(&c, "slow", "three results", |v| {
        v["health"]["log"].as_array().is_some_and(|l| l.len() >= 3)
    });
    assert_eq!(health_status(&v), "starting", "{v:#}");
    assert_eq!(v["health"]["failing_streak"], 0);
}

#[test]
fn restart_on_unhealthy_kills_the_run_and_the_policy_starts_it_again() {
    let c = Ctr::new();
    run_d(
        &c,
        &[
            "--name",
            "sick",
            "--restart",
            "on-failure",
            "--restart-on-unhealthy",
            "--health-cmd",
            "test ! -f /bad",
            "--health-interval",
            "200ms",
            "--health-retries",
            "1",
            "busybox",
            "sh",
            "-c",
            "rm -f /bad; sleep 1; touch /bad; exec sleep 1000",
        ],
    );
    let v = wait_for(&c, "sick", "a restart", |v| {
        v["restart_count"].as_u64() >= Some(1)
    });
    assert_eq!(v["exit_code"], 137, "killed when unhealthy: {v:#}");
    // The new run starts over (`starting`, then healthy until /bad again).
    wait_for(&c, "sick", "running again", |v| v["status"] == "running");
    c.run(&["rm", "-f", "sick"]).assert_ok();
}

#[test]
fn bad_health_flags_are_refused_naming_the_flag() {
    let c = Ctr::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--health-http", "0/x"], "health-http"),
        (&["--health-tcp", "http"], "health-tcp"),
        (
            &["--health-cmd", "true", "--health-interval", "10ms"],
            "health-interval",
        ),
        (
            &["--health-cmd", "true", "--health-timeout", "soon"],
            "health-timeout",
        ),
        (
            &["--health-cmd", "true", "--health-retries", "0"],
            "health-retries",
        ),
        (
            &["--health-cmd", "true", "--health-tcp", "80"],
            "health-cmd",
        ),
        (&["--health-interval", "1s"], "health-interval"),
        (
            &["--no-healthcheck", "--health-cmd", "true"],
            "no-healthcheck",
        ),
        (
            &["--restart", "always", "--restart-on-unhealthy"],
            "restart-on-unhealthy",
        ),
        (
            &["--health-cmd", "true", "--restart-on-unhealthy"],
            "restart-on-unhealthy",
        ),
    ];
    for (flags, field) in cases {
        let mut args = vec!["create"];
        args.extend_from_slice(flags);
        args.extend(["busybox", "true"]);
        c.run(&args).assert_refused_naming(field);
    }
    assert_eq!(c.containers(), 0, "nothing half-made");
    // --no-healthcheck alone is fine and records a switched-off check.
    c.run(&[
        "create",
        "--name",
        "off",
        "--no-healthcheck",
        "busybox",
        "true",
    ])
    .assert_ok();
    assert_eq!(
        c.inspect("off")["config"]["health"]["probe"]["type"],
        "none"
    );
}
