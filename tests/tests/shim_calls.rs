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

/// The memory limit file of the container's cgroup (v1 or v2), whichever exists.
fn memory_limit(id: &str) -> Vec<String> {
    cgroup_dirs_containing(id)
        .into_iter()
        .flat_map(|d| [d.join("memory.limit_in_bytes"), d.join("memory.max")])
        .filter(|f| f.exists())
        .map(|f| read_lossy(&f).trim().to_string())
        .collect()
}

/// UpdateContainerResources through containerd: the shim sends `update --resources -`
/// with the whole resources object of the spec, device rules included and unchanged (the
/// deny-all rule first). runc applies it; the runtime must too, on any cgroup layout.
#[test]
fn update_with_the_unchanged_device_rules_applies_the_new_limits() {
    let ctx = TestCtx::new("update-same-devices");
    let mut b = ctx.bundle();
    let devices = serde_json::json!([{"allow": false, "access": "rwm"}]);
    b.set(
        "/linux/resources",
        serde_json::json!({"memory": {"limit": 64 << 20}, "devices": devices}),
    );
    b.sh("sleep 1000");
    let id = ctx.id("upd");
    ctx.create_and_start(&b, &id);
    assert_eq!(memory_limit(&id), vec![(64u64 << 20).to_string()]);
    let res = ctx.path("resources.json");
    fs::write(
        &res,
        serde_json::json!({"memory": {"limit": 128 << 20}, "devices": devices}).to_string(),
    )
    .unwrap();
    ctx.rt
        .run(&["update", "--resources", res.to_str().unwrap(), &id])
        .assert_ok();
    assert_eq!(memory_limit(&id), vec![(128u64 << 20).to_string()]);
    // the device rules still hold: /dev/null is allowed (a default), nothing else was
    let o = ctx.exec(&id, &[], &["sh", "-c", "echo x > /dev/null && echo ok"]);
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "ok", "{o:?}");
}

/// `update` with new device rules on a running container: the runtime applies them on
/// every cgroup layout; on v2 (and the unified half of a hybrid host) that means replacing
/// the container's eBPF device program. Widening the rules shows the old program is gone
/// (device programs of one cgroup all have to allow). codex-specific: runc 1.1's `update`
/// ignores device rules (and its default list allows every mknod, so the probe here would
/// prove nothing with it).
#[test]
fn codex_update_with_new_device_rules_replaces_them_on_a_running_container() {
    let ctx = TestCtx::new("update-new-devices");
    let mut b = ctx.bundle();
    let caps = serde_json::json!(["CAP_MKNOD", "CAP_KILL"]);
    for set in ["bounding", "effective", "permitted"] {
        b.set(&format!("/process/capabilities/{set}"), caps.clone());
    }
    let deny_all = serde_json::json!({"allow": false, "access": "rwm"});
    b.set(
        "/linux/resources",
        serde_json::json!({"devices": [deny_all]}),
    );
    b.sh("sleep 1000");
    let id = ctx.id("dev");
    ctx.create_and_start(&b, &id);
    // /dev/kmsg's numbers: in no default allow list
    let mknod = |n: &str| {
        ctx.exec(
            &id,
            &["--cap", "CAP_MKNOD"],
            &["mknod", &format!("/dev/k{n}"), "c", "1", "11"],
        )
    };
    mknod("0").assert_fails();
    let update = |devices: serde_json::Value| {
        let res = ctx.path("devices.json");
        fs::write(&res, serde_json::json!({"devices": devices}).to_string()).unwrap();
        ctx.rt
            .run(&["update", "--resources", res.to_str().unwrap(), &id])
            .assert_ok();
    };
    update(serde_json::json!([
        deny_all,
        {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "m"}
    ]));
    mknod("1").assert_ok();
    update(serde_json::json!([deny_all]));
    mknod("2").assert_fails();
}
