//! Escape checks: no runtime fd reaches the container and the runtime binary cannot be
//! overwritten from inside (the runc CVE classes 2019-5736, 2024-21626). Path attacks (mount
//! destinations, masking, the console, sysctls) are in `security_paths.rs`.

use codex_tests::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// `fd -> target` pairs from `ls -l /proc/self/fd` output (ls's own dir fd included).
fn fd_targets(ls: &str) -> Vec<(u32, String)> {
    ls.lines()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target.trim().to_string()))
        })
        .collect()
}

#[track_caller]
fn assert_only_stdio(ls: &str) {
    let fds = fd_targets(ls);
    assert!(
        fds.iter().any(|(fd, _)| *fd == 0) && fds.iter().any(|(fd, _)| *fd == 2),
        "could not parse the fd listing: {ls:?}"
    );
    for (fd, target) in &fds {
        if *fd <= 2 {
            continue;
        }
        // the only other fd is the one ls opened on its own /proc/<pid>/fd directory
        assert!(
            target.starts_with("/proc/") && target.ends_with("/fd"),
            "fd {fd} -> {target} leaked into the container:\n{ls}"
        );
    }
    let extra = fds.iter().filter(|(fd, _)| *fd > 2).count();
    assert!(extra <= 1, "more than ls's own directory fd is open:\n{ls}");
}

#[test]
fn no_runtime_fd_leaks_into_the_container() {
    let ctx = TestCtx::new("fd-leak");
    let mut b = ctx.bundle();
    let o = ctx.run_sh(&mut b, "exec ls -l /proc/self/fd");
    assert_only_stdio(&o.stdout);
}

#[test]
fn no_runtime_fd_leaks_into_an_exec_process() {
    let ctx = TestCtx::new("fd-leak-exec");
    let mut b = ctx.bundle();
    b.sh("echo ready; exec sleep 1000");
    let id = ctx.id("exec");
    ctx.create_and_start(&b, &id);
    ctx.wait_for_stdout(&id, "ready");
    let o = ctx.exec(&id, &[], &["ls", "-l", "/proc/self/fd"]);
    o.assert_ok();
    assert_only_stdio(&o.stdout);
}

#[test]
fn process_cwd_cannot_reach_the_host_through_an_inherited_fd() {
    // CVE-2024-21626: cwd "/proc/self/fd/N" pointing at a runtime fd outside the rootfs.
    let ctx = TestCtx::new("cwd-fd");
    let marker = ctx.path("host-marker");
    fs::write(&marker, "HOST-SECRET").unwrap();
    let rel = format!("../../../../../../../../..{}", marker.display());
    // Positive control: from a directory outside any rootfs the path reaches the marker.
    let control = host_sh(&format!("cd /proc && cat {rel}"));
    assert_eq!(control.stdout, "HOST-SECRET", "{control:?}");
    for fd in 3..=9 {
        let mut b = ctx.bundle();
        b.cwd(&format!("/proc/self/fd/{fd}"));
        b.sh(&format!(
            "cat {rel} 2>/dev/null; cat /proc/self/cwd/{rel} 2>/dev/null; echo script-ran"
        ));
        let id = ctx.id(&format!("cwd{fd}"));
        let o = ctx.run(&b, &id, &[]);
        assert!(
            !o.stdout.contains("HOST-SECRET"),
            "cwd /proc/self/fd/{fd} reached the host: {o:?}"
        );
        // Either the program ran (and did not reach the host) or the runtime refused the
        // cwd; a crash or a run that never started the program proves nothing.
        if o.ok() {
            assert!(o.stdout.contains("script-ran"), "{o:?}");
        } else {
            o.assert_refused();
        }
    }
}

#[test]
fn runtime_binary_cannot_be_overwritten_from_inside_the_container() {
    // CVE-2019-5736. The runtime under test is a private copy, so a failure cannot destroy
    // the real build. While the container is `created`, its PID 1 is the runtime's init: a
    // process exec'd into the container opens /proc/1/exe, waits until `start` has replaced
    // PID 1 with the user program, then keeps trying to write through the fd it holds while
    // the runtime processes exit.
    let base = TestCtx::new("exe-overwrite-bin");
    let bindir = base.mkdir("bin");
    let bin = copy_runtime_to(&bindir, "runtime-copy");
    let before = fs::read(&bin).unwrap();
    let mtime = fs::metadata(&bin).unwrap().mtime();
    // Whatever happens to the attack (refused, inconclusive, a failed step), the binary is
    // checked afterwards: the containers are gone by then (the ctx is dropped in the closure).
    let attack =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attack_runtime_binary(&bin)));
    assert_eq!(
        fs::metadata(&bin).unwrap().mtime(),
        mtime,
        "runtime binary mtime changed"
    );
    assert!(
        fs::read(&bin).unwrap() == before,
        "runtime binary content changed"
    );
    if let Err(panic) = attack {
        std::panic::resume_unwind(panic);
    }
}

