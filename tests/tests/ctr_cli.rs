//! The everyday CLI (issue 20): what a Docker user does without thinking must not crash or
//! surprise. Each test has its own engine root.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;

/// Runs `codex-ctr args...` with stdout a pipe whose reader is already gone, as in
/// `codex-ctr logs x | head -0` once `head` has exited: every write gets EPIPE. Returns
/// the exit status and stderr.
fn run_into_closed_pipe(c: &Ctr, args: &[&str]) -> (ExitStatus, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let err = tempfile::NamedTempFile::new().expect("stderr file");
    let mut cmd = c.cmd(args);
    own_group(&mut cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(err.reopen().expect("reopen stderr file"));
    let mut child = cmd.spawn().expect("spawn codex-ctr");
    // Our copy of the write end went with the Command: only the child holds it.
    drop(cmd);
    let status = match wait_child(&mut child, cmd_timeout()) {
        Some(s) => s,
        None => {
            kill_group(&mut child);
            panic!("codex-ctr {args:?} into a closed pipe hung");
        }
    };
    (status, read_lossy(err.path()))
}

#[test]
fn a_closed_stdout_ends_printing_commands_by_sigpipe_not_a_panic() {
    let c = Ctr::new();
    // Enough output that every command below has something to write.
    c.run(&[
        "run",
        "--name",
        "chatty",
        "busybox",
        "sh",
        "-c",
        "seq 1 20000",
    ])
    .assert_ok();
    // Positive control: with a reader, each command prints.
    for args in [
        &["logs", "chatty"][..],
        &["logs", "-f", "chatty"],
        &["ps", "-a"],
        &["inspect", "chatty"],
        &["info"],
        &["image", "ls"],
    ] {
        let o = c.run(args);
        o.assert_ok();
        assert!(!o.stdout.is_empty(), "{args:?} printed nothing: {o:?}");
        let (status, stderr) = run_into_closed_pipe(&c, args);
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "{args:?} into a closed pipe: {status:?}, stderr: {stderr}"
        );
        assert!(
            !stderr.contains("panicked"),
            "{args:?} panicked on a closed pipe: {stderr}"
        );
    }
}

#[test]
fn attached_run_whose_reader_left_exits_141_and_still_removes_its_container() {
    let c = Ctr::new();
    // The container outlives the reader: it is handed to its supervisor for removal.
    let (status, stderr) = run_into_closed_pipe(
        &c,
        &[
            "run",
            "--rm",
            "--name",
            "outlives",
            "busybox",
            "sh",
            "-c",
            "echo first; sleep 2; echo last",
        ],
    );
    assert_eq!(status.code(), Some(141), "{status:?}, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        c.inspect("outlives")["status"],
        "running",
        "the container must run on without its reader"
    );
    assert!(
        wait_until(Duration::from_secs(30), || c.containers() == 0),
        "--rm was lost when the reader went away: {:?}",
        c.run(&["ps", "-a"])
    );

    // A container that never ends by itself (`yes`): the command still returns, and a
    // later stop removes the container.
    let (status, stderr) =
        run_into_closed_pipe(&c, &["run", "--rm", "--name", "yes", "busybox", "yes"]);
    assert_eq!(status.code(), Some(141), "{status:?}, stderr: {stderr}");
    c.run(&["stop", "-t", "0", "yes"]).assert_ok();
    assert!(
        wait_until(Duration::from_secs(30), || c.containers() == 0),
        "the stopped container was not removed: {:?}",
        c.run(&["ps", "-a"])
    );
}

#[test]
fn attached_run_without_rm_keeps_its_container_when_the_reader_leaves() {
    let c = Ctr::new();
    let (status, _) = run_into_closed_pipe(&c, &["run", "--name", "kept", "busybox", "echo", "x"]);
    assert_eq!(status.code(), Some(141), "{status:?}");
    c.run(&["wait", "kept"]).assert_ok();
    assert_eq!(c.inspect("kept")["status"], "exited");
    assert_eq!(c.containers(), 1);
}

#[test]
fn stop_of_a_container_removed_at_its_end_succeeds() {
    let c = Ctr::new();
    c.run(&[
        "run", "-d", "--rm", "--name", "brief", "busybox", "sleep", "100",
    ])
    .assert_ok();
    assert_eq!(c.inspect("brief")["status"], "running");
    let o = c.run(&["stop", "-t", "0", "brief"]);
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "brief");
    assert!(
        wait_until(Duration::from_secs(30), || c.containers() == 0),
        "--rm did not remove the stopped container"
    );
}

