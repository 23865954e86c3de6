//! Bad input: invalid ids, duplicate ids, broken or invalid config.json. Every failure must
//! be a refusal (a non-zero exit, not a crash) whose message names what was wrong, and leave
//! no state entry or cgroup behind. A name both codex and runc 1.1.5 use is asserted here. Tests
//! named `codex_*` also check that the message names the offending JSON path (or are inputs
//! runc 1.1.5 accepts although the spec forbids them).

use codex_tests::*;
use std::fs;

/// `create` must refuse (a non-zero exit that is not a crash) with a message naming `field`
/// (a word runc's message has too, outside `codex_*` tests) and leave nothing behind;
/// returns the failed output.
#[track_caller]
fn rejected(ctx: &TestCtx, b: &Bundle, id: &str, field: &str) -> Out {
    let o = ctx.create(b, id, &[]);
    o.assert_refused_naming(field);
    assert!(
        ctx.rt.state(id).is_err(),
        "state {id} must fail after a failed create"
    );
    assert!(
        !ctx.rt.root_has_entry(id),
        "state root still holds {id}: {:?}",
        ctx.rt.root_entries()
    );
    walk_control(ctx);
    let cg = cgroup_dirs_containing(id);
    assert!(cg.is_empty(), "cgroups left behind: {cg:?}");
    o
}

/// Positive control for the leftover walk, once per test binary: the cgroup of a container
/// this runtime created is found by `cgroup_dirs_containing` (so "none found" after a
/// refused create means none was left, not that the walk cannot see any).
#[track_caller]
fn walk_control(ctx: &TestCtx) {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let mut b = ctx.bundle();
        b.sh("true");
        let id = ctx.id("walk-control");
        ctx.create(&b, &id, &[]).assert_ok();
        let found = cgroup_dirs_containing(&id);
        ctx.rt.run(&["delete", "--force", &id]).assert_ok();
        assert!(
            !found.is_empty(),
            "control: the cgroup walk cannot find a created container's cgroup"
        );
    });
}

/// A bundle whose config is edited by `f`, and a fresh id.
fn bad(ctx: &TestCtx, f: impl FnOnce(&mut Bundle)) -> (Bundle, String) {
    let mut b = ctx.bundle();
    b.sh("echo should-not-run");
    f(&mut b);
    (b, ctx.id("bad"))
}

#[test]
fn invalid_container_ids_are_rejected_before_they_become_paths() {
    let ctx = TestCtx::new("bad-ids");
    let b = ctx.bundle();
    let abs = format!("/tmp/codex-test-abs-id-{}", std::process::id());
    for id in [
        "../x",
        "a/b",
        ".",
        "..",
        "",
        "a b",
        abs.as_str(),
        "../../codex-escape",
    ] {
        let o = ctx.create(&b, id, &[]);
        o.assert_refused();
        assert!(!o.stderr.trim().is_empty(), "{o:?}");
    }
    assert!(
        ctx.rt.root_entries().is_empty(),
        "{:?}",
        ctx.rt.root_entries()
    );
    assert!(!ctx.path("x").exists(), "`../x` escaped the state root");
    assert!(
        !std::path::Path::new(&abs).exists(),
        "an absolute id became a path"
    );
    assert!(!ctx.path("../codex-escape").exists());
}

#[test]
fn valid_container_id_characters_are_accepted() {
    let ctx = TestCtx::new("good-ids");
    let mut b = ctx.bundle();
    b.sh("echo ran");
    let id = format!("{}_A.b-c+d", ctx.id("ok"));
    ctx.track_id(&id);
    let o = ctx.run(&b, &id, &[]);
    o.assert_ok();
    assert_eq!(
        o.stdout.trim(),
        "ran",
        "the container's program did not run: {o:?}"
    );
}

