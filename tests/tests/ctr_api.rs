//! `codex-ctr serve`: the Docker Engine API, driven by the real clients — the docker CLI
//! and docker-py — with `DOCKER_HOST=unix://<the test's socket>`. Each test has its own
//! engine root and network namespace (the fixture's), and its own server in that
//! namespace, stopped (by its pid) when the test ends.

#[path = "ctr_api/harness.rs"]
mod harness;
#[path = "ctr_api/images.rs"]
mod images;
#[path = "ctr_api/resources.rs"]
mod resources;
#[path = "ctr_api/streams.rs"]
mod streams;
#[path = "ctr_api/tls.rs"]
mod tls;

use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;

use harness::*;

#[test]
fn docker_cli_runs_containers_through_the_api() {
    if !clients(false) {
        return;
    }
    let c = Ctr::new();
    let s = Server::start(&c, &[]);
    let v = stdout_of(&s.docker(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Client.APIVersion}}",
    ]));
    assert_eq!(
        v, "1.47 1.47",
        "the CLI negotiates down to the server's version"
    );
    let info = stdout_of(&s.docker(&["info", "--format", "{{.Images}} {{.OSType}}"]));
    assert_eq!(info, "1 linux");

    // Attached, removed at the end: the output, the exit code, nothing left.
    let o = s.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(stdout_of(&o), "out");
    assert!(o.stderr.contains("err"), "stderr: {}", o.stderr);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let since = (now() - 1).to_string();
    let ev = format!("ev-{}", std::process::id());
    s.docker(&[
        "run", "--rm", "--name", &ev, "busybox", "sh", "-c", "exit 7",
    ])
    .assert_code(7);
    assert_eq!(
        stdout_of(&s.docker(&["ps", "-aq"])),
        "",
        "--rm left a container"
    );
    // Its life as events, in Docker's shape: actions, the exit code, the image, the name.
    // Whole seconds: the next one covers every event so far (the CLI waits for it).
    let until = (now() + 1).to_string();
    let events = stdout_of(&s.docker(&[
        "events", "--since", &since, "--until", &until, "--filter", &format!("container={ev}"),
        "--format", "{{.Action}} {{.Actor.Attributes.exitCode}} {{.Actor.Attributes.image}} {{.Actor.Attributes.name}}",
    ]));
    let lines: Vec<String> = events
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            format!("create <no value> busybox:latest {ev}"),
            format!("start <no value> busybox:latest {ev}"),
            format!("die 7 busybox:latest {ev}"),
            format!("destroy <no value> busybox:latest {ev}"),
        ],
        "{events}"
    );

    // A command that cannot start: Docker's exit codes (127 not found, 126 not
    // executable), and --rm still leaves nothing.
    s.docker(&["run", "--rm", "--network", "none", "busybox", "/no/such"])
        .assert_code(127);
    s.docker(&["run", "--rm", "--network", "none", "busybox", "/etc/passwd"])
        .assert_code(126);
    assert!(
        wait_until(Duration::from_secs(10), || s
            .docker(&["ps", "-aq"])
            .stdout
            .trim()
            .is_empty()),
        "a failed --rm run left a container"
    );

    // Security fields reach the engine: a read-only root and no capabilities, each
    // against the same command without it (the positive control).
    let touch = [
        "busybox",
        "sh",
        "-c",
        "touch /probe && grep CapEff /proc/self/status",
    ];
    let run = |extra: &[&str]| {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend_from_slice(extra);
        a.extend_from_slice(&touch);
        s.docker(&a)
    };
    let free = run(&[]);
    assert!(
        stdout_of(&free).contains("CapEff:\t00000000a80425fb"),
        "{}",
        free.stdout
    );
    run(&["--read-only"]).assert_fails();
    let nocaps = run(&["--cap-drop", "ALL"]);
    assert!(
        stdout_of(&nocaps).contains("CapEff:\t0000000000000000"),
        "{}",
        nocaps.stdout
    );

    // Detached, on the default bridge: ps, logs, inspect, exec, the CLI sees it too.
    let name = format!("api-{}", std::process::id());
    let id = stdout_of(&s.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "suite=api",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 3' TERM; echo ready; while :; do sleep 1 & wait; done",
    ]));
    assert_eq!(id.len(), 64, "{id}");
    let ps = stdout_of(&s.docker(&[
        "ps",
        "--filter",
        "label=suite=api",
        "--format",
        "{{.Names}} {{.State}}",
    ]));
    assert_eq!(ps, format!("{name} running"));
    assert!(wait_until(Duration::from_secs(10), || s
        .docker(&["logs", &name])
        .stdout
        == "ready\n"));
    let st = stdout_of(&s.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Running}}",
        &name,
    ]));
    assert_eq!(st, "running true");
    let ip = stdout_of(&s.docker(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.bridge.IPAddress}}",
        &name,
    ]));
    assert!(
        ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "no bridge address: {ip:?}"
    );
    let e = s.docker(&["exec", &name, "sh", "-c", "echo in-exec; exit 5"]);
    e.assert_code(5);
    assert_eq!(e.stdout, "in-exec\n");
    // docker cp both ways (the archive endpoints), and a missing path is a 404.
    let dir = c.root.parent().unwrap().to_path_buf();
    std::fs::write(dir.join("in.txt"), "copied-in\n").unwrap();
    s.docker(&[
        "cp",
        &dir.join("in.txt").to_string_lossy(),
        &format!("{name}:/tmp/"),
    ])
    .assert_ok();
    assert_eq!(
        stdout_of(&s.docker(&["exec", &name, "cat", "/tmp/in.txt"])),
        "copied-in"
    );
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    s.docker(&["cp", &format!("{name}:/etc/passwd"), &out.to_string_lossy()])
        .assert_ok();
    assert!(std::fs::read_to_string(out.join("passwd"))
        .unwrap()
        .starts_with("root:"));
    let o = s.docker(&["cp", &format!("{name}:/no/such"), &out.to_string_lossy()]);
    o.assert_fails();
    assert!(o.stderr.contains("Could not find"), "{}", o.stderr);

    // exec -i: the client's stdin reaches the process; top lists its processes.
    let o = host_sh(&format!(
        "echo piped-in | DOCKER_HOST={} DOCKER_CONFIG={} docker exec -i {name} sh -c 'cat; echo done'",
        s.host(),
        s.config.display()
    ));
    assert_eq!(stdout_of(&o), "piped-in\ndone");
    let top = stdout_of(&s.docker(&["top", &name]));
    assert!(
        top.starts_with("UID") && top.contains("sh -c trap"),
        "{top}"
    );

    // update: new limits for the running container, in its inspect; what the engine
    // cannot change is refused by name.
    s.docker(&[
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "-1",
        "--cpus",
        "1.5",
        &name,
    ])
    .assert_ok();
    let lim = stdout_of(&s.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
        &name,
    ]));
    assert_eq!(lim, "134217728 1500000000");
    let o = s.docker(&["update", "--restart", "always", &name]);
    o.assert_fails();
    assert!(o.stderr.contains("RestartPolicy"), "{}", o.stderr);

    // export: the container's filesystem as a tar.
    let o = host_sh(&format!(
        "DOCKER_HOST={} DOCKER_CONFIG={} docker export {name} | tar t",
        s.host(),
        s.config.display()
    ));
    assert!(stdout_of(&o).lines().any(|l| l == "bin/sh"), "{}", o.stdout);

    let ours = c.run(&["ps", "--format", "json"]);
    ours.assert_ok();
    assert!(
        ours.stdout.contains(&id),
        "codex-ctr ps does not list the API's container: {}",
        ours.stdout
    );

    // stop: its TERM trap exits 3; wait and inspect report it; rm.
    s.docker(&["stop", "-t", "5", &name]).assert_ok();
    assert_eq!(stdout_of(&s.docker(&["wait", &name])), "3");
    let st = stdout_of(&s.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        &name,
    ]));
    assert_eq!(st, "exited 3");
    s.docker(&["rm", "-f", &name]).assert_ok();
    let gone = s.docker(&["inspect", &name]);
    gone.assert_fails();
    assert!(gone.stderr.contains("No such"), "{}", gone.stderr);

    // docker attach with stdin to a running -di container: its supervisor's stdin pipe.
    let rid = stdout_of(&s.docker(&[
        "run",
        "-d",
        "-i",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "while read l; do echo got:$l; done",
    ]));
    let _ = host_sh(&format!(
        "echo from-attach | DOCKER_HOST={} DOCKER_CONFIG={} timeout -s KILL 5 docker attach {rid}",
        s.host(),
        s.config.display()
    ));
    let seen = wait_until(Duration::from_secs(20), || {
        s.docker(&["logs", &rid]).stdout.contains("got:from-attach")
    });
    assert!(seen, "{:?}", s.docker(&["logs", &rid]));
    s.docker(&["rm", "-f", &rid]).assert_ok();

    // docker stop --signal: that signal instead of the container's (USR1's trap exits 5).
    let id3 = stdout_of(&s.docker(&[
        "run",
        "-d",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 5' USR1; trap 'exit 6' TERM; sleep 1000 & wait",
    ]));
    s.docker(&["stop", "--signal", "USR1", "-t", "20", &id3])
        .assert_ok();
    assert_eq!(stdout_of(&s.docker(&["wait", &id3])), "5");
    s.docker(&["rm", &id3]).assert_ok();

    // A running container cannot be removed without -f (409), and can with it.
    let id2 = stdout_of(&s.docker(&["run", "-d", "--network", "none", "busybox", "sleep", "300"]));
    let o = s.docker(&["rm", &id2]);
    o.assert_fails();
    assert!(o.stderr.contains("running"), "{}", o.stderr);
    s.docker(&["rm", "-f", &id2]).assert_ok();
}