#[test]
fn an_unknown_flag_before_the_image_is_an_unknown_flag_not_the_image() {
    let c = Ctr::new();
    for cmd in ["run", "create"] {
        let o = c.run(&[cmd, "--no-such-flag", "1", "busybox", "true"]);
        o.assert_code(125);
        o.assert_stderr_mentions("--no-such-flag");
        assert!(
            !o.stderr.contains("not found"),
            "the flag was taken for the image: {o:?}"
        );
    }
    // Under minimal isolation (no image) it was run as the command (`-it` was the
    // example before -i and -t existed: `-Z` is no flag of run's).
    let o = c.run(&["run", "--isolation", "minimal", "-Z", "true"]);
    o.assert_code(125);
    assert!(!o.stderr.contains("executable file"), "{o:?}");
    assert_eq!(c.containers(), 0, "a refused flag left a container");
    // What follows the image is the command's, flags included.
    let o = c.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo \"$@\"",
        "x",
        "-a",
        "--b",
    ]);
    o.assert_ok();
    assert_eq!(o.stdout, "-a --b\n");
}

#[test]
fn a_missing_container_is_an_engine_error_125_in_every_command() {
    let c = Ctr::new();
    for cmd in [
        &["stop", "nosuch"][..],
        &["rm", "nosuch"],
        &["start", "nosuch"],
        &["kill", "nosuch"],
        &["restart", "nosuch"],
        &["pause", "nosuch"],
        &["unpause", "nosuch"],
        &["wait", "nosuch"],
        &["logs", "nosuch"],
        &["inspect", "nosuch"],
        &["exec", "nosuch", "true"],
    ] {
        let o = c.run(cmd);
        o.assert_code(125);
        o.assert_stderr_mentions("nosuch");
    }
}

#[test]
fn a_create_refused_on_its_second_volume_leaves_the_first_one_uncreated() {
    let c = Ctr::new();
    // Positive control: the first volume alone is made.
    c.run(&["create", "--name", "ok", "-v", "made:/x", "busybox", "true"])
        .assert_ok();
    assert!(c.run(&["volume", "ls", "-q"]).stdout.contains("made"));
    let o = c.run(&[
        "run",
        "--rm",
        "-v",
        "leak:/x",
        "-v",
        "/nonexistent:/y",
        "busybox",
        "true",
    ]);
    o.assert_code(125);
    o.assert_stderr_mentions("volumes[1]");
    let vols = c.run(&["volume", "ls", "-q"]);
    vols.assert_ok();
    assert!(
        !vols.stdout.contains("leak"),
        "half a create was left: {vols:?}"
    );
    assert_eq!(c.containers(), 1);
}

#[test]
fn a_timeout_says_it_fired_and_kills_after_a_short_grace() {
    let c = Ctr::new();
    // The program ignores the stop signal: only the SIGKILL after the grace ends it.
    let started = std::time::Instant::now();
    let o = c.run(&[
        "run",
        "--rm",
        "--timeout",
        "1s",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; echo ready; while :; do sleep 1; done",
    ]);
    let took = started.elapsed();
    o.assert_code(124);
    o.assert_stderr_mentions("--timeout");
    o.assert_stderr_mentions("timed out after 1 s");
    // A 10 s grace (what a timeout used to get) cannot finish under 11 s; the default
    // 1 s grace finishes in about 2 s, and 9 s holds on a loaded machine.
    assert!(took < Duration::from_secs(9), "took {took:?}: {o:?}");

    // An explicit grace is honoured: a program that handles TERM in it exits by itself.
    let o = c.run(&[
        "run",
        "--rm",
        "--timeout",
        "1s",
        "--timeout-grace",
        "20s",
        "busybox",
        "sh",
        "-c",
        "trap 'echo cleaned; exit 0' TERM; while :; do sleep 1; done",
    ]);
    o.assert_code(124);
    assert_eq!(o.stdout, "cleaned\n", "{o:?}");
}

