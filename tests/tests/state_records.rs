//! The runtime's record of a container (state.json) and what a host crash can leave of
//! it. A foreground `run` deletes its container when the program ends, so its record is
//! not synced; a detached run's container stays, and its record is. A record cut short
//! (what an unsynced write meets in a host crash) is removed by `delete --force`.
//!
//! A host crash cannot be made here: the tests write the file such a crash leaves (an
//! empty or truncated state.json) and check what the runtime makes of it.

use codex_tests::*;
use std::fs;

/// The sync calls (`fsync`, `fdatasync`...) of `BIN --root ROOT args...` and every
/// process it starts, counted by strace, and the command's output.
fn syncs_of(ctx: &TestCtx, args: &[&str]) -> (Vec<String>, Out) {
    let log = ctx.path(&format!("strace-{}", ctx.id("log")));
    let mut cmd = std::process::Command::new("strace");
    cmd.args(["-f", "-qq", "-e", STRACE_SYNC_CALLS, "-o"])
        .arg(&log)
        .arg(&ctx.rt.bin)
        .arg("--root")
        .arg(&ctx.rt.root)
        .args(args);
    let out = run_command(&mut cmd);
    assert!(
        log.exists(),
        "strace wrote no log at {} ({out:?})",
        log.display()
    );
    (sync_calls_in(&log), out)
}

#[test]
fn codex_foreground_run_syncs_nothing_while_a_detached_runs_record_is_synced() {
    if !have_tool("strace") {
        skip("strace is not installed (it counts the syncs)");
        return;
    }
    let ctx = TestCtx::new("run-syncs");
    let mut b = ctx.bundle();
    b.sh("echo ran-in-front");
    b.save();
    let bundle = b.dir.to_string_lossy().into_owned();
    let front = ctx.id("front");
    let (syncs, out) = syncs_of(&ctx, &["run", "--bundle", &bundle, &front]);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "ran-in-front", "{out:?}");
    assert!(syncs.is_empty(), "a foreground run synced: {syncs:#?}");
    assert!(!ctx.rt.root_has_entry(&front), "run deletes its container");

    // Positive control: a detached run's container outlives the command, and its record
    // is made durable. Its program ends at once: strace follows it, and the command's
    // output pipes stay open until it exits.
    b.sh("true");
    b.save();
    let kept = ctx.id("kept");
    let (syncs, out) = syncs_of(&ctx, &["run", "--detach", "--bundle", &bundle, &kept]);
    out.assert_ok();
    assert!(
        syncs.iter().any(|l| l.contains("fsync")),
        "a detached run's record should be synced: {syncs:#?}"
    );
    ctx.rt.wait_status(&kept, "stopped");
    ctx.rt.run(&["delete", &kept]).assert_ok();
    assert!(!ctx.rt.root_has_entry(&kept));
}

#[test]
fn codex_delete_force_removes_a_record_a_host_crash_cut_short() {
    let ctx = TestCtx::new("cut-record");
    let mut b = ctx.bundle();
    b.sh("exec sleep 1000");
    b.save();
    // A real container's directory (its record, its start socket), then its record as an
    // unsynced write leaves it after a host crash: empty, or cut in the middle.
    for cut in [0usize, 40] {
        let id = ctx.id("cut");
        let o = ctx
            .rt
            .run(&["create", "--bundle", &b.dir.to_string_lossy(), &id]);
        o.assert_ok();
        let state = ctx.rt.root.join(&id).join("state.json");
        let whole = fs::read(&state).expect("the record");
        // The container's processes died with the "host": end them as the crash would.
        ctx.rt.run(&["delete", "--force", &id]).assert_ok();
        fs::create_dir(ctx.rt.root.join(&id)).expect("the directory again");
        fs::write(&state, &whole[..cut.min(whole.len())]).expect("the cut record");

        let list = ctx.rt.run(&["list"]);
        list.assert_ok();
        assert!(
            list.stderr.contains(&id) && list.stderr.contains("delete --force"),
            "list names the cut record: {list:?}"
        );
        let plain = ctx.rt.run(&["delete", &id]);
        assert_ne!(plain.code(), Some(0), "{plain:?}");
        assert!(
            plain.stderr.contains("state.json") && plain.stderr.contains("corrupt state"),
            "the error names the record: {plain:?}"
        );
        assert!(
            ctx.rt.root_has_entry(&id),
            "delete without --force leaves it"
        );

        ctx.rt.run(&["delete", "--force", &id]).assert_ok();
        assert!(
            !ctx.rt.root_has_entry(&id),
            "delete --force removes it (cut at {cut})"
        );
    }
}
