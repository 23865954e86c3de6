//! create / start / state / kill / delete / run / list / ps: the OCI lifecycle as runc
//! implements it (all pass with `CODEX_OCI=/usr/sbin/runc`).

use codex_tests::*;
use std::fs;

/// A script that prints `ready` and then waits forever, exiting 43 on SIGTERM and 44 on
/// SIGUSR1 (pid 1 of a PID namespace only sees signals it has handlers for).
const TRAPPER: &str = "trap 'echo got-term; exit 43' TERM; trap 'echo got-usr1; exit 44' USR1; \
                       echo ready; while true; do sleep 0.05; done";

#[test]
fn run_exits_with_the_programs_exit_code() {
    let ctx = TestCtx::new("run-exit");
    let mut b = ctx.bundle();
    for code in [0, 3, 255] {
        b.sh(&format!("echo out-{code}; exit {code}"));
        let id = ctx.id("exit");
        let o = ctx.run(&b, &id, &[]);
        o.assert_code(code);
        assert_eq!(o.stdout.trim(), format!("out-{code}"), "{o:?}");
    }
}

#[test]
fn run_passes_the_programs_stdout_and_stderr_through() {
    let ctx = TestCtx::new("run-stdio");
    let mut b = ctx.bundle();
    b.sh("echo to-stdout; echo to-stderr >&2");
    let id = ctx.id("stdio");
    let o = ctx.run(&b, &id, &[]);
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "to-stdout");
    assert!(o.stderr.contains("to-stderr"), "{o:?}");
}

#[test]
fn run_exits_128_plus_n_when_the_container_is_killed_by_signal_n() {
    let ctx = TestCtx::new("run-sigkill");
    let mut b = ctx.bundle();
    b.sh("echo ready; exec sleep 1000");
    let id = ctx.id("killed");
    let mut bg = ctx.spawn_run(&b, &id, &[]);
    bg.wait_for_stdout("ready");
    ctx.rt.run(&["kill", &id, "KILL"]).assert_ok();
    bg.wait(WAIT).assert_code(137);
}

#[test]
fn run_exits_139_when_the_program_dies_of_sigsegv() {
    // Without a PID namespace the shell may signal itself (init of a PID namespace could not).
    let ctx = TestCtx::new("run-segv");
    let mut b = ctx.bundle();
    b.remove_namespace("pid");
    b.sh("kill -SEGV $$");
    let id = ctx.id("segv");
    ctx.run(&b, &id, &[]).assert_code(139);
}

#[test]
fn run_forwards_signals_it_receives_to_the_container() {
    let ctx = TestCtx::new("run-forward");
    let mut b = ctx.bundle();
    b.sh(TRAPPER);
    let id = ctx.id("fwd");
    let mut bg = ctx.spawn_run(&b, &id, &[]);
    bg.wait_for_stdout("ready");
    bg.signal(libc::SIGTERM);
    let o = bg.wait(WAIT);
    o.assert_code(43);
    assert!(o.stdout.contains("got-term"), "{o:?}");
}

#[test]
fn run_without_bundle_uses_the_current_directory() {
    let ctx = TestCtx::new("run-cwd-bundle");
    let mut b = ctx.bundle();
    b.sh("echo from-cwd-bundle");
    b.save();
    let id = ctx.id("cwd");
    let mut cmd = ctx.rt.command(&["run", &id]);
    cmd.current_dir(&b.dir);
    let o = ctx.rt.run_cmd(cmd);
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "from-cwd-bundle");
}