#[test]
fn streaming_stats_into_a_file_prints_plain_successive_tables() {
    let c = Ctr::new();
    c.run(&["run", "-d", "--name", "idle", "busybox", "sleep", "60"])
        .assert_ok();
    let out = tempfile::NamedTempFile::new().expect("stats output file");
    let mut cmd = c.cmd(&["stats", "idle"]);
    own_group(&mut cmd)
        .stdin(Stdio::null())
        .stdout(out.reopen().expect("reopen"))
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn stats");
    let two_tables = wait_until(Duration::from_secs(30), || {
        read_lossy(out.path()).matches("NAME").count() >= 2
    });
    kill_group(&mut child);
    let text = read_lossy(out.path());
    assert!(two_tables, "stats did not stream two tables: {text:?}");
    assert!(text.contains("idle"), "{text:?}");
    assert!(!text.contains('\x1b'), "escape codes into a file: {text:?}");
}

#[test]
fn user_names_are_resolved_from_the_images_passwd_and_group() {
    let c = Ctr::new();
    // Control: numbers as before.
    let o = c.run(&["run", "--rm", "-u", "65534:65534", "busybox", "id", "-u"]);
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "65534");
    let o = c.run(&[
        "run",
        "--rm",
        "-u",
        "nobody",
        "busybox",
        "sh",
        "-c",
        "id -u; id -g",
    ]);
    o.assert_ok();
    assert_eq!(o.lines(), ["65534", "65534"], "{o:?}");
    let o = c.run(&[
        "run",
        "--rm",
        "-u",
        "root:nogroup",
        "busybox",
        "sh",
        "-c",
        "id -u; id -g",
    ]);
    o.assert_ok();
    assert_eq!(o.lines(), ["0", "65534"], "{o:?}");
    // A name the image does not know is an error naming it, never root.
    let o = c.run(&["run", "--rm", "-u", "www", "busybox", "id"]);
    o.assert_code(125);
    o.assert_stderr_mentions("no user \"www\"");
    assert_eq!(c.containers(), 0);
    // Under minimal isolation there is no image to read it from.
    let o = c.run(&[
        "run",
        "--rm",
        "--isolation",
        "minimal",
        "-u",
        "nobody",
        "true",
    ]);
    o.assert_code(125);
    o.assert_stderr_mentions("UID[:GID]");
}

#[test]
fn completions_and_man_pages_come_from_the_same_definitions_as_help() {
    let c = Ctr::new();
    for (shell, needle) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef codex-ctr"),
        ("fish", "complete -c codex-ctr"),
    ] {
        let o = c.run(&["completion", shell]);
        o.assert_ok();
        assert!(
            o.stdout.contains(needle),
            "{shell}: {}",
            &o.stdout[..o.stdout.len().min(300)]
        );
        assert!(o.stdout.contains("health-cmd"), "{shell} lacks run's flags");
    }
    c.run(&["completion", "tcsh"]).assert_code(125);
    let dir = tempfile::tempdir().expect("temp dir");
    let man = dir.path().join("man1");
    c.run(&["manpages", man.to_str().unwrap()]).assert_ok();
    let run = std::fs::read_to_string(man.join("codex-ctr-run.1")).expect("codex-ctr-run.1");
    assert!(run.contains(".TH") && run.contains("health\\-cmd"), "{run}");
    assert!(man.join("codex-ctr.1").exists());
    assert!(
        !man.join("codex-ctr-manpages.1").exists(),
        "the hidden command got a page"
    );
}

#[test]
fn dockers_short_forms_images_rmi_and_logs_n_work() {
    let c = Ctr::new();
    let long = c.run(&["image", "ls", "-q"]);
    long.assert_ok();
    let short = c.run(&["images", "-q"]);
    short.assert_ok();
    assert_eq!(short.stdout, long.stdout);
    assert!(!short.stdout.trim().is_empty());
    c.run(&["run", "--name", "counted", "busybox", "seq", "1", "5"])
        .assert_ok();
    let o = c.run(&["logs", "-n", "2", "counted"]);
    o.assert_ok();
    assert_eq!(o.stdout, "4\n5\n");
    c.run(&["rm", "counted"]).assert_ok();
    c.run(&["rmi", "busybox"]).assert_ok();
    assert!(c.run(&["images", "-q"]).stdout.trim().is_empty());
}

