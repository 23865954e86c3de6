//! `exec`: a new process joins a running container (namespaces, cgroup, security settings).

use codex_tests::*;
use serde_json::json;
use std::fs;

const NS: &[&str] = &["mnt", "net", "uts", "ipc", "pid", "cgroup"];

/// A running container whose init waits forever; returns its id.
fn running(ctx: &TestCtx, b: &mut Bundle) -> String {
    b.sh("echo ready; exec sleep 1000");
    let id = ctx.id("exec");
    ctx.create_and_start(b, &id);
    ctx.wait_for_stdout(&id, "ready");
    id
}

fn ns_link(pid: i64, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{ns}: {e}"))
        .to_string_lossy()
        .into_owned()
}

#[test]
fn exec_joins_every_namespace_of_the_container() {
    let ctx = TestCtx::new("exec-ns");
    let mut b = ctx.bundle();
    b.hostname("exec-host");
    let id = running(&ctx, &mut b);
    let init = ctx.rt.pid(&id);

    // seen from inside: same hostname, and PID 1 is the container's init
    let o = ctx.exec(
        &id,
        &[],
        &["sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '"],
    );
    o.assert_ok();
    let lines = o.lines();
    assert_eq!(lines.first().copied(), Some("exec-host"), "{o:?}");
    assert_eq!(lines.get(1).map(|l| l.trim()), Some("sleep 1000"), "{o:?}");

    // seen from the host: the exec'd process has the init's namespaces
    let pf = ctx.path("exec.pid");
    ctx.exec(
        &id,
        &["-d", "--pid-file", pf.to_str().unwrap()],
        &["sleep", "1000"],
    )
    .assert_ok();
    let pid: i64 = fs::read_to_string(&pf).unwrap().trim().parse().unwrap();
    assert!(pid_alive(pid));
    for ns in NS {
        assert_eq!(
            ns_link(pid, ns),
            ns_link(init, ns),
            "{ns} namespace differs"
        );
    }
}

#[test]
fn exec_returns_the_exit_status_of_the_process() {
    let ctx = TestCtx::new("exec-status");
    let mut b = ctx.bundle();
    let id = running(&ctx, &mut b);
    ctx.exec(&id, &[], &["sh", "-c", "exit 7"]).assert_code(7);
    ctx.exec(&id, &[], &["true"]).assert_code(0);
}

#[test]
fn exec_passes_stdout_and_stderr_through() {
    let ctx = TestCtx::new("exec-stdio");
    let mut b = ctx.bundle();
    let id = running(&ctx, &mut b);
    let o = ctx.exec(&id, &[], &["sh", "-c", "echo exec-out; echo exec-err >&2"]);
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "exec-out");
    assert!(o.stderr.contains("exec-err"), "{o:?}");
}

#[test]
fn exec_applies_env_cwd_and_user_options() {
    let ctx = TestCtx::new("exec-opts");
    let mut b = ctx.bundle();
    let id = running(&ctx, &mut b);
    let o = ctx.exec(
        &id,
        &[
            "-e",
            "CODEX_X=from-exec",
            "--cwd",
            "/tmp",
            "--user",
            "1000:1001",
        ],
        &["sh", "-c", "echo $CODEX_X; pwd; id -u; id -g"],
    );
    o.assert_ok();
    assert_eq!(
        o.lines(),
        vec!["from-exec", "/tmp", "1000", "1001"],
        "{o:?}"
    );
}

#[test]
fn exec_process_file_gives_args_env_cwd_and_user() {
    let ctx = TestCtx::new("exec-process");
    let mut b = ctx.bundle();
    let id = running(&ctx, &mut b);
    let p = ctx.path("process.json");
    let proc_json = json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1002},
        "args": ["sh", "-c", "echo $CODEX_P; pwd; id -u; id -g; exit 5"],
        "env": ["PATH=/bin:/usr/bin", "CODEX_P=from-process-file"],
        "cwd": "/home",
    });
    fs::write(&p, serde_json::to_vec(&proc_json).unwrap()).unwrap();
    let o = ctx.exec(&id, &["--process", p.to_str().unwrap()], &[]);
    o.assert_code(5);
    assert_eq!(
        o.lines(),
        vec!["from-process-file", "/home", "1000", "1002"],
        "{o:?}"
    );
}