#[test]
fn create_start_kill_delete_walks_through_created_running_stopped() {
    let ctx = TestCtx::new("lifecycle");
    let mut b = ctx.bundle();
    b.sh("echo started; exec sleep 1000");
    b.annotation("org.codex.test", "annotated");
    let id = ctx.id("life");

    ctx.create(&b, &id, &[]).assert_ok();
    let st = ctx.rt.state_ok(&id);
    assert_eq!(st["id"], id.as_str(), "{st}");
    assert_eq!(st["status"], "created", "{st}");
    assert!(
        st["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "ociVersion: {st}"
    );
    let bundle = fs::canonicalize(&b.dir).unwrap();
    assert_eq!(
        st["bundle"].as_str().map(|p| fs::canonicalize(p).ok()),
        Some(Some(bundle)),
        "bundle must be the absolute bundle path: {st}"
    );
    assert_eq!(st["annotations"]["org.codex.test"], "annotated", "{st}");
    let pid = st["pid"].as_i64().expect("created state has a pid");
    assert!(pid_alive(pid), "init {pid} must be alive after create");
    assert!(ctx.rt.root_has_entry(&id), "state root must hold {id}");

    ctx.rt.run(&["start", &id]).assert_ok();
    ctx.wait_for_stdout(&id, "started");
    let st = ctx.rt.state_ok(&id);
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(
        st["pid"].as_i64(),
        Some(pid),
        "pid must not change on start: {st}"
    );

    ctx.rt.run(&["kill", &id, "KILL"]).assert_ok();
    ctx.rt.wait_status(&id, "stopped");
    assert!(
        wait_until(WAIT, || !pid_alive(pid)),
        "init {pid} still alive"
    );

    ctx.rt.run(&["delete", &id]).assert_ok();
    assert!(ctx.rt.state(&id).is_err(), "state must fail after delete");
    assert!(!ctx.rt.root_has_entry(&id), "state root still holds {id}");
}

#[test]
fn created_container_has_not_started_the_program() {
    let ctx = TestCtx::new("created-waits");
    let mut b = ctx.bundle();
    b.args(&["sh", "-c", "echo started; exec sleep 1000", "marker-arg"]);
    let id = ctx.id("waits");
    ctx.create(&b, &id, &[]).assert_ok();
    let pid = ctx.rt.pid(&id);
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("marker-arg"),
        "the user's program is already running before start: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    assert_eq!(
        ctx.stdout_of(&id),
        "",
        "nothing may be printed before start"
    );
    ctx.rt.run(&["start", &id]).assert_ok();
    ctx.wait_for_stdout(&id, "started");
    // "started" is printed by the shell before its `exec sleep`: poll for the exec.
    let mut cmdline = String::new();
    let exec_done = wait_until(WAIT, || {
        cmdline = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .unwrap_or_default();
        cmdline == "sleep\u{0}1000\u{0}"
    });
    assert!(
        exec_done,
        "after start the init (pid {pid}) must become the user's program; cmdline: {cmdline:?}"
    );
}

#[test]
fn container_that_exits_by_itself_is_stopped_and_can_be_deleted() {
    let ctx = TestCtx::new("self-exit");
    let mut b = ctx.bundle();
    b.sh("exit 0");
    let id = ctx.id("selfexit");
    ctx.create_and_start(&b, &id);
    ctx.rt.wait_status(&id, "stopped");
    ctx.rt.run(&["delete", &id]).assert_ok();
    assert!(!ctx.rt.root_has_entry(&id));
}

#[test]
fn start_twice_is_an_error() {
    let ctx = TestCtx::new("start-twice");
    let mut b = ctx.bundle();
    b.sh("echo started; exec sleep 1000");
    let id = ctx.id("twice");
    ctx.create_and_start(&b, &id);
    ctx.wait_for_stdout(&id, "started");
    ctx.rt.run(&["start", &id]).assert_refused_naming("running");
    assert_eq!(ctx.rt.status(&id).as_deref(), Some("running"));
    assert_eq!(
        ctx.stdout_of(&id).matches("started").count(),
        1,
        "the program must not run twice"
    );
}

#[test]
fn start_of_a_stopped_container_is_an_error() {
    let ctx = TestCtx::new("start-stopped");
    let mut b = ctx.bundle();
    b.sh("true");
    let id = ctx.id("stopped");
    ctx.create_and_start(&b, &id);
    ctx.rt.wait_status(&id, "stopped");
    ctx.rt.run(&["start", &id]).assert_refused_naming("stopped");
}

#[test]
fn start_of_an_unknown_container_is_an_error() {
    let ctx = TestCtx::new("start-unknown");
    let id = ctx.id("nope");
    ctx.rt
        .run(&["start", &id])
        .assert_refused_naming("does not exist");
}

#[test]
fn state_of_an_unknown_container_is_an_error() {
    let ctx = TestCtx::new("state-unknown");
    let id = ctx.id("nope");
    ctx.rt
        .run(&["state", &id])
        .assert_refused_naming("does not exist");
}