#[test]
fn exec_user_names_are_resolved_from_the_containers_passwd() {
    let c = Ctr::new();
    c.run(&["run", "-d", "--name", "host", "busybox", "sleep", "100"])
        .assert_ok();
    // Control: numbers as before.
    let o = c.run(&["exec", "-u", "65534", "host", "id", "-u"]);
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "65534");
    let o = c.run(&[
        "exec",
        "-u",
        "nobody:root",
        "host",
        "sh",
        "-c",
        "id -u; id -g",
    ]);
    o.assert_ok();
    assert_eq!(o.lines(), ["65534", "0"], "{o:?}");
    // A user added to the running container's own passwd is found too.
    c.run(&[
        "exec",
        "host",
        "sh",
        "-c",
        "echo 'app:x:1234:4321::/:/bin/sh' >> /etc/passwd",
    ])
    .assert_ok();
    let o = c.run(&["exec", "-u", "app", "host", "sh", "-c", "id -u; id -g"]);
    o.assert_ok();
    assert_eq!(o.lines(), ["1234", "4321"], "{o:?}");
    let o = c.run(&["exec", "-u", "www", "host", "id"]);
    o.assert_code(125);
    o.assert_stderr_mentions("no user \"www\"");
}

#[test]
fn image_sizes_are_for_people_in_tables_and_bytes_in_json() {
    let c = Ctr::new();
    let json = c.run(&["image", "ls", "--format", "json"]);
    json.assert_ok();
    let bytes = json.json()[0]["size"].as_u64().expect("size in bytes");
    assert!(bytes > 1024 * 1024, "{bytes}");
    let table = c.run(&["image", "ls"]);
    table.assert_ok();
    let row = table.lines()[1].to_string();
    assert!(row.ends_with("MiB"), "{row}");
    assert!(!row.contains(&bytes.to_string()), "{row}");
}

#[test]
fn system_prune_removes_what_nothing_uses_and_keeps_what_runs() {
    let c = Ctr::new();
    c.run(&["network", "create", "idle-net"]).assert_ok();
    c.run(&["network", "create", "busy-net"]).assert_ok();
    c.run(&[
        "run",
        "--name",
        "done",
        "-v",
        "old-data:/d",
        "busybox",
        "true",
    ])
    .assert_ok();
    c.run(&[
        "run",
        "-d",
        "--name",
        "alive",
        "--network",
        "busy-net",
        "-v",
        "live-data:/d",
        "busybox",
        "sleep",
        "100",
    ])
    .assert_ok();
    let o = c.run(&["system", "prune"]);
    o.assert_ok();
    assert!(o.stdout.contains("Deleted container: done"), "{o:?}");
    assert!(o.stdout.contains("Deleted network: idle-net"), "{o:?}");
    let names = c.run(&["ps", "-a", "--format", "json"]).json();
    assert_eq!(names.as_array().map(Vec::len), Some(1), "{names}");
    assert!(c.run(&["network", "ls", "-q"]).stdout.contains("busy-net"));
    // Volumes only with --volumes; images in use stay even with -a.
    assert!(c.run(&["volume", "ls", "-q"]).stdout.contains("old-data"));
    let o = c.run(&["system", "prune", "-a", "--volumes"]);
    o.assert_ok();
    assert!(o.stdout.contains("Deleted volume: old-data"), "{o:?}");
    let vols = c.run(&["volume", "ls", "-q"]).stdout;
    assert!(
        vols.contains("live-data") && !vols.contains("old-data"),
        "{vols}"
    );
    assert!(
        !c.run(&["images", "-q"]).stdout.trim().is_empty(),
        "the running container's image went"
    );
    // Once nothing runs, -a takes the image too.
    c.run(&["rm", "-f", "alive"]).assert_ok();
    c.run(&["system", "prune", "-a"]).assert_ok();
    assert!(c.run(&["images", "-q"]).stdout.trim().is_empty());
}

#[test]
fn rename_changes_the_name_everywhere_and_refuses_a_taken_or_bad_one() {
    let c = Ctr::new();
    c.run(&["run", "-d", "--name", "before", "busybox", "sleep", "100"])
        .assert_ok();
    c.run(&["create", "--name", "taken", "busybox", "true"])
        .assert_ok();
    let id = c.inspect("before")["id"].as_str().expect("id").to_string();
    c.run(&["rename", "before", "after"]).assert_ok();
    assert_eq!(c.inspect("after")["id"], id.as_str());
    assert_eq!(c.inspect("after")["status"], "running");
    c.run(&["inspect", "before"]).assert_code(125);
    let ps = c.run(&["ps", "--format", "json"]).json();
    assert_eq!(ps[0]["name"], "after", "{ps}");
    // Refusals name the problem and change nothing.
    let o = c.run(&["rename", "after", "taken"]);
    o.assert_code(125);
    o.assert_stderr_mentions("taken");
    let o = c.run(&["rename", "after", "no/slashes"]);
    o.assert_code(125);
    o.assert_stderr_mentions("no/slashes");
    assert_eq!(c.inspect("after")["id"], id.as_str());
    // It stops and is removed under its new name; the event says what it was.
    c.run(&["stop", "-t", "0", "after"]).assert_ok();
    let ev = c.run(&["events", "--until", "0s", "--format", "json"]);
    assert!(
        ev.stdout.contains("\"rename\"") && ev.stdout.contains("before"),
        "{ev:?}"
    );
    c.run(&["rm", "after"]).assert_ok();
}

