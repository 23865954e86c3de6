//! What codex-oci writes on the host: the state file holds the whole spec (env secrets
//! included) and is root's alone; the pid file is replaced, never written through a
//! symlink someone placed at its path.

use std::fs;
use std::os::unix::fs::MetadataExt;

use codex_tests::*;

#[test]
fn pid_file_replaces_a_planted_symlink_instead_of_writing_through_it() {
    let ctx = TestCtx::new("pid-symlink");
    let mut b = ctx.bundle();
    b.sh("exec sleep 1000");
    let victim = ctx.path("victim");
    fs::write(&victim, "precious\n").unwrap();
    let pf = ctx.path("planted.pid");
    std::os::unix::fs::symlink(&victim, &pf).unwrap();
    // Control: the planted link does lead to the victim.
    assert_eq!(fs::read_to_string(&pf).unwrap(), "precious\n");

    let id = ctx.id("c");
    ctx.create(&b, &id, &["--pid-file", pf.to_str().unwrap()])
        .assert_ok();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    let md = fs::symlink_metadata(&pf).unwrap();
    assert!(md.file_type().is_file(), "the pid file is still a symlink");
    let pid: i64 = fs::read_to_string(&pf).unwrap().trim().parse().unwrap();
    assert_eq!(pid, ctx.rt.pid(&id));
}

#[test]
fn codex_state_file_is_readable_by_root_alone() {
    let ctx = TestCtx::new("state-mode");
    let mut b = ctx.bundle();
    b.sh("exec sleep 1000");
    let id = ctx.id("c");
    ctx.create(&b, &id, &[]).assert_ok();
    let state = ctx.rt.root.join(&id).join("state.json");
    let md = fs::metadata(&state).unwrap_or_else(|e| panic!("{}: {e}", state.display()));
    assert_eq!(
        md.mode() & 0o077,
        0,
        "state.json is {:o}",
        md.mode() & 0o7777
    );
}

#[test]
fn codex_a_traced_run_writes_the_inits_lines_to_the_host_file_and_nothing_in_the_container() {
    // CODEX_TRACE names a path on the host. The init pivots into the container's root,
    // where the same path would be the container's: it must write through the file the
    // runtime opened before the fork, never open the path again.
    let ctx = TestCtx::new("trace-init");
    let mut b = ctx.bundle();
    let host_trace = std::path::PathBuf::from(format!("/codex-trace-file-{}", std::process::id()));
    b.sh(&format!(
        "ls {} 2>&1 || echo absent; echo done",
        host_trace.display()
    ));
    let id = ctx.id("c");
    b.save();
    struct RemoveAtEnd(std::path::PathBuf);
    impl Drop for RemoveAtEnd {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }
    let _cleanup = RemoveAtEnd(host_trace.clone());
    let mut cmd = ctx
        .rt
        .command(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    cmd.env("CODEX_TRACE", &host_trace);
    let o = ctx.rt.run_cmd(cmd);
    o.assert_ok();
    assert!(o.stdout.contains("absent"), "{o:?}");
    let trace = fs::read_to_string(&host_trace).expect("the trace file on the host");
    for phase in [
        "rt: bundle loaded",
        "init: root switched",
        "init: start received",
    ] {
        assert!(trace.contains(phase), "no {phase:?} in {trace}");
    }
    assert_eq!(fs::metadata(&host_trace).unwrap().mode() & 0o777, 0o600);
    let in_rootfs = b.rootfs().join(host_trace.strip_prefix("/").unwrap());
    assert!(
        fs::symlink_metadata(&in_rootfs).is_err(),
        "{} was made inside the container's root",
        in_rootfs.display()
    );
}
