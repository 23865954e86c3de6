//! Calls containerd's runc shim makes on the CRI path (tests/tests/cri.rs) in the shape it
//! makes them, each checked against runc first: what runc accepts here, the runtime must.

use codex_tests::*;
use std::fs;

/// After every container exit the shim's cleanup runs `delete --force` on an id whose
/// container is already gone; runc answers 0 (nothing left to delete) and containerd logs
/// "failed to remove runc container" when a runtime does not.
#[test]
fn delete_force_of_a_container_that_is_gone_succeeds() {
    let ctx = TestCtx::new("delete-force-gone");
    let mut b = ctx.bundle();
    b.sh("exit 0");
    let id = ctx.id("gone");
    // positive control: the id really names a container, then it is deleted
    ctx.create(&b, &id, &[]).assert_ok();
    assert!(ctx.rt.state(&id).is_ok());
    ctx.rt.run(&["delete", "--force", &id]).assert_ok();
    assert!(ctx.rt.state(&id).is_err());
    // the shim's second delete: success, still nothing there
    ctx.rt.run(&["delete", "--force", &id]).assert_ok();
    assert!(!ctx.rt.root_has_entry(&id));
    // without --force an unknown id stays an error
    ctx.rt
        .run(&["delete", &id])
        .assert_refused_naming("does not exist");
}

/// A create killed between making its state directory and writing its state leaves an
/// empty directory; `delete --force` removes it (so the id can be used again).
#[test]
fn delete_force_removes_the_empty_directory_of_an_aborted_create() {
    let ctx = TestCtx::new("delete-force-aborted");
    let id = ctx.id("aborted");
    fs::create_dir_all(ctx.rt.root.join(&id)).unwrap();
    assert!(ctx.rt.root_has_entry(&id), "positive control");
    ctx.rt.run(&["delete", "--force", &id]).assert_ok();
    assert!(!ctx.rt.root_has_entry(&id), "{:?}", ctx.rt.root_entries());
    let mut b = ctx.bundle();
    b.sh("exit 0");
    ctx.create(&b, &id, &[]).assert_ok();
}
