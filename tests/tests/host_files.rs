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