/// The attacker: everything runs in a subshell, because a failed redirection on `exec` (a
/// special builtin) ends a non-interactive shell; the subshell's failure is the refusal.
/// First the control: the same route (open read-only as fd 3, write through
/// /proc/self/fd/3) on an ordinary file bound from the host at /ctl/target. Every path
/// prints exactly one `result:` line.
const EXE_ATTACK: &str = "( exec 3</ctl/target && echo via-fd >/proc/self/fd/3 ) \
       && echo control:wrote || echo control:failed; \
     ( exec 3</proc/1/exe; echo opened; \
     i=0; until [ \"$(readlink /proc/1/exe)\" = /bin/busybox ]; do \
       i=$((i+1)); if [ $i -gt 1000 ]; then echo result:never-started; exit 0; fi; \
       sleep 0.02; done; \
     i=0; while [ $i -lt 150 ]; do \
       if echo pwned 2>/dev/null >/proc/self/fd/3; then echo result:WROTE; exit 0; fi; \
       i=$((i+1)); sleep 0.02; done; \
     echo result:refused ) 2>/dev/null || echo result:no-open";

/// Runs [`EXE_ATTACK`] against a container of the runtime copy `bin`; panics unless the
/// control wrote and the attack ended refused (the runtime's init could not be opened, or
/// the fd held could not be written through).
fn attack_runtime_binary(bin: &std::path::Path) {
    let ctx = TestCtx::with_binary("exe-overwrite", bin);
    let target = ctx.path("ctl-target");
    fs::write(&target, "ORIGINAL").unwrap();
    let mut b = ctx.bundle();
    b.add_bind(&target, "/ctl/target", &["rw"]);
    b.sh("echo started; exec sleep 1000");
    let id = ctx.id("victim");
    ctx.create(&b, &id, &[]).assert_ok();
    let (out, err) = (ctx.path("attack.out"), ctx.path("attack.err"));
    // -d: the attacker outlives the exec command and keeps writing to these files. The
    // attack needs a process in the created container: an exec that is refused proves
    // nothing, so it must succeed.
    try_run_to(
        &mut ctx.rt.command(&["exec", "-d", &id, "sh", "-c", EXE_ATTACK]),
        &out,
        &err,
        CMD_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .assert_ok();
    let report = || format!("{:?} {:?}", read_lossy(&out), read_lossy(&err));
    // let the attacker get its fd (or fail to) before start
    assert!(
        wait_until(WAIT, || {
            let o = read_lossy(&out);
            o.contains("opened") || o.contains("result:")
        }),
        "the attacker never started: {}",
        report()
    );
    ctx.rt.run(&["start", &id]).assert_ok();
    ctx.wait_for_stdout(&id, "started");
    // control: once PID 1 is the user's program, a process in the container can open
    // /proc/1/exe; what it may not do is open (or write through) the runtime's
    ctx.exec(
        &id,
        &[],
        &["sh", "-c", "exec 3</proc/1/exe && echo opened-busybox"],
    )
    .assert_ok();
    assert!(
        wait_until(Duration::from_secs(60), || read_lossy(&out)
            .contains("result:")),
        "the attacker never finished: {}",
        report()
    );
    eprintln!("attack: {}", report());
    let o = read_lossy(&out);
    // the control: the route works for a file the container may write
    assert!(o.contains("control:wrote"), "{}", report());
    assert_eq!(fs::read_to_string(&target).unwrap(), "via-fd\n");
    assert!(!o.contains("result:WROTE"), "{}", report());
    assert!(
        o.contains("result:no-open") || o.contains("result:refused"),
        "{}",
        report()
    );
    // also: the user program may write to /proc/1/exe or /proc/self/exe (busybox) itself
    let mut b2 = ctx.bundle();
    b2.sh("echo x > /proc/1/exe 2>/dev/null; echo x > /proc/self/exe 2>/dev/null; true");
    let id2 = ctx.id("victim2");
    ctx.run(&b2, &id2, &[]).assert_ok();
}
