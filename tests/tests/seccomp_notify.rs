//! Seccomp user notification (`SCMP_ACT_NOTIFY`, `linux.seccomp.listenerPath`): the runtime
//! sends the spec's container process state and the filter's notify fd to a seccomp agent,
//! which then answers the container's notified syscalls.
//!
//! The agent (`codex_tests::seccomp_agent`) is a thread of the test: it listens on a unix
//! socket in the test's temp dir, takes each connection's state JSON and fd (SCM_RIGHTS)
//! and answers notifications with libseccomp's notify API: `getppid` returns 4242 and
//! `mkdir`/`mkdirat` return success without making anything. Neither outcome can come
//! from the kernel, so a container that
//! prints `ppid=4242` and finds no directory after a successful `mkdir` was answered by the
//! agent. Every wait is bounded: a runtime that never connects, or a container that never
//! ends, fails the test instead of hanging it.
//!
//! busybox (Debian's static build) uses the legacy `mkdir` syscall on x86_64; the rules
//! name `mkdirat` too. busybox `sh` sets `$PPID` from `getppid()` when it starts.
//! Tests named `codex_*` check codex's own refusals (fields named in the message).

use std::collections::HashMap;
use std::path::Path;

use codex_tests::seccomp_agent::{Agent, FAKE_PPID};
use codex_tests::*;
use serde_json::{json, Value};

/// The native architecture and its compat ones, as in the profiles docker and podman ship.
fn architectures() -> Value {
    match std::env::consts::ARCH {
        "x86_64" => json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
        "aarch64" => json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
        _ => json!([]),
    }
}