#[test]
fn delete_of_a_running_container_without_force_fails_and_leaves_it_running() {
    let ctx = TestCtx::new("delete-running");
    let mut b = ctx.bundle();
    b.sh("exec sleep 1000");
    let id = ctx.id("running");
    ctx.create_and_start(&b, &id);
    let pid = ctx.rt.pid(&id);
    ctx.rt
        .run(&["delete", &id])
        .assert_refused_naming("running");
    assert_eq!(ctx.rt.status(&id).as_deref(), Some("running"));
    assert!(pid_alive(pid));
}

#[test]
fn delete_force_kills_and_removes_a_running_container() {
    let ctx = TestCtx::new("delete-force");
    let mut b = ctx.bundle();
    b.sh("exec sleep 1000");
    let id = ctx.id("force");
    ctx.create_and_start(&b, &id);
    let pid = ctx.rt.pid(&id);
    ctx.rt.run(&["delete", "--force", &id]).assert_ok();
    assert!(
        wait_until(WAIT, || !pid_alive(pid)),
        "init {pid} survived delete --force"
    );
    assert!(ctx.rt.state(&id).is_err());
    assert!(!ctx.rt.root_has_entry(&id));
}

#[test]
fn delete_force_removes_a_created_container() {
    let ctx = TestCtx::new("delete-created");
    let mut b = ctx.bundle();
    b.sh("exec sleep 1000");
    let id = ctx.id("created");
    ctx.create(&b, &id, &[]).assert_ok();
    let pid = ctx.rt.pid(&id);
    ctx.rt.run(&["delete", "--force", &id]).assert_ok();
    assert!(
        wait_until(WAIT, || !pid_alive(pid)),
        "init {pid} survived delete --force"
    );
    assert!(ctx.rt.state(&id).is_err());
    assert!(!ctx.rt.root_has_entry(&id));
}

#[test]
fn delete_of_an_unknown_container_is_an_error() {
    let ctx = TestCtx::new("delete-unknown");
    let id = ctx.id("nope");
    ctx.rt
        .run(&["delete", &id])
        .assert_refused_naming("does not exist");
}

/// Starts a TRAPPER container with a foreground `run`, sends `kill ID args...`, returns the
/// run's exit code and output.
fn kill_with(ctx: &TestCtx, kill_args: &[&str]) -> Out {
    let mut b = ctx.bundle();
    b.sh(TRAPPER);
    let id = ctx.id("kill");
    let mut bg = ctx.spawn_run(&b, &id, &[]);
    bg.wait_for_stdout("ready");
    let mut args = vec!["kill", id.as_str()];
    args.extend_from_slice(kill_args);
    ctx.rt.run(&args).assert_ok();
    bg.wait(WAIT)
}

#[test]
fn kill_without_a_signal_sends_sigterm() {
    let ctx = TestCtx::new("kill-default");
    let o = kill_with(&ctx, &[]);
    o.assert_code(43);
    assert!(o.stdout.contains("got-term"), "{o:?}");
}

#[test]
fn kill_accepts_signal_names_with_and_without_sig_and_numbers() {
    let ctx = TestCtx::new("kill-names");
    for (sig, code, msg) in [
        ("TERM", 43, "got-term"),
        ("SIGTERM", 43, "got-term"),
        ("15", 43, "got-term"),
        ("USR1", 44, "got-usr1"),
        ("SIGUSR1", 44, "got-usr1"),
        ("10", 44, "got-usr1"),
    ] {
        let o = kill_with(&ctx, &[sig]);
        assert_eq!(o.code(), Some(code), "kill {sig}: {o:?}");
        assert!(o.stdout.contains(msg), "kill {sig}: {o:?}");
    }
    let o = kill_with(&ctx, &["KILL"]);
    o.assert_code(137);
}

#[test]
fn kill_with_an_unknown_signal_fails_and_leaves_the_container_running() {
    let ctx = TestCtx::new("kill-bad");
    let mut b = ctx.bundle();
    b.sh("exec sleep 1000");
    let id = ctx.id("badsig");
    ctx.create_and_start(&b, &id);
    ctx.rt.run(&["kill", &id, "NOSUCHSIG"]).assert_fails();
    assert_eq!(ctx.rt.status(&id).as_deref(), Some("running"));
}

#[test]
fn kill_of_a_stopped_container_fails() {
    let ctx = TestCtx::new("kill-stopped");
    let mut b = ctx.bundle();
    b.sh("true");
    let id = ctx.id("stopped");
    ctx.create_and_start(&b, &id);
    ctx.rt.wait_status(&id, "stopped");
    ctx.rt.run(&["kill", &id, "KILL"]).assert_fails();
}