#[test]
fn inspect_and_ps_take_docker_style_templates() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "tmpl",
        "-l",
        "app=web",
        "--network",
        "none",
        "busybox",
        "sleep",
        "60",
    ])
    .assert_ok();
    let o = c.run(&[
        "inspect",
        "-f",
        r#"{{.State.Status}}|{{.Name}}|{{index .Config.Labels "app"}}|{{json .Config.Command}}"#,
        "tmpl",
    ]);
    o.assert_ok();
    assert_eq!(o.stdout, "running|tmpl|web|[\"sleep\",\"60\"]\n", "{o:?}");
    let o = c.run(&["ps", "--format", "{{.Names}} {{.Status}} {{.Labels}}"]);
    o.assert_ok();
    assert_eq!(o.stdout, "tmpl running app=web\n", "{o:?}");
    let o = c.run(&["ps", "--format", "table {{.Names}}\t{{.Command}}"]);
    o.assert_ok();
    let lines: Vec<Vec<&str>> = o
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [vec!["NAMES", "COMMAND"], vec!["tmpl", "sleep", "60"]],
        "{o:?}"
    );
    // Several containers: one line each; a missing one is an error after the others.
    let o = c.run(&["inspect", "-f", "{{.Name}}", "tmpl", "nosuch"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert_eq!(o.stdout, "tmpl\n", "{o:?}");
    assert!(o.stderr.contains("nosuch"), "{o:?}");
    // A template that cannot parse is refused by name, before anything prints.
    let o = c.run(&["inspect", "-f", "{{if .Name}}", "tmpl"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(o.stderr.contains("format"), "{o:?}");
    c.run(&["rm", "-f", "tmpl"]).assert_ok();
}

#[test]
fn init_runs_in_front_of_the_command_and_passes_the_stop_signal_on() {
    if !std::path::Path::new("/usr/bin/tini-static").exists() {
        skip("--init: /usr/bin/tini-static is missing (apt-get install -y tini)");
        return;
    }
    let c = Ctr::new();
    let o = c.run(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo $$; tr '\\0' ' ' < /proc/1/cmdline",
    ]);
    o.assert_ok();
    let mut lines = o.stdout.lines();
    assert_ne!(lines.next(), Some("1"), "the command is not PID 1: {o:?}");
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("/dev/init -- sh")),
        "{o:?}"
    );
    // A shell as PID 1 has no SIGTERM handler: stop must kill it (137). Behind the
    // init it gets the SIGTERM and dies of it (143), well inside the timeout.
    for (flags, want) in [(&[][..], 137), (&["--init"][..], 143)] {
        let mut args = vec!["run", "-d", "--name", "svc", "--network", "none"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "sh", "-c", "sleep 300"]);
        c.run(&args).assert_ok();
        c.run(&["stop", "-t", "2", "svc"]).assert_ok();
        assert_eq!(c.inspect("svc")["exit_code"], want, "{flags:?}");
        c.run(&["rm", "svc"]).assert_ok();
    }
}