/// `docker run --rm` of a failing command gets its exit code even when the server's
/// attach removes the container as soon as its end is recorded: here the supervisor is
/// held by a test pause right after that record, so the removal always comes first.
/// The `die` event is written with the record, under its lock, so the wait (condition
/// `removed`) finds the exit code there. It got 0 when the event came after the record.
#[test]
fn paused_docker_run_rm_gets_the_exit_code_when_the_removal_comes_first() {
    if !clients(false) {
        return;
    }
    let c = Ctr::new();
    let s = Server::start_with_env(&c, &[], &[("CODEX_TEST_PAUSE", "end-recorded:1500")]);
    let o = s.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo bye; exit 3",
    ]);
    o.assert_code(3);
    assert_eq!(o.stdout.trim(), "bye");
    assert_eq!(
        s.docker(&["ps", "-aq"]).stdout.trim(),
        "",
        "--rm leaves nothing"
    );
}

#[test]
fn unknown_routes_old_versions_and_ping_answer_as_docker_does() {
    let c = Ctr::new();
    let s = Server::start(&c, &[]);
    let (status, all) = s.raw("HEAD", "/_ping");
    assert!(status.contains("200"), "{status}");
    assert!(
        all.to_ascii_lowercase().contains("api-version: 1.47"),
        "{all}"
    );
    let (status, all) = s.raw("GET", "/v1.47/swarm");
    assert!(status.contains("501"), "{status}");
    assert!(
        all.contains(r#""message":"GET /swarm is not implemented by codex-ctr""#),
        "{all}"
    );
    let (status, all) = s.raw("GET", "/v1.12/version");
    assert!(status.contains("400"), "{status}");
    assert!(all.contains("too old"), "{all}");
    let (status, all) = s.raw("GET", "/containers/nosuch/json");
    assert!(status.contains("404"), "{status}");
    assert!(all.contains("No such container: nosuch"), "{all}");
    let (status, _) = s.raw("GET", "/v1.47/version");
    assert!(status.contains("200"), "{status}");
}

#[test]
fn containers_outlive_the_server_and_an_idle_server_ends() {
    if !clients(false) {
        return;
    }
    let c = Ctr::new();
    let mut s = Server::start(&c, &["--timeout", "1s"]);
    let id = stdout_of(&s.docker(&["run", "-d", "--network", "none", "busybox", "sleep", "300"]));
    // Idle for a second (no client connected): it ends by itself, status 0, no socket.
    let status =
        wait_child(&mut s.child, Duration::from_secs(30)).expect("the idle server did not end");
    assert!(status.success(), "{status:?}");
    assert!(!s.sock.exists(), "the socket was left behind");
    let st = c.inspect(&id);
    assert_eq!(
        st["status"], "running",
        "the container did not outlive the server: {st}"
    );
}