/// Allows everything; `getppid`, `mkdir` and `mkdirat` notify when `notify` is set.
fn profile(listener: Option<&Path>, notify: bool) -> Value {
    let mut p = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": [],
    });
    if notify {
        p["syscalls"] = json!([
            {"names": ["getppid", "mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}
        ]);
    }
    if let Some(l) = listener {
        p["listenerPath"] = json!(l.to_string_lossy());
        p["listenerMetadata"] = json!("agent-meta=1");
    }
    p
}

/// A writable /tmp (the fixture's root is read-only), `seccomp`, and a script whose
/// output shows what `getppid` and `mkdir` returned and whether the directory exists.
fn notify_bundle(ctx: &TestCtx, seccomp: Value) -> Bundle {
    let mut b = ctx.bundle();
    b.add_mount("/tmp", "tmpfs", "tmpfs", &["mode=1777"]);
    b.set("/linux/seccomp", seccomp);
    b.sh(PROBE);
    b
}

const PROBE: &str = "echo ppid=$PPID; mkdir /tmp/made; echo mkdir-rc=$?; \
     if [ -d /tmp/made ]; then echo made-exists; else echo made-missing; fi";

/// Fails the test unless this kernel and libseccomp can notify (5.5+, 2.5+): a skip, visible.
fn notify_supported() -> bool {
    if libseccomp::get_api() < 6 {
        skip("seccomp user notification needs kernel 5.5+ and libseccomp 2.5+ (API level 6)");
        return false;
    }
    true
}

#[test]
fn without_notify_rules_the_probe_sees_the_kernel() {
    // The positive control for the tests below: the same program, the same profile minus
    // the notify rule, gives the kernel's answers (no parent in the new PID namespace, the
    // directory made).
    let ctx = TestCtx::new("notify-control");
    let mut b = notify_bundle(&ctx, profile(None, false));
    let o = ctx.run_sh(&mut b, PROBE);
    let out = &o.stdout;
    assert!(out.contains("ppid=0"), "{o:?}");
    assert!(out.contains("mkdir-rc=0"), "{o:?}");
    assert!(out.contains("made-exists"), "{o:?}");
}

#[test]
fn the_agent_gets_the_state_and_fd_at_create_and_answers_the_container() {
    if !notify_supported() {
        return;
    }
    let ctx = TestCtx::new("notify-create");
    let sock = ctx.path("agent.sock");
    let mut agent = Agent::start(&sock);
    let b = notify_bundle(&ctx, profile(Some(&sock), true));
    let id = ctx.id("agent");
    ctx.create(&b, &id, &[]).assert_ok();
    let pid = ctx.rt.pid(&id);
    ctx.rt.run(&["start", &id]).assert_ok();
    let out = ctx.wait_for_stdout(&id, "made-");
    ctx.rt.wait_status(&id, "stopped");
    let report = agent.finish();
    assert!(report.errors.is_empty(), "agent errors: {report:#?}");

    assert!(
        out.contains(&format!("ppid={FAKE_PPID}")),
        "getppid not answered: {out:?} {report:#?}"
    );
    assert!(
        out.contains("mkdir-rc=0"),
        "mkdir not answered with success: {out:?}"
    );
    assert!(
        out.contains("made-missing"),
        "mkdir was executed, not answered: {out:?}"
    );

    assert_eq!(
        report.connections.len(),
        1,
        "one container, one state: {report:#?}"
    );
    let got = &report.connections[0];
    assert!(got.had_fd, "no fd came with the state: {report:#?}");
    let st = &got.state;
    assert!(st["ociVersion"].is_string(), "{st}");
    assert_eq!(st["fds"], json!(["seccompFd"]), "{st}");
    assert_eq!(
        st["pid"].as_i64(),
        Some(pid),
        "pid is the init's, as `state` says: {st}"
    );
    assert_eq!(st["metadata"], json!("agent-meta=1"), "{st}");
    assert_eq!(st["state"]["id"], json!(id), "{st}");
    assert_eq!(st["state"]["pid"].as_i64(), Some(pid), "{st}");
    assert_eq!(st["state"]["status"], json!("creating"), "{st}");
    assert_eq!(
        Path::new(st["state"]["bundle"].as_str().unwrap_or_default()),
        b.dir.as_path(),
        "{st}"
    );
    // The program's own calls were notified, from the container's process.
    let by_name: HashMap<&str, Vec<u32>> =
        report
            .answered
            .iter()
            .fold(HashMap::new(), |mut m, (p, n)| {
                m.entry(n.as_str()).or_default().push(*p);
                m
            });
    assert!(
        by_name
            .get("getppid")
            .is_some_and(|p| p.contains(&(pid as u32))),
        "no getppid from pid {pid}: {report:#?}"
    );
    assert!(
        by_name.contains_key("mkdir") || by_name.contains_key("mkdirat"),
        "no mkdir notification: {report:#?}"
    );
}

#[test]
fn the_runtimes_own_calls_after_the_load_may_be_notified_without_a_deadlock() {
    // The filter is in force from the load to the execve: what the runtime does there
    // (report created, wait for start, drop privileges, exec) is notified too, and only
    // works if the agent already has the fd when those calls are made. The agent lets
    // them all run (SECCOMP_USER_NOTIF_FLAG_CONTINUE). (`write` is left out: runc refuses
    // it, its own hand-off call; codex refuses `sendmsg`, see the codex_ test below.)
    if !notify_supported() {
        return;
    }
    let ctx = TestCtx::new("notify-runtime-calls");
    let sock = ctx.path("agent.sock");
    let mut agent = Agent::start(&sock);
    let mut p = profile(Some(&sock), false);
    let names = [
        "close",
        "read",
        "recvfrom",
        "sendto",
        "accept4",
        "unlinkat",
        "chdir",
        "capset",
        "setresuid",
        "execve",
    ];
    p["syscalls"] = json!([{"names": names, "action": "SCMP_ACT_NOTIFY"}]);
    let mut b = notify_bundle(&ctx, p);
    b.sh("echo hello-from-the-program");
    let id = ctx.id("calls");
    ctx.create(&b, &id, &[]).assert_ok();
    let pid = ctx.rt.pid(&id) as u32;
    ctx.rt.run(&["start", &id]).assert_ok();
    ctx.wait_for_stdout(&id, "hello-from-the-program");
    ctx.rt.wait_status(&id, "stopped");
    let report = agent.finish();
    assert!(report.errors.is_empty(), "agent errors: {report:#?}");
    assert!(
        report
            .answered
            .iter()
            .any(|(p, n)| *p == pid && n == "execve"),
        "the init's execve was not notified: {report:#?}"
    );
}

#[test]
fn foreground_run_hands_the_agent_the_fd_too() {
    if !notify_supported() {
        return;
    }
    let ctx = TestCtx::new("notify-run");
    let sock = ctx.path("agent.sock");
    let mut agent = Agent::start(&sock);
    let mut b = notify_bundle(&ctx, profile(Some(&sock), true));
    let o = ctx.run_sh(&mut b, PROBE);
    let report = agent.finish();
    assert!(report.errors.is_empty(), "agent errors: {report:#?}");
    assert!(
        o.stdout.contains(&format!("ppid={FAKE_PPID}")),
        "{o:?} {report:#?}"
    );
    assert!(o.stdout.contains("made-missing"), "{o:?}");
    assert_eq!(report.connections.len(), 1, "{report:#?}");
    assert!(report.connections[0].had_fd, "{report:#?}");
}

#[test]
fn a_user_namespace_and_an_unprivileged_user_with_no_new_privileges_work_too() {
    // The filter is loaded while the init is still root in its user namespace (loading
    // without no_new_privs needs CAP_SYS_ADMIN there), before the user, capabilities and
    // no_new_privs change; the agent's answers reach a program running as uid 1000.
    if !notify_supported() {
        return;
    }
    let ctx = TestCtx::new("notify-userns");
    let sock = ctx.path("agent.sock");
    let mut agent = Agent::start(&sock);
    let mut b = notify_bundle(&ctx, profile(Some(&sock), true));
    b.user_namespace(100000, 65536)
        .user(1000, 1000)
        .no_new_privileges(true);
    let o = ctx.run_sh(&mut b, &format!("id -u; {PROBE}"));
    let report = agent.finish();
    assert!(report.errors.is_empty(), "agent errors: {report:#?}");
    assert!(o.stdout.starts_with("1000\n"), "{o:?}");
    assert!(
        o.stdout.contains(&format!("ppid={FAKE_PPID}")),
        "{o:?} {report:#?}"
    );
    assert!(o.stdout.contains("made-missing"), "{o:?}");
    assert_eq!(report.connections.len(), 1, "{report:#?}");
}

#[test]
fn exec_into_a_notify_container_hands_the_agent_the_new_process() {
    if !notify_supported() {
        return;
    }
    let ctx = TestCtx::new("notify-exec");
    let sock = ctx.path("agent.sock");
    let mut agent = Agent::start(&sock);
    let mut b = notify_bundle(&ctx, profile(Some(&sock), true));
    b.sh("echo up; exec sleep 120");
    let id = ctx.id("exec");
    ctx.create_and_start(&b, &id);
    ctx.wait_for_stdout(&id, "up");
    let o = ctx.exec(&id, &[], &["sh", "-c", PROBE]);
    o.assert_ok();
    ctx.rt.run(&["kill", &id, "KILL"]).assert_ok();
    ctx.rt.wait_status(&id, "stopped");
    let report = agent.finish();
    assert!(report.errors.is_empty(), "agent errors: {report:#?}");
    assert!(
        o.stdout.contains(&format!("ppid={FAKE_PPID}")),
        "{o:?} {report:#?}"
    );
    assert!(o.stdout.contains("made-missing"), "{o:?}");
    assert_eq!(
        report.connections.len(),
        2,
        "one state for the init, one for the exec'd process: {report:#?}"
    );
    let exec_state = &report.connections[1].state;
    assert!(report.connections[1].had_fd, "{report:#?}");
    let exec_pid = exec_state["pid"].as_i64().unwrap_or(0) as u32;
    assert_ne!(
        exec_state["pid"], exec_state["state"]["pid"],
        "the process state's pid is the exec'd process, the state's the init: {exec_state}"
    );
    assert!(
        report
            .answered
            .iter()
            .any(|(p, n)| *p == exec_pid && n == "getppid"),
        "no getppid from the exec'd process {exec_pid}: {report:#?}"
    );
}

#[test]
fn an_unreachable_listener_fails_create_naming_the_path_and_leaves_nothing() {
    if !notify_supported() {
        return;
    }
    let ctx = TestCtx::new("notify-nolistener");
    // Positive control: the same bundle with an agent there creates.
    let sock = ctx.path("agent.sock");
    let mut agent = Agent::start(&sock);
    let b = notify_bundle(&ctx, profile(Some(&sock), true));
    let ok_id = ctx.id("ok");
    ctx.create(&b, &ok_id, &[]).assert_ok();
    ctx.rt.run(&["delete", "--force", &ok_id]).assert_ok();
    let _ = agent.finish();
    drop(agent);
    assert!(!sock.exists(), "the agent's socket is still there");

    let id = ctx.id("missing");
    let o = ctx.create(&b, &id, &[]);
    o.assert_fails();
    o.assert_stderr_mentions(&sock.to_string_lossy());
    assert!(
        ctx.rt.state(&id).is_err(),
        "state {id} must fail after a failed create"
    );
    assert!(
        !ctx.rt.root_has_entry(&id),
        "state root still holds {id}: {:?}",
        ctx.rt.root_entries()
    );
    let listed = ctx.rt.run(&["list", "-q"]);
    listed.assert_ok();
    assert!(
        !listed.stdout.contains(&id),
        "list still shows {id}: {listed:?}"
    );
    assert!(
        cgroup_dirs_containing(&id).is_empty(),
        "cgroups left behind: {:?}",
        cgroup_dirs_containing(&id)
    );
    assert_eq!(ctx.stdout_of(&id), "", "the program ran: {o:?}");
}

/// A codex refusal of a bad notify profile: create fails naming `needle`, nothing left.
fn refused(ctx: &TestCtx, seccomp: Value, needle: &str) {
    let b = notify_bundle(ctx, seccomp);
    let id = ctx.id("refused");
    let o = ctx.create(&b, &id, &[]);
    o.assert_refused_naming(needle);
    assert!(!ctx.rt.root_has_entry(&id), "{:?}", ctx.rt.root_entries());
    assert_eq!(ctx.stdout_of(&id), "", "the program ran: {o:?}");
}

#[test]
fn codex_notify_profiles_the_spec_forbids_are_refused_naming_the_field() {
    let ctx = TestCtx::new("notify-refused");
    let sock = ctx.path("agent.sock");
    // Positive control: the valid profile creates (an agent takes the fd).
    let mut agent = Agent::start(&sock);
    let good = notify_bundle(&ctx, profile(Some(&sock), true));
    let ok_id = ctx.id("ok");
    ctx.create(&good, &ok_id, &[]).assert_ok();
    ctx.rt.run(&["delete", "--force", &ok_id]).assert_ok();
    let _ = agent.finish();

    // SCMP_ACT_NOTIFY with nowhere to send the fd.
    let mut p = profile(None, true);
    refused(&ctx, p.clone(), "linux.seccomp.listenerPath");
    // Metadata for a listener that is not there.
    p["listenerMetadata"] = json!("x");
    refused(&ctx, p, "linux.seccomp.listenerMetadata");
    // Notify as the default action: the runtime's own calls would wait forever.
    let mut p = profile(Some(&sock), false);
    p["defaultAction"] = json!("SCMP_ACT_NOTIFY");
    refused(&ctx, p, "linux.seccomp.defaultAction");
    // Notify on the syscall that hands the fd over.
    let mut p = profile(Some(&sock), false);
    p["syscalls"] = json!([{"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}]);
    refused(&ctx, p, "linux.seccomp.syscalls[0].names");
}

#[test]
fn codex_features_lists_the_notify_action() {
    let ctx = TestCtx::new("notify-features");
    let o = ctx.rt.run(&["features"]);
    o.assert_ok();
    let v = o.json();
    let actions = v["linux"]["seccomp"]["actions"]
        .as_array()
        .unwrap_or_else(|| panic!("no seccomp actions: {v}"));
    assert!(actions.contains(&json!("SCMP_ACT_NOTIFY")), "{v}");
    assert!(actions.contains(&json!("SCMP_ACT_ERRNO")), "{v}");
}