#[test]
fn exec_process_runs_in_the_containers_cgroup() {
    let ctx = TestCtx::new("exec-cgroup");
    let mut b = ctx.bundle();
    let id = running(&ctx, &mut b);
    let init = ctx.rt.pid(&id);
    let pf = ctx.path("exec.pid");
    ctx.exec(
        &id,
        &["-d", "--pid-file", pf.to_str().unwrap()],
        &["sleep", "1000"],
    )
    .assert_ok();
    let pid: i64 = fs::read_to_string(&pf).unwrap().trim().parse().unwrap();
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
        fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap()
    );
    let o = ctx.rt.run(&["ps", "--format", "json", &id]);
    let pids: Vec<i64> = serde_json::from_str(o.stdout.trim()).unwrap();
    assert!(pids.contains(&pid), "ps {pids:?} lacks the exec'd {pid}");
}

#[test]
fn exec_process_has_the_containers_capabilities_no_new_privs_and_rlimits() {
    let ctx = TestCtx::new("exec-security");
    let mut b = ctx.bundle();
    b.caps("bounding", &["CAP_KILL", "CAP_CHOWN"])
        .caps("effective", &["CAP_KILL", "CAP_CHOWN"])
        .caps("permitted", &["CAP_KILL", "CAP_CHOWN"])
        .no_new_privileges(true)
        .rlimits(&[("RLIMIT_CORE", 4096, 8192)]);
    let id = running(&ctx, &mut b);
    let init = ctx.rt.pid(&id);
    let init_status = fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let o = ctx.exec(
        &id,
        &[],
        &["sh", "-c", "cat /proc/self/status; echo core=$(ulimit -c)"],
    );
    o.assert_ok();
    for f in ["CapBnd", "CapEff", "CapPrm", "NoNewPrivs"] {
        assert_eq!(
            status_field(&o.stdout, f),
            status_field(&init_status, f),
            "{f} differs between exec and init"
        );
    }
    assert_eq!(
        parse_mask(status_field(&o.stdout, "CapBnd").unwrap()),
        cap_mask(&["CAP_KILL", "CAP_CHOWN"])
    );
    assert_eq!(status_field(&o.stdout, "NoNewPrivs"), Some("1"));
    // busybox sh's ulimit -c counts 512-byte blocks: the soft limit, 4096 bytes.
    assert!(o.stdout.lines().any(|l| l == "core=8"), "{o:?}");
}

/// Apart from the other limits: runc 1.1.5 (Debian 12), built with Go 1.19, sets an exec's
/// limits on its Go child while that child's runtime raises its own NOFILE soft limit to
/// the hard one, so the soft limit comes out wrong in most runs (runc issue 4195, fixed in
/// 1.1.13). `.ci/run` skips this test in its run against runc for that reason only.
#[test]
fn exec_process_has_the_containers_nofile_limit() {
    let ctx = TestCtx::new("exec-nofile");
    let mut b = ctx.bundle();
    b.rlimits(&[("RLIMIT_NOFILE", 321, 654)]);
    let id = running(&ctx, &mut b);
    let o = ctx.exec(
        &id,
        &[],
        &["sh", "-c", "echo nofile=$(ulimit -n) hard=$(ulimit -Hn)"],
    );
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "nofile=321 hard=654", "{o:?}");
}

#[test]
fn exec_into_a_stopped_container_fails() {
    let ctx = TestCtx::new("exec-stopped");
    let mut b = ctx.bundle();
    b.sh("true");
    let id = ctx.id("stopped");
    ctx.create_and_start(&b, &id);
    ctx.rt.wait_status(&id, "stopped");
    ctx.exec(&id, &[], &["true"])
        .assert_refused_naming("stopped");
}

#[test]
fn exec_into_an_unknown_container_fails() {
    let ctx = TestCtx::new("exec-unknown");
    let id = ctx.id("nope");
    ctx.exec(&id, &[], &["true"])
        .assert_refused_naming("does not exist");
}