#[test]
fn top_update_system_df_and_the_container_group() {
    let c = Ctr::new();
    let labels = c.root.with_file_name("labels");
    std::fs::write(&labels, "# team labels\ntier=db\nowner=ops\n").expect("label file");
    c.run(&[
        "container",
        "run",
        "-d",
        "--name",
        "lim",
        "-m",
        "64m",
        "--label-file",
        &labels.to_string_lossy(),
        "-l",
        "owner=me",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "sleep 300 & exec sleep 301",
    ])
    .assert_ok();
    // `container ls` is `ps`.
    let o = c.run(&["container", "ls", "--format", "{{.Names}} {{.Labels}}"]);
    o.assert_ok();
    assert_eq!(
        o.stdout, "lim owner=me,tier=db\n",
        "-l wins over the file: {o:?}"
    );
    // top: both sleeps, by the host's pids.
    let o = c.run(&["top", "--format", "json", "lim"]);
    o.assert_ok();
    let rows = o.json();
    let cmds: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["command"].as_str())
        .collect();
    assert!(
        cmds.contains(&"sleep 300") && cmds.contains(&"sleep 301"),
        "{o:?}"
    );
    // update: the running container's cgroup limit changes at once.
    let memory_limit = || -> u64 {
        let o = c.run(&["exec", "lim", "sh", "-c",
            "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"]);
        o.assert_ok();
        o.stdout.trim().parse().expect("a number")
    };
    assert_eq!(memory_limit(), 64 << 20);
    c.run(&["update", "-m", "96m", "--pids-limit", "40", "lim"])
        .assert_ok();
    assert_eq!(memory_limit(), 96 << 20);
    assert_eq!(c.inspect("lim")["limits"]["pids"], 40);
    // ... and every later start.
    c.run(&["restart", "-t", "1", "lim"]).assert_ok();
    assert_eq!(memory_limit(), 96 << 20);
    let o = c.run(&["update", "-m", "1k", "lim"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(o.stderr.contains("memory"), "{o:?}");
    // system df counts what is there.
    let o = c.run(&["system", "df", "--format", "json"]);
    o.assert_ok();
    let df = o.json();
    assert_eq!(df[0]["kind"], "Images");
    assert_eq!(
        (df[0]["total"].as_u64(), df[0]["active"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (df[1]["total"].as_u64(), df[1]["active"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(df[0]["size"].as_u64().is_some_and(|s| s > 0), "{df}");
    c.run(&["container", "rm", "-f", "lim"]).assert_ok();
}

#[test]
fn strict_containers_get_writable_new_volumes_and_their_mount_points() {
    let c = Ctr::new();
    // A new named volume at a path the image lacks: made, mounted, writable by the
    // container's (mapped) root.
    let o = c.run(&[
        "run",
        "--rm",
        "--isolation",
        "strict",
        "-v",
        "sdata:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f && cat /data/f",
    ]);
    o.assert_ok();
    assert_eq!(o.stdout, "kept\n", "{o:?}");
    // A volume a standard container made first keeps its owner, the host's root:
    // readable under strict, not writable (docs/engine.md says so).
    c.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "shared:/s",
        "busybox",
        "sh",
        "-c",
        "echo from-standard > /s/f",
    ])
    .assert_ok();
    let o = c.run(&[
        "run",
        "--rm",
        "--isolation",
        "strict",
        "-v",
        "shared:/s",
        "busybox",
        "sh",
        "-c",
        "cat /s/f; touch /s/g 2>/dev/null && echo wrote || echo refused",
    ]);
    o.assert_ok();
    assert_eq!(o.stdout, "from-standard\nrefused\n", "{o:?}");
}

#[test]
fn a_strict_mount_point_behind_an_image_symlink_stays_inside_the_rootfs() {
    let c = Ctr::new();
    // An image whose /escape points at a host directory by absolute path.
    let outside = tempfile::tempdir().expect("outside dir");
    let img = tempfile::tempdir().expect("image dir");
    let tar = codex_tests::fixture_dir().join("rootfs.tar");
    let st = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(img.path())
        .status()
        .expect("tar");
    assert!(st.success());
    std::os::unix::fs::symlink(outside.path(), img.path().join("escape")).expect("symlink");
    c.run(&["image", "import", &img.path().to_string_lossy(), "trap"])
        .assert_ok();
    let o = c.run(&[
        "run",
        "--rm",
        "--isolation",
        "strict",
        "-v",
        "tv:/escape/x",
        "trap",
        "sh",
        "-c",
        "echo in > /escape/x/f && cat /escape/x/f",
    ]);
    o.assert_ok();
    assert_eq!(o.stdout, "in\n", "{o:?}");
    // The mount point was made inside the rootfs, never in the host's directory.
    let left: Vec<_> = std::fs::read_dir(outside.path())
        .expect("read outside")
        .collect();
    assert!(left.is_empty(), "the host directory was written: {left:?}");
}

#[test]
fn cp_sees_volumes_as_the_container_does_both_ways() {
    let c = Ctr::new();
    let host = tempfile::tempdir().expect("host dir");
    let bound = tempfile::tempdir().expect("bound dir");
    c.run(&[
        "run",
        "-d",
        "--name",
        "vols",
        "--network",
        "none",
        "-v",
        "cpv:/data",
        "-v",
        &format!("{}:/bound", bound.path().display()),
        "-v",
        "cpro:/ro:ro",
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "echo from-inside > /data/made; sleep 300",
    ])
    .assert_ok();
    // In: the running container sees the file in its volume.
    let src = host.path().join("in.txt");
    std::fs::write(&src, "from-host\n").expect("write");
    c.run(&["cp", &src.to_string_lossy(), "vols:/data/in.txt"])
        .assert_ok();
    let o = c.run(&["exec", "vols", "cat", "/data/in.txt"]);
    assert_eq!(o.stdout, "from-host\n", "{o:?}");
    // Out: what the container wrote in its volume.
    let out = host.path().join("made");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c
        .run(&["exec", "vols", "cat", "/data/made"])
        .stdout
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never wrote"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.run(&["cp", "vols:/data/made", &out.to_string_lossy()])
        .assert_ok();
    assert_eq!(
        std::fs::read_to_string(&out).expect("copied"),
        "from-inside\n"
    );
    // A bind mount's source is the place; a read-only volume and a tmpfs are refused.
    c.run(&["cp", &src.to_string_lossy(), "vols:/bound/"])
        .assert_ok();
    assert!(bound.path().join("in.txt").exists());
    let o = c.run(&["cp", &src.to_string_lossy(), "vols:/ro/x"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(o.stderr.contains("read-only"), "{o:?}");
    let o = c.run(&["cp", &src.to_string_lossy(), "vols:/scratch/x"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(o.stderr.contains("tmpfs"), "{o:?}");
    // Stopped, the volume is still there to copy from.
    c.run(&["stop", "-t", "1", "vols"]).assert_ok();
    let again = host.path().join("again");
    c.run(&["cp", "vols:/data/in.txt", &again.to_string_lossy()])
        .assert_ok();
    assert_eq!(
        std::fs::read_to_string(&again).expect("copied"),
        "from-host\n"
    );
    c.run(&["rm", "vols"]).assert_ok();
}

#[test]
fn programs_that_cannot_run_exit_126_or_127_in_run_and_exec() {
    let c = Ctr::new();
    for (prog, code) in [
        ("no-such-prog", 127),
        ("/etc/passwd", 126),
        ("/no/such/path", 127),
    ] {
        let o = c.run(&["run", "--rm", "--network", "none", "busybox", prog]);
        assert_eq!(o.status.code(), Some(code), "run {prog}: {o:?}");
        let o = c.run(&["run", "-d", "--network", "none", "busybox", prog]);
        assert_eq!(o.status.code(), Some(code), "run -d {prog}: {o:?}");
    }
    c.run(&[
        "run",
        "-d",
        "--name",
        "up",
        "--network",
        "none",
        "busybox",
        "sleep",
        "60",
    ])
    .assert_ok();
    for (prog, code) in [("no-such-prog", 127), ("/etc/passwd", 126)] {
        let o = c.run(&["exec", "up", prog]);
        assert_eq!(o.status.code(), Some(code), "exec {prog}: {o:?}");
    }
    // The program's own codes pass through; an engine error is 125.
    assert_eq!(
        c.run(&["exec", "up", "sh", "-c", "exit 126"]).status.code(),
        Some(126)
    );
    assert_eq!(c.run(&["exec", "nosuch", "true"]).status.code(), Some(125));
    c.run(&["rm", "-f", "up"]).assert_ok();
}

#[test]
fn stop_signal_replaces_the_containers_stop_signal() {
    let c = Ctr::new();
    let script = "trap 'exit 5' USR1; trap 'exit 6' TERM; sleep 1000 & wait";
    for (flags, want) in [
        (&[][..], 6),
        (&["-s", "USR1"][..], 5),
        (&["--signal", "10"][..], 5),
    ] {
        c.run(&[
            "run",
            "-d",
            "--name",
            "sig",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            script,
        ])
        .assert_ok();
        let mut args = vec!["stop", "-t", "20"];
        args.extend_from_slice(flags);
        args.push("sig");
        c.run(&args).assert_ok();
        assert_eq!(c.inspect("sig")["exit_code"], want, "{flags:?}");
        c.run(&["rm", "sig"]).assert_ok();
    }
    let o = c.run(&["stop", "-s", "NOSUCH", "sig"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
}