#[test]
fn kill_all_signals_every_process_of_a_container_sharing_the_host_pid_namespace() {
    let ctx = TestCtx::new("kill-all");
    let mut b = ctx.bundle();
    b.remove_namespace("pid");
    b.sh("sleep 1000 & sleep 1000 & echo ready; wait");
    let id = ctx.id("all");
    ctx.create_and_start(&b, &id);
    ctx.wait_for_stdout(&id, "ready");
    let mut pids = Vec::new();
    assert!(
        wait_until(WAIT, || {
            let o = ctx.rt.run(&["ps", "--format", "json", &id]);
            pids = serde_json::from_str::<Vec<i64>>(o.stdout.trim()).unwrap_or_default();
            pids.len() >= 3
        }),
        "ps must show the shell and both sleeps: {pids:?}"
    );
    ctx.rt.run(&["kill", "--all", &id, "KILL"]).assert_ok();
    for &p in &pids {
        assert!(
            wait_until(WAIT, || !pid_alive(p)),
            "pid {p} survived kill --all"
        );
    }
    ctx.rt.wait_status(&id, "stopped");
}

#[test]
fn ps_format_json_lists_every_process_in_the_container() {
    let ctx = TestCtx::new("ps-json");
    let mut b = ctx.bundle();
    b.sh("sleep 1000 & echo ready; wait");
    let id = ctx.id("ps");
    ctx.create_and_start(&b, &id);
    ctx.wait_for_stdout(&id, "ready");
    let init = ctx.rt.pid(&id);
    let mut pids = Vec::new();
    assert!(
        wait_until(WAIT, || {
            let o = ctx.rt.run(&["ps", "--format", "json", &id]);
            o.assert_ok();
            pids = serde_json::from_str::<Vec<i64>>(o.stdout.trim()).unwrap_or_else(|e| {
                panic!("ps --format json is not an array of pids ({e}): {o:?}")
            });
            pids.len() >= 2
        }),
        "ps must list init and the sleep: {pids:?}"
    );
    assert!(pids.contains(&init), "ps {pids:?} lacks init {init}");
    let init_cg = fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    for p in &pids {
        let cg = fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap_or_default();
        assert_eq!(cg, init_cg, "pid {p} is not in the container's cgroup");
    }
    // the table form names the init pid too
    let table = ctx.rt.run(&["ps", &id]);
    table.assert_ok();
    assert!(
        table
            .stdout
            .split_whitespace()
            .any(|w| w == init.to_string()),
        "{table:?}"
    );
}

#[test]
fn list_shows_each_container_with_its_status_in_table_and_json() {
    let ctx = TestCtx::new("list");
    let mut b = ctx.bundle();
    b.sh("exec sleep 1000");
    let created = ctx.id("created");
    let running = ctx.id("running");
    ctx.create(&b, &created, &[]).assert_ok();
    ctx.create_and_start(&b, &running);

    let t = ctx.rt.run(&["list"]);
    t.assert_ok();
    let lines = t.lines();
    assert!(
        lines
            .first()
            .is_some_and(|h| h.contains("ID") && h.contains("STATUS")),
        "table needs a header: {t:?}"
    );
    let row = |id: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no row for {id}: {t:?}"))
            .to_string()
    };
    assert!(row(&created).split_whitespace().any(|w| w == "created"));
    assert!(row(&running).split_whitespace().any(|w| w == "running"));

    let j = ctx.rt.run(&["list", "--format", "json"]);
    j.assert_ok();
    let v = j.json();
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("list json must be an array: {v}"));
    for (id, status) in [(&created, "created"), (&running, "running")] {
        let e = arr
            .iter()
            .find(|e| e["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} missing from {v}"));
        assert_eq!(e["status"], status, "{e}");
        assert!(e["pid"].as_i64().is_some_and(|p| p > 0), "{e}");
        assert!(
            e["bundle"].as_str().is_some_and(|p| p.starts_with('/')),
            "{e}"
        );
    }
}