#[test]
fn duplicate_container_id_is_rejected_and_the_first_container_is_untouched() {
    let ctx = TestCtx::new("dup-id");
    let mut b = ctx.bundle();
    b.sh("exec sleep 1000");
    let id = ctx.id("dup");
    ctx.create(&b, &id, &[]).assert_ok();
    let pid = ctx.rt.pid(&id);
    let o = ctx
        .rt
        .run(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    o.assert_refused();
    let st = ctx.rt.state_ok(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"].as_i64(), Some(pid));
    assert!(pid_alive(pid));
}

#[test]
fn missing_config_json_is_rejected() {
    let ctx = TestCtx::new("no-config");
    let b = ctx.bundle();
    let id = ctx.id("noconfig");
    let o = ctx
        .rt
        .run(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    o.assert_refused_naming("config.json");
    assert!(!ctx.rt.root_has_entry(&id));
}

#[test]
fn malformed_config_json_is_rejected() {
    let ctx = TestCtx::new("bad-json");
    let b = ctx.bundle();
    fs::write(
        b.config_path(),
        "{\"ociVersion\": \"1.2.0\", \"process\": {bad json",
    )
    .unwrap();
    let id = ctx.id("badjson");
    let o = ctx
        .rt
        .run(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    o.assert_fails();
    assert!(!ctx.rt.root_has_entry(&id));
}

#[test]
fn wrong_type_in_config_is_rejected() {
    let ctx = TestCtx::new("wrong-type");
    let (b, id) = bad(&ctx, |b| {
        b.set("/process/args", serde_json::json!("sh -c true"));
    });
    rejected(&ctx, &b, &id, "process.args");
}

#[test]
fn unknown_namespace_type_is_rejected() {
    let ctx = TestCtx::new("bad-ns");
    let (b, id) = bad(&ctx, |b| {
        b.namespace("bogus", None);
    });
    rejected(&ctx, &b, &id, "bogus");
}

#[test]
fn nonexistent_rootfs_is_rejected() {
    let ctx = TestCtx::new("no-rootfs");
    let (b, id) = bad(&ctx, |b| {
        b.set("/root/path", serde_json::json!("no-such-rootfs"));
    });
    rejected(&ctx, &b, &id, "no-such-rootfs");
}

#[test]
fn config_without_root_is_rejected() {
    let ctx = TestCtx::new("no-root");
    let (b, id) = bad(&ctx, |b| {
        b.remove("/root");
    });
    rejected(&ctx, &b, &id, "root");
}

#[test]
fn config_without_process_is_rejected_by_create() {
    let ctx = TestCtx::new("no-process");
    let (b, id) = bad(&ctx, |b| {
        b.remove("/process");
    });
    rejected(&ctx, &b, &id, "process");
}

#[test]
fn empty_args_are_rejected() {
    let ctx = TestCtx::new("empty-args");
    let (b, id) = bad(&ctx, |b| {
        b.args(&[]);
    });
    rejected(&ctx, &b, &id, "args");
}

#[test]
fn relative_cwd_is_rejected() {
    let ctx = TestCtx::new("rel-cwd");
    let (b, id) = bad(&ctx, |b| {
        b.cwd("relative/dir");
    });
    rejected(&ctx, &b, &id, "cwd");
}

#[test]
fn unknown_rlimit_type_is_rejected() {
    let ctx = TestCtx::new("bad-rlimit");
    let (b, id) = bad(&ctx, |b| {
        b.rlimits(&[("RLIMIT_BOGUS", 1, 1)]);
    });
    rejected(&ctx, &b, &id, "RLIMIT_BOGUS");
}

#[test]
fn rlimit_above_the_hard_limit_fails_without_leftovers() {
    // This machine lacks CAP_SYS_RESOURCE: the hard limit for nofile cannot be raised.
    let ctx = TestCtx::new("rlimit-high");
    let (b, id) = bad(&ctx, |b| {
        b.rlimits(&[("RLIMIT_NOFILE", 1 << 30, 1 << 30)]);
    });
    rejected(&ctx, &b, &id, "rlimit");
}

#[test]
fn unknown_filesystem_type_fails_without_leftovers() {
    let ctx = TestCtx::new("bad-fstype");
    let (b, id) = bad(&ctx, |b| {
        b.add_mount("/x", "codex-no-such-fs", "none", &[]);
    });
    rejected(&ctx, &b, &id, "/x");
}

#[test]
fn program_that_does_not_exist_fails_run() {
    let ctx = TestCtx::new("no-program");
    let mut b = ctx.bundle();
    b.args(&["/no/such/program"]);
    let id = ctx.id("noprog");
    let o = ctx.run(&b, &id, &[]);
    o.assert_refused_naming("/no/such/program");
    assert!(!ctx.rt.root_has_entry(&id));
}

#[test]
fn newer_1x_oci_versions_and_unknown_fields_are_accepted() {
    let ctx = TestCtx::new("new-version");
    let mut b = ctx.bundle();
    b.set("/codexFutureField", serde_json::json!({"x": 1}))
        .set(
            "/process/codexFutureProcessField",
            serde_json::json!([1, 2]),
        )
        .set("/linux/codexFutureLinuxField", serde_json::json!("y"));
    for v in ["1.0.0", "1.1.0", "1.2.1", "1.3.0", "1.9.0"] {
        b.set("/ociVersion", serde_json::json!(v));
        let o = ctx.run_sh(&mut b, "echo ran");
        assert_eq!(o.stdout.trim(), "ran", "ociVersion {v}");
    }
}

// ---- codex-specific: runc 1.1.5 accepts these or words the error differently ----

#[test]
fn codex_oci_version_2_is_rejected_naming_oci_version() {
    let ctx = TestCtx::new("version-2");
    let (b, id) = bad(&ctx, |b| {
        b.set("/ociVersion", serde_json::json!("2.0.0"));
    });
    rejected(&ctx, &b, &id, "ociVersion");
}

#[test]
fn codex_malformed_oci_version_is_rejected_naming_oci_version() {
    let ctx = TestCtx::new("version-bad");
    for v in ["banana", "", "1"] {
        let (b, id) = bad(&ctx, |b| {
            b.set("/ociVersion", serde_json::json!(v));
        });
        rejected(&ctx, &b, &id, "ociVersion");
    }
}

#[test]
fn codex_missing_oci_version_is_rejected_naming_oci_version() {
    let ctx = TestCtx::new("version-missing");
    let (b, id) = bad(&ctx, |b| {
        b.remove("/ociVersion");
    });
    rejected(&ctx, &b, &id, "ociVersion");
}

#[test]
fn codex_relative_mount_destination_is_rejected_naming_it() {
    let ctx = TestCtx::new("rel-mount");
    let (b, id) = bad(&ctx, |b| {
        b.add_mount("relative/dest", "tmpfs", "tmpfs", &[]);
    });
    let o = rejected(&ctx, &b, &id, "mounts");
    o.assert_stderr_mentions("mounts")
        .assert_stderr_mentions("destination");
}

#[test]
fn codex_wrong_type_error_names_process_args() {
    let ctx = TestCtx::new("wrong-type-msg");
    let (b, id) = bad(&ctx, |b| {
        b.set("/process/args", serde_json::json!("sh -c true"));
    });
    rejected(&ctx, &b, &id, "process.args");
}

#[test]
fn codex_unknown_namespace_error_names_namespaces_and_the_type() {
    let ctx = TestCtx::new("bad-ns-msg");
    let (b, id) = bad(&ctx, |b| {
        b.namespace("bogus", None);
    });
    rejected(&ctx, &b, &id, "namespaces")
        .assert_stderr_mentions("namespaces")
        .assert_stderr_mentions("bogus");
}

#[test]
fn codex_nonexistent_rootfs_error_names_root_path() {
    let ctx = TestCtx::new("no-rootfs-msg");
    let (b, id) = bad(&ctx, |b| {
        b.set("/root/path", serde_json::json!("no-such-rootfs"));
    });
    rejected(&ctx, &b, &id, "root.path");
}

#[test]
fn codex_missing_config_error_names_config_json() {
    let ctx = TestCtx::new("no-config-msg");
    let b = ctx.bundle();
    let id = ctx.id("noconfig");
    ctx.rt
        .run(&["create", "--bundle", b.dir.to_str().unwrap(), &id])
        .assert_fails()
        .assert_stderr_mentions("config.json");
}

#[test]
fn codex_malformed_json_error_names_config_json() {
    let ctx = TestCtx::new("bad-json-msg");
    let b = ctx.bundle();
    fs::write(
        b.config_path(),
        "{\"ociVersion\": \"1.2.0\", \"process\": {bad json",
    )
    .unwrap();
    let id = ctx.id("badjson");
    ctx.rt
        .run(&["create", "--bundle", b.dir.to_str().unwrap(), &id])
        .assert_fails()
        .assert_stderr_mentions("config.json");
}

#[test]
fn codex_rlimit_error_names_the_rlimit() {
    let ctx = TestCtx::new("rlimit-msg");
    let (b, id) = bad(&ctx, |b| {
        b.rlimits(&[("RLIMIT_NOFILE", 1 << 30, 1 << 30)]);
    });
    rejected(&ctx, &b, &id, "RLIMIT_NOFILE");
}

#[test]
fn codex_invalid_id_error_names_the_id() {
    let ctx = TestCtx::new("bad-id-msg");
    let b = ctx.bundle();
    ctx.create(&b, "a/b", &[])
        .assert_fails()
        .assert_stderr_mentions("a/b");
}

#[test]
fn codex_devices_on_the_hosts_own_root_are_refused_naming_linux_devices() {
    // root.path "/" is the host's own tree: a device node there would be made in the
    // host's /dev. Before the refusal this create made the node on the host.
    let ctx = TestCtx::new("devices-host-root");
    let node = format!("/dev/codex-test-{}", ctx.id("node"));
    let (b, id) = bad(&ctx, |b| {
        b.set("/root/path", serde_json::json!("/"));
        b.set("/mounts", serde_json::json!([]));
        b.set(
            "/linux/devices",
            serde_json::json!([{"path": node, "type": "c", "major": 1, "minor": 3}]),
        );
    });
    struct RemoveAtEnd<'a>(&'a str);
    impl Drop for RemoveAtEnd<'_> {
        fn drop(&mut self) {
            let _ = fs::remove_file(self.0);
        }
    }
    let _cleanup = RemoveAtEnd(&node);
    rejected(&ctx, &b, &id, "linux.devices");
    assert!(
        fs::symlink_metadata(&node).is_err(),
        "{node} was made on the host"
    );
}
