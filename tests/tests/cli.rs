//! The command line itself: --version, features, spec, --log, unknown commands.

use codex_tests::*;
use std::fs;

fn rt() -> (TestCtx, Runtime) {
    let ctx = TestCtx::new("cli");
    let r = ctx.rt.clone();
    (ctx, r)
}

#[test]
fn version_prints_name_version_and_spec_lines() {
    let (_ctx, rt) = rt();
    let o = rt.run(&["--version"]);
    o.assert_ok();
    let first = o.lines()[0].to_string();
    let w: Vec<&str> = first.split_whitespace().collect();
    assert!(
        w.len() == 3 && w[1] == "version",
        "first line must be `<name> version <X>` (containerd parses it): {first:?}"
    );
    assert!(
        o.lines().iter().any(|l| l.starts_with("spec: 1.")),
        "a `spec: 1.x` line is required: {o:?}"
    );
}

/// codex-specific: the name and the spec version codex claims.
#[test]
fn codex_version_first_line_is_codex_oci_version() {
    let (_ctx, rt) = rt();
    let o = rt.run(&["--version"]);
    o.assert_ok();
    assert!(o.lines()[0].starts_with("codex-oci version "), "{o:?}");
    assert!(
        o.lines().iter().any(|l| l.starts_with("spec: 1.2.")),
        "{o:?}"
    );
}

#[test]
fn features_is_runtime_spec_features_json() {
    let (_ctx, rt) = rt();
    let o = rt.run(&["features"]);
    o.assert_ok();
    let v = o.json();
    assert!(
        v["ociVersionMin"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.")),
        "{v}"
    );
    assert!(
        v["ociVersionMax"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.")),
        "{v}"
    );
    let hooks: Vec<&str> = v["hooks"]
        .as_array()
        .unwrap_or_else(|| panic!("hooks: {v}"))
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&h), "hooks lack {h}: {hooks:?}");
    }
    let opts: Vec<&str> = v["mountOptions"]
        .as_array()
        .unwrap_or_else(|| panic!("mountOptions: {v}"))
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    for m in [
        "ro", "rw", "nosuid", "nodev", "noexec", "bind", "rbind", "rprivate",
    ] {
        assert!(opts.contains(&m), "mountOptions lack {m}");
    }
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap_or_else(|| panic!("linux.namespaces: {v}"))
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    for n in ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"] {
        assert!(ns.contains(&n), "namespaces lack {n}: {ns:?}");
    }
    let caps = v["linux"]["capabilities"]
        .as_array()
        .expect("linux.capabilities");
    assert!(caps.iter().any(|c| c == "CAP_SYS_ADMIN"), "{v}");
    assert!(v["linux"]["cgroup"]["v1"].is_boolean(), "{v}");
}

/// codex-specific: codex claims runtime-spec 1.2 and says whether seccomp is supported.
#[test]
fn codex_features_claims_spec_1_2_and_reports_seccomp() {
    let (_ctx, rt) = rt();
    let v = rt.run(&["features"]).json();
    assert!(
        v["ociVersionMax"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.2") || s.starts_with("1.3")),
        "{v}"
    );
    assert!(v["linux"]["seccomp"]["enabled"].is_boolean(), "{v}");
    assert_eq!(
        v["linux"]["cgroup"]["v1"], true,
        "this hybrid host needs v1: {v}"
    );
}

#[test]
fn spec_writes_a_config_that_runs() {
    let ctx = TestCtx::new("spec");
    let dir = ctx.mkdir("specbundle");
    ctx.rt
        .run(&["spec", "--bundle", dir.to_str().unwrap()])
        .assert_ok();
    let mut config: serde_json::Value = serde_json::from_slice(
        &fs::read(dir.join("config.json")).expect("spec wrote no config.json"),
    )
    .expect("spec's config.json is JSON");
    assert!(
        config["ociVersion"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.")),
        "{config}"
    );
    assert_eq!(config["root"]["path"], "rootfs", "{config}");
    assert!(config["process"]["args"].is_array(), "{config}");
    // the default spec asks for a terminal (as runc's does); run it with plain stdio
    config["process"]["terminal"] = serde_json::json!(false);
    config["process"]["args"] = serde_json::json!(["sh", "-c", "echo spec-ok; echo $$; hostname"]);
    let b = Bundle {
        dir: dir.clone(),
        config,
    };
    run_command(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(fixture_dir().join("rootfs"))
            .arg(dir.join("rootfs")),
    )
    .assert_ok();
    let id = ctx.id("spec");
    let o = ctx.run(&b, &id, &[]);
    o.assert_ok();
    assert_eq!(o.lines()[0], "spec-ok");
    assert_eq!(
        o.lines()[1],
        "1",
        "the default spec must have a PID namespace"
    );
}

#[test]
fn spec_does_not_overwrite_an_existing_config() {
    let ctx = TestCtx::new("spec-exists");
    let dir = ctx.mkdir("specbundle");
    fs::write(dir.join("config.json"), "{\"mine\": true}").unwrap();
    ctx.rt
        .run(&["spec", "--bundle", dir.to_str().unwrap()])
        .assert_refused_naming("config.json");
    assert_eq!(
        fs::read_to_string(dir.join("config.json")).unwrap(),
        "{\"mine\": true}"
    );
}

#[test]
fn log_format_json_records_the_error() {
    let (ctx, rt) = rt();
    let log = ctx.path("runtime.log");
    let o = rt.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "codex-no-such-container",
    ]);
    o.assert_fails();
    let text = fs::read_to_string(&log).expect("the log file was not written");
    let errors: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error")
        .collect();
    let last = errors
        .last()
        .unwrap_or_else(|| panic!("no error line in {text:?}"));
    assert!(
        last["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{last}"
    );
    assert!(last["time"].is_string(), "{last}");
    assert!(
        !o.stderr.trim().is_empty(),
        "the error must also go to stderr: {o:?}"
    );
}

#[test]
fn unknown_command_fails() {
    let (_ctx, rt) = rt();
    rt.run(&["codex-no-such-command"])
        .assert_refused_naming("codex-no-such-command");
}

#[test]
fn list_of_an_empty_root_succeeds() {
    let (_ctx, rt) = rt();
    rt.run(&["list"]).assert_ok();
    let o = rt.run(&["list", "--format", "json"]);
    o.assert_ok();
    let v = o.json();
    assert!(
        v.is_null() || v.as_array().is_some_and(|a| a.is_empty()),
        "empty list must be [] (runc prints null): {v}"
    );
}
