//! `linux.seccomp`: the profile is compiled before `created` and loaded just before the
//! user's program is exec'd. Every behaviour is checked from inside a busybox container:
//! errno actions, KILL_PROCESS, argument conditions (EQ and MASKED_EQ), the `Seccomp:` mode
//! in /proc/self/status, exec'd processes, noNewPrivileges false, unknown syscall names.
//! Tests named `codex_*` check how bad profiles are refused (messages naming the JSON path).
//! SCMP_ACT_NOTIFY and its listener: seccomp_notify.rs.
//!
//! busybox (Debian's static build) uses the legacy syscalls on x86_64 (`mkdir`, `chmod`,
//! `symlink`); the rules also name the `*at` variants so that other builds are covered. Where
//! a rule has an argument condition the argument index differs between the variants (the mode
//! is argument 1 of `chmod` and argument 2 of `fchmodat`/`fchmodat2`), so they get one rule each.

use codex_tests::*;
use serde_json::{json, Value};

const EPERM: u32 = 1;
const EACCES: u32 = 13;
const ENOSPC: u32 = 28;
const ENOSYS: u32 = 38;

/// The native architecture and its compat ones, as in the profiles docker and podman ship.
fn architectures() -> Value {
    match std::env::consts::ARCH {
        "x86_64" => json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
        "aarch64" => json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
        _ => json!([]),
    }
}

/// A profile allowing everything but `rules`.
fn profile(rules: Value) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": rules,
    })
}

/// One rule: `names` get `action`, with `errnoRet` when given.
fn rule(names: &[&str], action: &str, errno: Option<u32>) -> Value {
    let mut r = json!({"names": names, "action": action});
    if let Some(e) = errno {
        r["errnoRet"] = json!(e);
    }
    r
}