#[test]
fn pid_file_holds_the_init_pid_for_create_and_detached_run() {
    let ctx = TestCtx::new("pid-file");
    let mut b = ctx.bundle();
    b.sh("exec sleep 1000");
    let id = ctx.id("create");
    let pf = ctx.path("create.pid");
    ctx.create(&b, &id, &["--pid-file", pf.to_str().unwrap()])
        .assert_ok();
    let pid: i64 = fs::read_to_string(&pf).unwrap().trim().parse().unwrap();
    assert_eq!(pid, ctx.rt.pid(&id));

    let id2 = ctx.id("run-d");
    let pf2 = ctx.path("run.pid");
    ctx.run(&b, &id2, &["-d", "--pid-file", pf2.to_str().unwrap()])
        .assert_ok();
    let pid2: i64 = fs::read_to_string(&pf2).unwrap().trim().parse().unwrap();
    assert_eq!(pid2, ctx.rt.pid(&id2));
    assert!(pid_alive(pid2));
}

#[test]
fn run_detached_returns_while_the_container_keeps_running() {
    let ctx = TestCtx::new("run-detached");
    let mut b = ctx.bundle();
    b.sh("echo detached-started; exec sleep 1000");
    let id = ctx.id("detached");
    ctx.run(&b, &id, &["-d"]).assert_ok();
    assert_eq!(ctx.rt.status(&id).as_deref(), Some("running"));
    ctx.wait_for_stdout(&id, "detached-started");
    ctx.rt.run(&["kill", &id, "KILL"]).assert_ok();
    ctx.rt.wait_status(&id, "stopped");
    ctx.rt.run(&["delete", &id]).assert_ok();
}

#[test]
fn foreground_run_removes_the_container_when_it_exits() {
    let ctx = TestCtx::new("run-cleans");
    let mut b = ctx.bundle();
    b.sh("true");
    let id = ctx.id("gone");
    ctx.run(&b, &id, &[]).assert_ok();
    assert!(ctx.rt.state(&id).is_err(), "run must delete the container");
    assert!(!ctx.rt.root_has_entry(&id));
}

#[test]
fn many_containers_run_side_by_side_in_one_root() {
    let ctx = TestCtx::new("many");
    let mut b = ctx.bundle();
    b.sh("exec sleep 1000");
    let ids: Vec<String> = (0..4).map(|i| ctx.id(&format!("m{i}"))).collect();
    for id in &ids {
        ctx.create_and_start(&b, id);
    }
    let v = ctx.rt.run(&["list", "--format", "json"]).json();
    for id in &ids {
        assert!(
            v.as_array()
                .unwrap()
                .iter()
                .any(|e| e["id"] == id.as_str() && e["status"] == "running"),
            "{id} not running in {v}"
        );
    }
    for id in &ids {
        ctx.rt.run(&["delete", "--force", id]).assert_ok();
    }
    assert!(
        ids.iter().all(|id| !ctx.rt.root_has_entry(id)),
        "{:?}",
        ctx.rt.root_entries()
    );
}

#[test]
fn codex_killed_create_leaves_a_stopped_container_that_delete_cleans() {
    let ctx = TestCtx::new("killed-create");
    let mut b = ctx.bundle();
    let marker = ctx.path("hook-started");
    // The createRuntime hook keeps `create` busy long enough to kill it mid-way.
    b.add_hook(
        "createRuntime",
        "/bin/sh",
        &[
            "sh",
            "-c",
            &format!("echo $$ > {}; exec sleep 30", marker.display()),
        ],
        &[],
        None,
    );
    let id = ctx.id("killed");
    b.save();
    let bundle = b.dir.to_string_lossy().into_owned();
    let mut create = ctx.rt.command(&["create", "--bundle", &bundle, &id]);
    create
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = create.spawn().unwrap();
    assert!(
        wait_until(WAIT, || !read_lossy(&marker).trim().is_empty()),
        "the hook never ran"
    );
    assert_eq!(ctx.rt.status(&id).as_deref(), Some("creating"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_until(WAIT, || ctx.rt.status(&id).as_deref() == Some("stopped")),
        "a killed create should read as stopped, not {:?}",
        ctx.rt.status(&id)
    );
    // The hook outlives the killed runtime (hooks are not in the container): end it.
    if let Ok(pid) = read_lossy(&marker).trim().parse::<i32>() {
        // SAFETY: kill with integer arguments; the pid is the hook this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(
        !cgroup_dirs_containing(&id).is_empty(),
        "the cgroup should still be there to clean"
    );
    ctx.rt.run(&["delete", &id]).assert_ok();
    assert!(!ctx.rt.root_has_entry(&id));
    assert!(
        cgroup_dirs_containing(&id).is_empty(),
        "{:?}",
        cgroup_dirs_containing(&id)
    );
}