/// `names` fail with `errno` when argument `index` compares (`op`) with `value`/`value_two`.
fn arg_rule(
    names: &[&str],
    errno: u32,
    index: u32,
    op: &str,
    value: u64,
    value_two: Option<u64>,
) -> Value {
    let mut arg = json!({"index": index, "value": value, "op": op});
    if let Some(v2) = value_two {
        arg["valueTwo"] = json!(v2);
    }
    json!({"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno, "args": [arg]})
}

/// `mkdir`/`mkdirat` fail with `errno`.
fn deny_mkdir(errno: u32) -> Value {
    rule(&["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", Some(errno))
}

/// A bundle with a writable tmpfs on /tmp (the fixture's root is read-only) and `seccomp`.
fn seccomp_bundle(ctx: &TestCtx, seccomp: Value) -> Bundle {
    let mut b = ctx.bundle();
    b.add_mount("/tmp", "tmpfs", "tmpfs", &["mode=1777"]);
    b.set("/linux/seccomp", seccomp);
    b
}

/// The `Seccomp:` and `Seccomp_filters:` lines a container prints with this snippet.
const SECCOMP_STATUS: &str = "grep -E '^Seccomp(_filters)?:' /proc/self/status";

#[track_caller]
fn assert_filter_mode(out: &str) {
    let mode = status_field(out, "Seccomp");
    assert_eq!(mode, Some("2"), "no seccomp filter (mode 2) in:\n{out}");
    // The kernel counts the filters (5.9+): exactly the one the runtime loaded. When the
    // host's kernel counts them, the container's count must be there: a missing line is
    // not a pass. (On an older kernel only the mode is checked.)
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    if status_field(&host, "Seccomp_filters").is_some() {
        assert_eq!(
            status_field(out, "Seccomp_filters"),
            Some("1"),
            "expected exactly one filter (the snippet must print Seccomp_filters):\n{out}"
        );
    }
}

#[test]
fn errno_rules_fail_the_syscall_with_the_configured_errno() {
    let ctx = TestCtx::new("seccomp-errno");
    let mut b = seccomp_bundle(
        &ctx,
        profile(json!([
            deny_mkdir(EPERM),
            rule(&["symlink", "symlinkat"], "SCMP_ACT_ERRNO", Some(ENOSPC)),
        ])),
    );
    // The runtime itself creates directories (/dev/pts, /dev/shm...) while setting up the
    // container: it only runs if the filter is not in force before the exec.
    let o = ctx.run_sh(
        &mut b,
        "cd /tmp; mkdir d 2>&1; echo mkdir-rc=$?; ln -s target l 2>&1; echo ln-rc=$?; \
         touch f && echo touch-ok; ls -a /tmp | tr '\\n' ' '; echo",
    );
    let out = &o.stdout;
    assert!(out.contains("mkdir-rc=1"), "mkdir was not denied: {o:?}");
    assert!(
        out.contains("Operation not permitted"),
        "mkdir must fail with EPERM (errnoRet 1): {o:?}"
    );
    assert!(out.contains("ln-rc=1"), "symlink was not denied: {o:?}");
    assert!(
        out.contains("No space left on device"),
        "symlink must fail with ENOSPC (errnoRet 28): {o:?}"
    );
    assert!(
        out.contains("touch-ok"),
        "syscalls without a rule must be allowed: {o:?}"
    );
    let listing = o.lines().last().copied().unwrap_or_default();
    assert_eq!(
        listing.split_whitespace().collect::<Vec<_>>(),
        [".", "..", "f"],
        "only the allowed file may exist: {o:?}"
    );
}

#[test]
fn kill_process_action_kills_the_offending_process_and_nothing_else() {
    let ctx = TestCtx::new("seccomp-kill");
    let mut b = seccomp_bundle(
        &ctx,
        profile(json!([rule(
            &["sethostname"],
            "SCMP_ACT_KILL_PROCESS",
            None
        )])),
    );
    b.hostname("codex-kill");
    // Without the filter `hostname x` would fail with EPERM (no CAP_SYS_ADMIN) and exit 1;
    // killed by SIGSYS the shell sees 128 + 31.
    let o = ctx.run_sh(
        &mut b,
        "hostname x; echo rc=$?; echo shell-still-here; hostname",
    );
    assert!(
        o.stdout.contains("rc=159"),
        "hostname must die of SIGSYS (Bad system call): {o:?}"
    );
    assert!(o.stdout.contains("shell-still-here"), "{o:?}");
    assert_eq!(
        o.lines().last().copied(),
        Some("codex-kill"),
        "hostname changed: {o:?}"
    );
}

#[test]
fn argument_condition_eq_denies_one_value_and_allows_others() {
    let ctx = TestCtx::new("seccomp-arg-eq");
    // mode == 0600 -> EACCES
    let mut b = seccomp_bundle(
        &ctx,
        profile(json!([
            arg_rule(&["chmod"], EACCES, 1, "SCMP_CMP_EQ", 0o600, None),
            arg_rule(
                &["fchmodat", "fchmodat2"],
                EACCES,
                2,
                "SCMP_CMP_EQ",
                0o600,
                None
            ),
        ])),
    );
    let o = ctx.run_sh(
        &mut b,
        "cd /tmp; touch f; \
         chmod 600 f 2>&1; echo rc600=$?; \
         chmod 644 f; echo rc644=$?; \
         chmod 700 f; echo rc700=$?; \
         stat -c mode=%a f",
    );
    let out = &o.stdout;
    assert!(out.contains("rc600=1"), "chmod 600 must be denied: {o:?}");
    assert!(
        out.contains("Permission denied"),
        "chmod 600 must fail with EACCES (errnoRet 13): {o:?}"
    );
    assert!(out.contains("rc644=0"), "chmod 644 must be allowed: {o:?}");
    assert!(out.contains("rc700=0"), "chmod 700 must be allowed: {o:?}");
    assert!(out.contains("mode=700"), "{o:?}");
}

#[test]
fn argument_condition_masked_eq_compares_the_masked_argument_with_value_two() {
    let ctx = TestCtx::new("seccomp-arg-masked");
    // OCI: `value` is the mask, `valueTwo` the expected value. (mode & 0077) == 0, i.e. no
    // group or other bits, is denied: 600 and 700 fail, 640 and 604 pass. A runtime that
    // swapped mask and value would deny nothing ((mode & 0) == 077 never holds).
    let mut b = seccomp_bundle(
        &ctx,
        profile(json!([
            arg_rule(&["chmod"], ENOSYS, 1, "SCMP_CMP_MASKED_EQ", 0o077, Some(0)),
            arg_rule(
                &["fchmodat", "fchmodat2"],
                ENOSYS,
                2,
                "SCMP_CMP_MASKED_EQ",
                0o077,
                Some(0)
            ),
        ])),
    );
    let o = ctx.run_sh(
        &mut b,
        "cd /tmp; touch f; \
         chmod 640 f; echo rc640=$?; \
         chmod 700 f 2>&1; echo rc700=$?; \
         chmod 604 f; echo rc604=$?; \
         chmod 600 f 2>&1; echo rc600=$?; \
         stat -c mode=%a f",
    );
    let out = &o.stdout;
    assert!(out.contains("rc640=0"), "chmod 640 must be allowed: {o:?}");
    assert!(out.contains("rc604=0"), "chmod 604 must be allowed: {o:?}");
    assert!(out.contains("rc700=1"), "chmod 700 must be denied: {o:?}");
    assert!(out.contains("rc600=1"), "chmod 600 must be denied: {o:?}");
    assert!(
        out.contains("Function not implemented"),
        "the denial must be ENOSYS (errnoRet 38): {o:?}"
    );
    assert!(
        out.contains("mode=604"),
        "the last allowed mode must stick: {o:?}"
    );
}

#[test]
fn proc_status_shows_filter_mode_only_with_a_profile() {
    let ctx = TestCtx::new("seccomp-status");
    let mut with = seccomp_bundle(&ctx, profile(json!([deny_mkdir(EPERM)])));
    let o = ctx.run_sh(&mut with, SECCOMP_STATUS);
    assert_filter_mode(&o.stdout);

    // Without a profile the container has the runtime caller's mode (0 unless the test
    // itself runs under a filter).
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let host_mode = status_field(&host, "Seccomp").expect("Seccomp: in our own status");
    if host_mode != "0" {
        eprintln!("note: the tests run under seccomp mode {host_mode}");
    }
    let mut without = ctx.bundle();
    let o = ctx.run_sh(&mut without, SECCOMP_STATUS);
    assert_eq!(
        status_field(&o.stdout, "Seccomp"),
        Some(host_mode),
        "a container without a profile must not get a filter: {o:?}"
    );
}

#[test]
fn exec_processes_get_the_containers_filter() {
    let ctx = TestCtx::new("seccomp-exec");
    let mut b = seccomp_bundle(&ctx, profile(json!([deny_mkdir(EPERM)])));
    b.sh("echo ready; exec sleep 1000");
    let id = ctx.id("exec");
    ctx.create_and_start(&b, &id);
    ctx.wait_for_stdout(&id, "ready");
    let o = ctx.exec(
        &id,
        &[],
        &[
            "sh",
            "-c",
            &format!("{SECCOMP_STATUS}; mkdir /tmp/from-exec 2>&1; echo rc=$?"),
        ],
    );
    o.assert_ok();
    assert_filter_mode(&o.stdout);
    assert!(
        o.stdout.contains("rc=1") && o.stdout.contains("Operation not permitted"),
        "mkdir in an exec'd process must be denied: {o:?}"
    );
    let d = ctx.exec(&id, &[], &["test", "-e", "/tmp/from-exec"]);
    assert_eq!(d.code(), Some(1), "the directory was created: {d:?}");
}

#[test]
fn profile_loads_without_no_new_privileges_for_an_unprivileged_user() {
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: the runtime must load it
    // before it switches to the user (65534) and drops the capabilities (the fixture's sets
    // have no CAP_SYS_ADMIN either).
    let ctx = TestCtx::new("seccomp-no-nnp");
    let mut b = seccomp_bundle(&ctx, profile(json!([deny_mkdir(ENOSYS)])));
    b.no_new_privileges(false).user(65534, 65534);
    let o = ctx.run_sh(
        &mut b,
        &format!(
            "{SECCOMP_STATUS}; grep '^NoNewPrivs:' /proc/self/status; echo uid=$(id -u); \
             mkdir /tmp/d 2>&1; echo rc=$?"
        ),
    );
    assert_filter_mode(&o.stdout);
    assert_eq!(
        status_field(&o.stdout, "NoNewPrivs"),
        Some("0"),
        "noNewPrivileges false must leave no_new_privs off: {o:?}"
    );
    assert!(o.stdout.contains("uid=65534"), "{o:?}");
    assert!(
        o.stdout.contains("rc=1") && o.stdout.contains("Function not implemented"),
        "mkdir must be denied with ENOSYS: {o:?}"
    );
}

#[test]
fn unknown_syscall_names_are_skipped_and_the_rest_of_the_rule_applies() {
    // As runc: profiles list syscalls of newer kernels than libseccomp knows.
    let ctx = TestCtx::new("seccomp-unknown-name");
    let mut b = seccomp_bundle(
        &ctx,
        profile(json!([rule(
            &["codex_no_such_syscall", "mkdir", "mkdirat"],
            "SCMP_ACT_ERRNO",
            Some(EPERM)
        )])),
    );
    let o = ctx.run_sh(
        &mut b,
        &format!("{SECCOMP_STATUS}; mkdir /tmp/d 2>&1; echo rc=$?"),
    );
    assert_filter_mode(&o.stdout);
    assert!(
        o.stdout.contains("rc=1") && o.stdout.contains("Operation not permitted"),
        "the known names of the rule must still be denied: {o:?}"
    );
}

/// `create` with `seccomp` must fail, stderr mentioning each of `needles`, and leave no state.
#[track_caller]
fn refused(ctx: &TestCtx, seccomp: Value, needles: &[&str]) -> Out {
    let mut b = seccomp_bundle(ctx, seccomp);
    b.sh("echo should-not-run");
    let id = ctx.id("refused");
    let o = ctx.create(&b, &id, &[]);
    o.assert_fails();
    for n in needles {
        o.assert_stderr_mentions(n);
    }
    assert!(
        ctx.rt.state(&id).is_err(),
        "state {id} must fail after a failed create"
    );
    assert!(
        !ctx.rt.root_has_entry(&id),
        "state root still holds {id}: {:?}",
        ctx.rt.root_entries()
    );
    assert_eq!(ctx.stdout_of(&id), "", "the program ran: {o:?}");
    o
}

#[test]
fn codex_unknown_action_fails_create_naming_the_field() {
    let ctx = TestCtx::new("seccomp-bad-action");
    let mut bad_default = profile(json!([]));
    bad_default["defaultAction"] = json!("SCMP_ACT_BOGUS");
    refused(&ctx, bad_default, &["linux.seccomp", "SCMP_ACT_BOGUS"]);
    refused(
        &ctx,
        profile(json!([rule(&["mkdir"], "SCMP_ACT_BOGUS", None)])),
        &["linux.seccomp", "SCMP_ACT_BOGUS"],
    );
}

#[test]
fn codex_unknown_operator_fails_create_naming_the_field() {
    let ctx = TestCtx::new("seccomp-bad-op");
    refused(
        &ctx,
        profile(json!([arg_rule(
            &["chmod"],
            EPERM,
            1,
            "SCMP_CMP_BOGUS",
            0o600,
            None
        )])),
        &["linux.seccomp", "SCMP_CMP_BOGUS"],
    );
}
